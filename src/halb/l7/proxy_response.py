"""Reading an upstream's HTTP/1.x response the way nginx's proxy module reads it (PURE).

The status line follows ngx_http_parse_status_line: "HTTP/" major "." minor, spaces, three
digits, then a space, "." or the end of the line; anything else is not an HTTP response and
nginx passes the bytes through as an HTTP/0.9 answer ("upstream sent no valid HTTP/1.0 header").
The status line is kept from the code to the end of the line ("200 OK", "599", "404 Nope") and
sent to the client as it came.

Header lines follow ngx_http_parse_header_line for upstreams (underscores allowed, LF or CRLF,
a line without ":" is a header with an empty value, a repeated "HTTP/..." line is ignored, a
name with a control character or a space is invalid → 502). The header block must fit in
proxy_buffer_size ("upstream sent too big header" → 502).

The 1.22 handlers: the last Content-Length wins (not a number: the length is unknown),
Transfer-Encoding containing "chunked" makes the body chunked and drops the length, Connection
containing "close" and an HTTP/1.0 status line end the connection after the body.

Bodies: a length, chunked (ngx_http_parse_chunked: hex size, extensions, trailers skipped), or
until the upstream closes. Bytes after the end make the connection unfit for keep-alive.
"""

from __future__ import annotations

import re

NEED_MORE = 0
DONE = 1
HTTP09 = 2
INVALID = 3
TOO_BIG = 4


def _status_prefix_ok(line: bytes) -> bool | None:
    """nginx's status line state machine over a (possibly partial) first line without its LF:
    True when valid so far, False when it cannot be a status line, None when more is needed
    to decide (the caller treats a complete line the same way)."""
    n = len(line)
    prefix = b"HTTP/"
    if line[:5] != prefix[:min(n, 5)]:
        return False
    if n <= 5:
        return None
    i = 5
    if not 0x31 <= line[i] <= 0x39:  # first major digit 1-9
        return False
    major = line[i] - 0x30
    i += 1
    while i < n and line[i] != 0x2E:  # "."
        c = line[i]
        if not 0x30 <= c <= 0x39 or major > 99:
            return False
        major = major * 10 + c - 0x30
        i += 1
    if i >= n:
        return None
    i += 1
    if i >= n:
        return None
    if not 0x30 <= line[i] <= 0x39:
        return False
    minor = line[i] - 0x30
    i += 1
    while i < n and line[i] != 0x20:
        c = line[i]
        if not 0x30 <= c <= 0x39 or minor > 99:
            return False
        minor = minor * 10 + c - 0x30
        i += 1
    if i >= n:
        return None
    while i < n and line[i] == 0x20:
        i += 1
    digits = 0
    while i < n and digits < 3:
        if not 0x30 <= line[i] <= 0x39:
            return False
        digits += 1
        i += 1
    if digits < 3:
        return None
    if i >= n:
        return True
    c = line[i]
    if c in (0x20, 0x2E):  # " " or "." (IIS: 403.1)
        return True
    if c == 0x0D:
        return i == n - 1
    return False


class ResponseHead:
    """The parsed status line and headers of one upstream response."""

    __slots__ = ("accel", "chunked", "connection_close", "content_length", "headers", "lows",
                 "size", "status", "status_line", "version")

    def __init__(self) -> None:
        self.status = 0
        self.status_line = ""  # "200 OK": from the code to the end of the line
        self.version = 10
        self.headers: list[tuple[str, str]] = []
        self.lows: list[str] = []  # the names in lower case
        self.accel = False  # an X-Accel-* header is present
        self.content_length = -1
        self.chunked = False
        self.connection_close = False
        self.size = 0  # bytes of the status line and headers

    def get(self, low: str) -> str | None:
        lows = self.lows
        return self.headers[lows.index(low)][1] if low in lows else None


# The fast path: a complete head with an HTTP/1.x status line and CRLF line ends, checked and
# split by regular expressions over the whole block (names are tokens, values hold no CR, LF or
# NUL); anything else goes through the line-by-line reader below. Heads repeat (a backend
# answers a resource with the same header block until its Date changes), so parsed heads are
# remembered by their bytes; each answer gets its own lists.
_FAST_STATUS = re.compile(rb"HTTP/1\.([0-9]) +([1-9][0-9][0-9])([ .][^\r\n]*)?\r\n")
_TOKEN_CLASS = "[!#$%&'*+.^_`|~0-9A-Za-z-]"
_FAST_BLOCK = re.compile(f"(?:{_TOKEN_CLASS}+:[^\r\n\x00]*\r\n)*")
_FAST_LINE = re.compile(f"({_TOKEN_CLASS}+): *([^\r\n\x00]*?) *\r\n")
_FAST_NAME = re.compile(f"({_TOKEN_CLASS}+):[^\r\n]*\r\n")

_Memo = tuple[int, int, str, tuple[tuple[str, str], ...], tuple[str, ...], bool, int, bool, bool]
_HEADS: dict[bytes, _Memo] = {}
_new_head = object.__new__
_MEMO_MAX = 512  # heads remembered (then forgotten all at once)
_MEMO_BYTES = 2048  # longer heads are not remembered


