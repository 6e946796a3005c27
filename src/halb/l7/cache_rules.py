"""The proxy cache's rules, as nginx 1.22 applies them (PURE): where a key's file lives, how long
a response may be kept, and the cache file's own header.

Validity (ngx_http_upstream_process_* header handlers, in the order the upstream sent the
headers, then ngx_http_upstream_send_response):
- X-Accel-Expires: seconds from now, "@T" an absolute time, 0 not cacheable;
- Cache-Control: no-cache / no-store / private → not cached; s-maxage= (before max-age=) sets the
  time, 0 not cached, a malformed number not cached; skipped when an X-Accel-Expires already set
  the time;
- Expires: an absolute date, in the past (or not a date) → not cached; skipped when a time was
  already set;
- Set-Cookie → not cached; Vary: * (or longer than 42 bytes) → not cached;
- each of these is skipped when named by proxy_ignore_headers;
- with no time from the headers, proxy_cache_valid by status (an exact code before `any`).

File layout: `path/<levels>/<md5 hex>`, the levels taken from the end of the hex name
(levels=1:2 → c/29/b7f5…6029c).

The cache file (halb's own header; nginx's binary header is not reproduced):
    8 bytes   magic b"HALBC\\x01\\r\\n"
    struct <qqqIHHH16s: valid_sec (unix time), date (when stored), last_modified (or -1),
              body_start, status, key length, Vary length, variant md5 (Vary's request header values)
    the key (UTF-8), then the Vary header value (latin-1) and "\\n"
    the upstream's status line and headers as received, ending in an empty line
    the body (de-chunked) up to the end of the file
"""

from __future__ import annotations

import calendar
import hashlib
import re
import struct
from collections.abc import Sequence

MAGIC = b"HALBC\x01\r\n"
_FIXED = struct.Struct("<qqqIHHH16s")
HEADER_MIN = len(MAGIC) + _FIXED.size
VARY_MAX = 42  # NGX_HTTP_CACHE_VARY_LEN


def md5_key(key: str) -> bytes:
    return hashlib.md5(key.encode("utf-8", "surrogateescape")).digest()


def file_path(root: str, levels: Sequence[int], digest: bytes) -> str:
    """ngx_create_hashed_filename: directories from the end of the hex name."""
    name = digest.hex()
    parts = [root]
    end = len(name)
    for n in levels:
        parts.append(name[end - n:end])
        end -= n
    parts.append(name)
    return "/".join(parts)


def valid_for_status(status: int, valid: Sequence[tuple[int, int]]) -> int:
    """ngx_http_file_cache_valid: seconds for a status (0: not cached)."""
    for code, secs in valid:
        if code == status:
            return secs
    for code, secs in valid:
        if code == 0:
            return secs
    return 0


_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug",
                                         "sep", "oct", "nov", "dec"), 1)}
_RFC1123 = re.compile(r"\s*\w+,\s*(\d{1,2})[ -](\w{3})[ -](\d{2,4})\s+(\d\d):(\d\d):(\d\d)")
_ASCTIME = re.compile(r"\s*\w+\s+(\w{3})\s+(\d{1,2})\s+(\d\d):(\d\d):(\d\d)\s+(\d{4})")


def http_time(text: str) -> int | None:
    """ngx_parse_http_time: RFC 1123, RFC 850 and asctime dates (GMT) → unix time."""
    m = _RFC1123.match(text)
    if m is not None:
        day, mon, year, hh, mm, ss = m.groups()
    else:
        m = _ASCTIME.match(text)
        if m is None:
            return None
        mon, day, hh, mm, ss, year = m.groups()
    month = _MONTHS.get(mon.lower())
    y = int(year)
    if len(year) == 2:
        y += 1900 if y >= 70 else 2000
    if month is None or not (1 <= int(day) <= 31 and int(hh) < 24 and int(mm) < 60
                             and int(ss) < 60 and y >= 1970):
        return None
    return calendar.timegm((y, month, int(day), int(hh), int(mm), int(ss)))


