"""The gzip output filter: nginx's ngx_http_gzip_filter_module and ngx_http_gzip_ok (PURE).

Header side (`gzip_header`): a 200, 403 or 404 whose type is in gzip_types (text/html always),
whose length is unknown or at least gzip_min_length and that is not already encoded is
compressible; then `Vary: Accept-Encoding` is due (gzip_vary on) whatever the client says, and
the client decides: Accept-Encoding must offer gzip with a quality above zero (nginx's own
parser, quirks included), the request must be at least gzip_http_version, a request with Via
(it came through a proxy) is compressed only as gzip_proxied allows by the response's
Expires, Cache-Control, Last-Modified and ETag and the request's Authorization, and
gzip_disable's regexes (and "msie6") must not match the User-Agent. A compressed response gets
`Content-Encoding: gzip`, loses Content-Length and Accept-Ranges (so no byte ranges), and its
ETag is weakened (W/"..."), a tag that is not quoted is dropped.

Body side (`GzipBody`): zlib streaming with nginx's parameters (level, and the window and hash
memory reduced for a short known length as ngx_http_gzip_filter_memory does), the gzip wrapper
written by zlib as nginx 1.22 has it: pieces in, compressed pieces out, never the whole body.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from halb.config.nginx_filters import Gzip
from halb.l7.filters.expires import parse_http_time

if TYPE_CHECKING:
    from halb.l7.response import Response

GZIP_STATUSES = frozenset({200, 403, 404})


def accepts_gzip(ae: str) -> bool:
    """ngx_http_gzip_accept_encoding: "gzip" as a token (at the start or after "," or " "),
    then ",", the end, or ";q=" with a quality above zero ("gzip;q=0" refuses it)."""
    if len(ae) < 4:
        return False
    if ae.startswith("gzip,"):
        return True
    low = ae.lower()
    start = 0
    while True:
        p = low.find("gzip", start)
        if p < 0:
            return False
        if p == 0 or low[p - 1] in ", ":
            break
        start = p + 4
    p += 4
    n = len(ae)
    while p < n:
        c = ae[p]
        p += 1
        if c == ",":
            return True
        if c == ";":
            break
        if c != " ":
            return False
    else:
        return True
    while p < n:  # after ";"
        c = ae[p]
        p += 1
        if c in "qQ":
            break
        if c != " ":
            return False
    else:
        return True
    if p + 2 > n or ae[p] != "=":
        return False
    return quantity(ae, p + 1) > 0


def quantity(s: str, p: int) -> int:
    """ngx_http_gzip_quantity: "0".."1" with up to three decimals; 0 when zero or invalid
    (the decimals add up without their place values, as nginx's do)."""
    n = len(s)
    c = s[p]
    p += 1
    if c not in "01":
        return 0
    q = (ord(c) - 48) * 100
    if p == n:
        return q
    c = s[p]
    p += 1
    if c in ", ":
        return q
    if c != ".":
        return 0
    digits = 0
    while p < n:
        c = s[p]
        p += 1
        if c in ", ":
            break
        if "0" <= c <= "9":
            q += ord(c) - 48
            digits += 1
            continue
        return 0
    if q > 100 or digits > 3:
        return 0
    return q


def msie6(ua: str) -> bool:
    """ngx_http_process_user_agent's msie6 flag: MSIE 4.x, 5.x, or 6.x without SV1."""
    i = ua.find("MSIE ")
    if i < 0 or i + 7 >= len(ua):
        return False
    if ua[i + 6] != ".":
        return False
    major = ua[i + 5]
    if major in "45":
        return True
    return major == "6" and "SV1" not in ua[i + 8:]


def has_token(values: list[str], token: str) -> bool:
    """ngx_http_parse_multi_header_lines without a value: `token` as a whole comma-separated
    item (spaces after it allowed) of one of the header lines, case-insensitively."""
    n = len(token)
    for v in values:
        low = v.lower()
        start, end = 0, len(low)
        while start < end:
            if low.startswith(token, start):
                p = start + n
                while p < end and low[p] == " ":
                    p += 1
                if p == end or low[p] == ",":
                    return True
            while start < end and low[start] != ",":
                start += 1
            while start < end and low[start] in ", ":
                start += 1
    return False


def proxied_ok(proxied: frozenset[str], auth: bool, expires: str | None, date: str | None,
               cache_control: list[str], last_modified: bool, etag: bool, now: float) -> bool:
    """ngx_http_gzip_ok for a request that has Via: gzip_proxied by the response headers."""
    if "off" in proxied:
        return False
    if "any" in proxied:
        return True
    if auth and "auth" in proxied:
        return True
    if expires is not None:
        if "expired" not in proxied:
            return False
        exp = parse_http_time(expires)
        if exp is None:
            return False
        when = now
        if date is not None:
            d = parse_http_time(date)
            if d is None:
                return False
            when = d
        return exp < when
    if cache_control:
        return any(v in proxied and has_token(cache_control, v)
                   for v in ("no-cache", "no-store", "private"))
    if "no_last_modified" in proxied and last_modified:
        return False
    return not ("no_etag" in proxied and etag)


def content_type_key(ctype: str | None) -> str:
    """The type nginx tests against gzip_types: lower-case, without a "; charset=..." (other
    parameters are kept, as ngx_http_upstream_copy_content_type does)."""
    if not ctype:
        return ""
    semi = ctype.find(";")
    while semi >= 0:
        rest = ctype[semi + 1:].lstrip(" ")
        if rest[:8].lower() == "charset=":
            return ctype[:semi].lower()
        semi = ctype.find(";", semi + 1)
    return ctype.lower()


def compressible(g: Gzip, resp: Response) -> bool:
    """The response side of ngx_http_gzip_header_filter (before the client is asked)."""
    if resp.status not in GZIP_STATUSES:
        return False
    for name, value in resp.headers:
        if value and name.lower() == "content-encoding":
            return False
    if not resp.unknown_length:
        length = resp.content_length if resp.content_length is not None else len(resp.body)
        if length < g.min_length:
            return False
    key = content_type_key(resp.content_type)
    return bool(key) and (g.types is None or key in g.types)


def client_ok(g: Gzip, version: int, headers: Mapping[str, str], resp: Response,
              now: float) -> bool:
    """ngx_http_gzip_ok: what the request allows (see the module docstring)."""
    ae = headers.get("accept-encoding")
    if ae is None or not accepts_gzip(ae):
        return False
    ua = headers.get("user-agent")
    if g.disable_msie6 and ua is not None and msie6(ua):
        return False
    if version < g.http_version:
        return False
    if "via" in headers:
        expires = date = None
        cc: list[str] = []
        lm = resp.last_modified is not None
        etag = resp.etag is not None
        for name, value in resp.headers:
            low = name.lower()
            if low == "expires":
                expires = value
            elif low == "date":
                date = value
            elif low == "cache-control":
                cc.append(value)
            elif low == "last-modified":
                lm = True
            elif low == "etag":
                etag = True
        if not proxied_ok(g.proxied, "authorization" in headers, expires, date, cc, lm, etag,
                          now):
            return False
    if g.disable and ua is not None:
        for rx in g.disable:
            if rx.search(ua):
                return False
    return True


def weak_etag(value: str) -> str | None:
    """ngx_http_weak_etag: W/ added to a quoted tag; an unquoted one is removed (None)."""
    if value.startswith("W/") and len(value) > 2:
        return value
    if not value.startswith('"'):
        return None
    return "W/" + value


def gzip_header(g: Gzip, version: int, headers: Mapping[str, str], resp: Response,
                now: float, upstream: bool = True) -> GzipBody | None:
    """The header filter: decides, and when compressing changes resp's headers and returns
    the body filter."""
    if resp.status == 206 and not upstream:  # a range: gzip declined (chain.ranges_allowed)
        return None
    if not compressible(g, resp):
        return None
    resp.vary = resp.vary or g.vary
    if not client_ok(g, version, headers, resp, now):
        return None
    length = -1 if resp.unknown_length else (
        resp.content_length if resp.content_length is not None else len(resp.body))
    body = GzipBody(g.level, g.wbits, g.memlevel, length)
    out = []
    for name, value in resp.headers:
        low = name.lower()
        if low == "accept-ranges":
            continue
        if low == "etag":
            weak = weak_etag(value)
            if weak is None:
                continue
            value = weak
        out.append((name, value))
    out.append(("Content-Encoding", "gzip"))
    resp.headers = out
    if resp.etag is not None:
        resp.etag = weak_etag(resp.etag)
    resp.accept_ranges = False
    resp.content_length = None
    resp.unknown_length = True
    resp.gzip = body
    return body


class GzipBody:
    """The body filter: compressed pieces as the body passes (see the module docstring)."""

    __slots__ = ("done", "held", "z", "zin", "zout")

    BUFFER = 4096  # gzip_buffers' default size: nginx passes output on a buffer at a time

    def __init__(self, level: int, wbits: int = 15, memlevel: int = 8, length: int = -1
                 ) -> None:
        if length > 0:  # ngx_http_gzip_filter_memory
            while length < (1 << (wbits - 1)) - 262:
                wbits -= 1
                memlevel -= 1
        self.z = zlib.compressobj(level, zlib.DEFLATED, 16 + wbits, max(memlevel, 1))
        self.zin = self.zout = 0
        self.done = False
        self.held = b""  # output not yet a whole buffer (nginx holds it in its gzip buffer)

    def data(self, chunk: bytes, flush: bool = False) -> bytes:
        """A piece of the body; flush: what zlib holds goes out too (an unbuffered proxy)."""
        out = self.z.compress(chunk) if chunk else b""
        if flush:
            out += self.z.flush(zlib.Z_SYNC_FLUSH)
        self.zin += len(chunk)
        self.zout += len(out)
        if self.held:
            out = self.held + out
            self.held = b""
        if flush:
            return out
        whole = len(out) - len(out) % self.BUFFER
        if whole < len(out):
            self.held = out[whole:]
            out = out[:whole]
        return out

    def last(self, chunk: bytes = b"") -> bytes:
        """The last piece, then the gzip trailer."""
        z = self.z
        out = (z.compress(chunk) if chunk else b"") + z.flush(zlib.Z_FINISH)
        self.zin += len(chunk)
        self.zout += len(out)
        self.done = True
        if self.held:
            out = self.held + out
            self.held = b""
        return out

    def ratio(self) -> str | None:
        """$gzip_ratio once the body is complete (ngx_http_gzip_ratio_variable's rounding)."""
        if not self.done or not self.zout:
            return None
        zin, zout = self.zin, self.zout
        whole, frac = zin // zout, zin * 100 // zout % 100
        if zin * 1000 // zout % 10 > 4:
            frac += 1
            if frac > 99:
                whole += 1
                frac = 0
        return f"{whole}.{frac:02d}"