def _fast(buf: bytes | bytearray, end: int) -> ResponseHead | None:
    m = _FAST_STATUS.match(buf)
    if m is None:
        return None
    head = ResponseHead()
    minor = m.group(1)[0] - 0x30
    head.version = 10 + minor
    head.status = int(m.group(2))
    head.status_line = buf[m.start(2):m.end() - 2].decode("latin-1")
    if minor == 0:
        head.connection_close = True
    start = m.end()
    if start < end:
        text = buf[start:end + 2].decode("latin-1")
        if _FAST_BLOCK.fullmatch(text) is None:
            return None
        headers = head.headers = _FAST_LINE.findall(text)
        lowered = text.lower()
        lows = head.lows = _FAST_NAME.findall(lowered)
        if not _SPECIAL.isdisjoint(lows) or "x-accel-" in lowered:
            for low, (_, value) in zip(lows, headers, strict=True):
                if low in _SPECIAL or low[:8] == "x-accel-":
                    _special(head, low, value)
    head.size = end + 4
    if head.chunked:
        head.content_length = -1
    return head


def _remembered(memo: _Memo, size: int) -> ResponseHead:
    head = _new_head(ResponseHead)  # (every slot is set below)
    (head.version, head.status, head.status_line, headers, lows, head.accel,
     head.content_length, head.chunked, head.connection_close) = memo
    head.headers = list(headers)
    head.lows = list(lows)
    head.size = size
    return head


def parse_head(buf: bytes | bytearray, limit: int) -> tuple[int, ResponseHead | None, str]:
    """Parse a response header from the start of buf: (NEED_MORE | DONE | HTTP09 | INVALID |
    TOO_BIG, the head when DONE (the lines that fitted when TOO_BIG), an error message)."""
    end = buf.find(b"\r\n\r\n")
    if end >= 0 and end + 4 <= limit:
        key = bytes(buf[:end])
        memo = _HEADS.get(key)
        if memo is not None:
            return DONE, _remembered(memo, end + 4), ""
        if key.count(b"\n") == key.count(b"\r\n"):
            head = _fast(buf, end)
            if head is not None:
                if end <= _MEMO_BYTES:
                    if len(_HEADS) >= _MEMO_MAX:
                        _HEADS.clear()
                    _HEADS[key] = (head.version, head.status, head.status_line,
                                   tuple(head.headers), tuple(head.lows), head.accel,
                                   head.content_length, head.chunked, head.connection_close)
                return DONE, head, ""
    eol = buf.find(b"\n")
    if eol < 0:
        first = bytes(buf)
        if _status_prefix_ok(first) is False:
            return HTTP09, None, ""
        return (TOO_BIG if len(buf) >= limit else NEED_MORE), None, ""
    line = bytes(buf[:eol])
    if line.endswith(b"\r"):
        line = line[:-1]
        if b"\r" in line:
            return HTTP09, None, ""
    if not _status_prefix_ok(line) or b"\r" in line:
        return HTTP09, None, ""
    head = ResponseHead()
    dot = line.index(b".", 5)
    sp = line.index(b" ", dot)
    major = int(line[5:dot])
    minor = int(line[dot + 1:sp])
    head.version = major * 10 + min(minor, 9) if major == 1 else (20 if major > 1 else 10)
    code_at = sp
    while line[code_at] == 0x20:
        code_at += 1
    head.status = int(line[code_at:code_at + 3])
    head.status_line = line[code_at:].decode("latin-1")
    if major * 1000 + minor < 1001:
        head.connection_close = True
    pos = eol + 1
    end = buf.find(b"\r\n\r\n", eol - 1)
    if end >= 0 and end + 4 <= limit:
        block = bytes(buf[pos:end + 2])
        if block.count(b"\n") == block.count(b"\r\n"):  # CRLF only: split at once
            for raw in block.split(b"\r\n")[:-1]:
                bad = _line(head, raw)
                if bad is not None:
                    return INVALID, None, bad
            head.size = end + 4
            if head.chunked:
                head.content_length = -1
            return DONE, head, ""
    while True:
        eol = buf.find(b"\n", pos)
        if eol < 0:
            if len(buf) >= limit:
                return TOO_BIG, head, ""
            return NEED_MORE, None, ""
        if eol + 1 > limit:
            return TOO_BIG, head, ""
        raw = bytes(buf[pos:eol])
        pos = eol + 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw:
            break
        bad = _line(head, raw)
        if bad is not None:
            return INVALID, None, bad
    head.size = pos
    if head.chunked:
        head.content_length = -1
    return DONE, head, ""


_BAD_NAME = re.compile(rb"[\x00-\x20\x7f]")


def _line(head: ResponseHead, raw: bytes) -> str | None:
    """One header line (without its line end) into head; an error message when invalid."""
    if not raw:
        return None
    name_b, colon, value_b = raw.partition(b":")
    if b"\r" in raw or b"\0" in value_b or not name_b:
        return _invalid(raw)
    if _BAD_NAME.search(name_b) is not None:
        if not colon and name_b.startswith(b"HTTP/"):
            return None  # IIS may send the duplicate "HTTP/1.1 ..." lines
        return _invalid(raw)
    name = name_b.decode("latin-1")
    value = value_b.strip(b" ").decode("latin-1") if value_b else ""
    low = name.lower()
    head.headers.append((name, value))
    head.lows.append(low)
    if low in _SPECIAL or low.startswith("x-accel-"):
        _special(head, low, value)
    return None