def validity(status: int, headers: Sequence[tuple[str, str]], lows: Sequence[str],
             valid: Sequence[tuple[int, int]], ignore: frozenset[str], now: int
             ) -> tuple[int, str]:
    """(valid_sec: the absolute time the response stays fresh, 0 when it is not cached,
    the reason when it is not)."""
    valid_sec = 0
    accel = False
    for (_, value), low in zip(headers, lows, strict=True):
        if low == "x-accel-expires":
            if low in ignore:
                continue
            accel = True
            v = value.strip()
            if v.startswith("@"):
                if v[1:].isdigit():
                    valid_sec = int(v[1:])
                continue
            if not v.isdigit():
                continue
            n = int(v)
            if n == 0:
                return 0, "X-Accel-Expires: 0"
            valid_sec = now + n
        elif low == "cache-control":
            if low in ignore or (valid_sec and accel):
                continue
            lv = value.lower()
            if "no-cache" in lv or "no-store" in lv or "private" in lv:
                return 0, "Cache-Control: " + value
            at = lv.find("s-maxage=")
            off = 9
            if at < 0:
                at = lv.find("max-age=")
                off = 8
            if at >= 0:
                n = 0
                for ch in lv[at + off:]:
                    if ch in ",; ":
                        break
                    if "0" <= ch <= "9":
                        n = n * 10 + ord(ch) - 48
                        continue
                    return 0, "Cache-Control: " + value
                if n == 0:
                    return 0, "Cache-Control: " + value
                valid_sec = now + n
        elif low == "expires":
            if low in ignore or valid_sec:
                continue
            t = http_time(value)
            if t is None or t < now:
                return 0, "Expires: " + value
            valid_sec = t
        elif low == "set-cookie":
            if low not in ignore:
                return 0, "Set-Cookie"
        elif low == "vary":
            if low in ignore:
                continue
            if value.strip() == "*" or len(value) > VARY_MAX:
                return 0, "Vary: " + value
    if not valid_sec:
        secs = valid_for_status(status, valid)
        if not secs:
            return 0, "status"
        valid_sec = now + secs
    return valid_sec, ""


def vary_names(vary: str) -> list[str]:
    return [n.strip().lower() for n in vary.split(",") if n.strip()]


def variant(vary: str, header: dict[str, str], main: bytes = b"") -> bytes:
    """ngx_http_file_cache_vary: the md5 of the main key's md5 and the request's values of
    the headers Vary names. It is also the key of the variant's own file (a "secondary" key)."""
    if not vary:
        return bytes(16)
    h = hashlib.md5(main)
    for name in vary_names(vary):
        h.update(name.encode("latin-1", "replace") + b":")
        h.update(header.get(name, "").encode("latin-1", "replace") + b"\r\n")
    return h.digest()


def encode_header(valid_sec: int, date: int, last_modified: int, status: int, key: str,
                  vary: str, var_md5: bytes, head_block: bytes) -> bytes:
    """The bytes before the body; body_start is their length."""
    k = key.encode("utf-8", "surrogateescape")
    v = vary.encode("latin-1", "replace")
    body_start = len(MAGIC) + _FIXED.size + len(k) + len(v) + 1 + len(head_block)
    fixed = _FIXED.pack(valid_sec, date, last_modified, body_start, status, len(k), len(v),
                        var_md5)
    return MAGIC + fixed + k + v + b"\n" + head_block


class FileHeader:
    __slots__ = ("body_start", "date", "head_block", "key", "last_modified", "status",
                 "valid_sec", "variant", "vary")

    def __init__(self) -> None:
        self.valid_sec = 0
        self.date = 0
        self.last_modified = -1
        self.body_start = 0
        self.status = 0
        self.key = ""
        self.vary = ""
        self.variant = bytes(16)
        self.head_block = b""


def decode_header(data: bytes) -> FileHeader | None:
    """The header of a cache file from its first bytes (None: not a cache file, or more bytes
    are needed than given: the caller reads body_start bytes)."""
    if len(data) < HEADER_MIN or not data.startswith(MAGIC):
        return None
    valid_sec, date, lm, body_start, status, klen, vlen, var_md5 = _FIXED.unpack_from(
        data, len(MAGIC))
    h = FileHeader()
    h.valid_sec, h.date, h.last_modified, h.body_start, h.status = (valid_sec, date, lm,
                                                                    body_start, status)
    h.variant = var_md5
    if body_start <= HEADER_MIN + klen + vlen:  # damaged: no room for key, vary and head
        return None
    if len(data) < body_start:
        return h  # head_block empty: read body_start bytes and decode again
    at = HEADER_MIN
    h.key = data[at:at + klen].decode("utf-8", "surrogateescape")
    at += klen
    h.vary = data[at:at + vlen].decode("latin-1")
    at += vlen + 1
    h.head_block = data[at:body_start]
    return h


def validity_update(valid_sec: int, date: int) -> tuple[int, bytes]:
    """(offset, bytes) that rewrite a cache file's validity in place (a revalidated file)."""
    return len(MAGIC), struct.pack("<qq", valid_sec, date)


def head_block(status_line: str, version: int, headers: Sequence[tuple[str, str]]) -> bytes:
    """The upstream's head as stored: status line and header lines, an empty line."""
    out = [f"HTTP/{version // 10}.{version % 10} {status_line}\r\n".encode("latin-1", "replace")]
    for name, value in headers:
        out.append(name.encode("latin-1", "replace") + b": "
                   + value.encode("latin-1", "replace") + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def predicates(values: Sequence[str]) -> bool:
    """ngx_http_test_predicates: True when any value is non-empty and not "0"."""
    return any(v and v != "0" for v in values)