_SPECIAL = frozenset({"content-length", "transfer-encoding", "connection"})


def _special(head: ResponseHead, low: str, value: str) -> None:
    """The 1.22 handlers of the headers the proxy reads itself (see the module docstring)."""
    if low == "content-length":
        head.content_length = int(value) if value.isdigit() else -1
    elif low == "transfer-encoding":
        if "chunked" in value.lower():
            head.chunked = True
    elif low == "connection":
        if "close" in value.lower():
            head.connection_close = True
    else:
        head.accel = True  # X-Accel-*


def _invalid(raw: bytes) -> str:
    for i, c in enumerate(raw):
        if (c <= 0x20 or c == 0x7F) and (c != 0x20 or b":" not in raw[:i]):
            return (f'upstream sent invalid header: "{raw[:i].decode("latin-1")}'
                    f'\\x{c:02X}..."')
    return f'upstream sent invalid header: "{raw.decode("latin-1")}"'


# -- bodies ----------------------------------------------------------------------------------

LENGTH, CHUNKED, UNTIL_CLOSE, EMPTY = range(4)

# chunked parser states
(_SIZE_START, _SIZE, _EXT, _SIZE_LF, _DATA, _DATA_CR, _DATA_LF, _TRAILER, _TRAILER_LINE,
 _DONE) = range(10)


class BodyReader:
    """Splits upstream bytes into body data for one response: feed() returns the body bytes
    in `data` (chunk framing removed) and sets `done` at the end; `extra` says bytes came after
    the end; `error` a malformed chunked body."""

    __slots__ = ("done", "error", "extra", "left", "mode", "state")

    def __init__(self, mode: int, length: int = 0) -> None:
        self.mode = mode
        self.left = length
        self.done = mode == EMPTY or (mode == LENGTH and length == 0)
        self.extra = False
        self.error = ""
        self.state = _SIZE_START

    def feed(self, data: bytes) -> bytes:
        if self.done:
            if data:
                self.extra = True
            return b""
        mode = self.mode
        if mode == LENGTH:
            n = len(data)
            left = self.left
            if n < left:
                self.left = left - n
                return data
            self.left = 0
            self.done = True
            if n > left:
                self.extra = True
                return data[:left]
            return data
        if mode == UNTIL_CLOSE:
            return data
        return self._chunked(data)

    def _chunked(self, data: bytes) -> bytes:
        out: list[bytes] = []
        i = 0
        n = len(data)
        state = self.state
        mv = memoryview(data)
        while i < n:
            if state == _DATA:
                take = min(self.left, n - i)
                out.append(bytes(mv[i:i + take]))
                i += take
                self.left -= take
                if self.left == 0:
                    state = _DATA_CR
                continue
            c = data[i]
            i += 1
            if state == _SIZE_START:
                d = _HEX.get(c)
                if d is None:
                    return self._bad(out, i)
                self.left = d
                state = _SIZE
            elif state == _SIZE:
                d = _HEX.get(c)
                if d is not None:
                    if self.left > (1 << 59):
                        return self._bad(out, i)
                    self.left = self.left * 16 + d
                    continue
                if c == 0x3B or c in (0x20, 0x09):  # ";" extension, or spaces before it
                    state = _EXT
                elif c == 0x0D:
                    state = _SIZE_LF
                elif c == 0x0A:
                    state = self._after_size()
                else:
                    return self._bad(out, i)
            elif state == _EXT:
                if c == 0x0D:
                    state = _SIZE_LF
                elif c == 0x0A:
                    state = self._after_size()
            elif state == _SIZE_LF:
                if c != 0x0A:
                    return self._bad(out, i)
                state = self._after_size()
            elif state == _DATA_CR:
                if c == 0x0D:
                    state = _DATA_LF
                elif c == 0x0A:
                    state = _SIZE_START
                else:
                    return self._bad(out, i)
            elif state == _DATA_LF:
                if c != 0x0A:
                    return self._bad(out, i)
                state = _SIZE_START
            elif state == _TRAILER:  # at the start of a trailer line (or the final CRLF)
                if c == 0x0D:
                    continue
                if c == 0x0A:
                    state = _DONE
                    break
                state = _TRAILER_LINE
            elif state == _TRAILER_LINE and c == 0x0A:
                state = _TRAILER
        self.state = state
        if state == _DONE:
            self.done = True
            if i < n:
                self.extra = True
        return b"".join(out) if len(out) != 1 else out[0]

    def _after_size(self) -> int:
        if self.left == 0:
            return _TRAILER
        return _DATA

    def _bad(self, out: list[bytes], consumed: int) -> bytes:
        self.error = "upstream sent invalid chunked response"
        self.done = True
        return b"".join(out)


_HEX = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}
