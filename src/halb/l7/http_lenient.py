"""nginx-compatible request reading where llhttp is stricter than nginx.

httptools (llhttp) refuses things nginx accepts: methods it does not know, bytes above 0x7f in
the request-target, bare LF line endings, control characters in header values, HTTP/1.2. When
the fast parser refuses data that starts a request, the connection feeds that data again line by
line through this mixin, rewriting what nginx accepts into what llhttp takes, and refusing what
nginx refuses (obsolete line folding, NUL, empty header names) with nginx's 400.

A head still open after a read is followed here too (_head_open): HTTP/0.9 ("GET /a.txt CRLF",
a request line without a version) is nginx's, and llhttp would wait for a header after such a
line: the line ends the request, which is answered with the bare body, no header, and closes the
connection; and a header line that fills a large header buffer is nginx's 494 at once, where
llhttp would gather it whole.
"""

from __future__ import annotations

import re
from typing import Any

import httptools


class ParseAbort(Exception):
    """Raised from a parser callback to stop parsing with an HTTP status."""

    def __init__(self, status: int, log: str | None = None) -> None:
        super().__init__(status, log)
        self.status = status
        self.log = log


_Abort = ParseAbort

CHUNK_QUIET = 65536  # bytes of a chunked body's framing in a row without data (see _chunked_open)


class Reparse(ParseAbort):
    """From a callback of the strict parser: read this data again line by line (an HTTP/0.9
    request line with more after it). Where that cannot be done it is nginx's 400."""

    def __init__(self) -> None:
        super().__init__(400, "client sent invalid request")


class LenientParsing:
    """Mixin for HttpConnection: the line-by-line feeder (see the module docstring)."""

    __slots__ = ()
    cur: Any
    parser: Any
    line_seen: bool
    method: bytes | None
    escaping: bool
    http09: bool
    conf: Any
    line_part: tuple[Any, int, bytes] | None
    chunk_quiet: tuple[Any, int, int] | None
    header_bytes: int
    url_parts: list[bytes]
    pending: Any
    slow: bool
    url_len: int

    def _feed_slow(self, data: bytes) -> None:
        """Feed llhttp line by line, turning what nginx accepts and llhttp does not into what
        llhttp takes: an unknown method (kept aside), bytes above 0x7f and "%" in the target
        (%-escaped, undone in on_url so $request_uri keeps the bytes as sent), bare LF (CRLF),
        header lines nginx ignores (dropped); folded and NUL-carrying lines are refused as
        nginx refuses them. The parser is lenient about header values and versions."""
        feed = self.parser.feed_data
        i, n = 0, len(data)
        while i < n:
            if self.pending is not None:
                return  # a request that ends the connection (an error, HTTP/0.9): no more
            r = self.cur
            if r is not None and r.request_line:  # in the body: as much as belongs to it
                if r.chunked:
                    nl = data.find(b"\n", i)
                    end = n if nl < 0 else nl + 1
                else:
                    end = n
                    if r.content_length is not None:
                        end = min(n, i + max(1, r.content_length - r.body_received))
                feed(data[i:end])
                i = end
                continue
            nl = data.find(b"\n", i)
            end = n if nl < 0 else nl + 1
            line = data[i:end]
            i = end
            if line.endswith(b"\n") and not line.endswith(b"\r\n"):
                line = line[:-1] + b"\r\n"
            if r is None or not self.line_seen:
                if r is None and line.strip(b"\r\n") == b"":
                    feed(line)  # empty lines before a request
                    continue
                self._feed_request_line(line)
                if line.endswith(b"\n") and self.cur is not None:
                    self.line_seen = True
                continue
            if line in (b"\r\n", b"\r"):
                feed(line)
                continue
            if line[:1] in (b" ", b"\t"):
                raise _Abort(400, "client sent invalid header line")  # obsolete line folding
            if b"\x00" in line:
                raise _Abort(400, "client sent invalid header line")
            colon = line.find(b":")
            if colon == 0:
                raise _Abort(400, "client sent invalid header line")
            if colon < 0 or not line[:colon].isascii():
                continue  # nginx ignores the line (ignore_invalid_headers)
            feed(line)

    def _feed_request_line(self, line: bytes) -> None:
        if self.cur is None and _HTTP09.fullmatch(line):  # no version: HTTP/0.9
            method, target = line.split()
            self._end_http09(method + b" " + target + b"\r\n")
            return
        self._feed_line(line)

    def _end_http09(self, line: bytes) -> None:
        """Feed the end of a request line without a version (`line`: the rest of it, maybe
        nothing), then an empty line, which llhttp takes as the end of such a request; the
        head's end sees http09 set (_http09_head)."""
        self.http09 = True
        try:
            self._feed_line(line + b"\r\n")
        finally:
            self.http09 = False

    def _feed_line(self, line: bytes) -> None:
        sp = line.find(b" ")
        if sp > 0 and self.cur is None:
            method = line[:sp]
            if _NGINX_METHOD.fullmatch(method) and not _llhttp_knows(method):
                self.method = method
                line = b"GET" + line[sp:]
        if line.isascii():
            self.parser.feed_data(line)
            return
        self.escaping = True
        try:
            self.parser.feed_data(_HIGH_BYTES.sub(_escape_byte, line))
        finally:
            self.escaping = False

    def _head_open(self, data: bytes) -> None:
        """After a feed that left a request head open, the line still open is followed:
        - nginx fails a header line longer than a large header buffer as soon as it fills one
          (494), where llhttp would gather it whole (and httptools copies it on every read:
          quadratic); a request line that long is on_url's 414;
        - a request line without a version ends the request (HTTP/0.9): `data` ended a line
          that is exactly the method and target llhttp has, no header seen (llhttp would wait
          for a header line; it keeps the previous message's version, so the bytes decide).
        line_part: (request, the open line's length, its bytes while it may be a request line,
        else its first bytes for the log)."""
        cur, part = self.cur, self.line_part
        nl = data.rfind(b"\n", 0, len(data) - 1)
        keep = not self.header_bytes  # (a header came: the request line had a version)
        if nl < 0 and part is not None and part[0] is cur:
            length = part[1] + len(data)
            line = part[2] + data if keep else part[2]
        else:
            length = len(data) - nl - 1
            line = data[nl + 1:] if keep else data[nl + 1:nl + 33]
        if data[-1:] != b"\n":
            size = self.conf.large_client_header_buffers[1]
            if length > size and length > self.url_len + 32:  # (not the request line)
                name = line.partition(b":")[0][:32].lstrip(b"\r\n")
                raise _Abort(494, 'client sent too long header line: "'
                                  f'{name.decode("latin-1")}..."')
            self.line_part = (cur, length, line if length <= size else line[:32])
            return
        self.line_part = None
        if not keep or not self.url_len or line.rstrip(b"\r\n") != \
                (self.method or self.parser.get_method()) + b" " + b"".join(self.url_parts):
            return
        self._end_http09(b"")

    def _chunked_open(self, data: bytes) -> None:
        """After a read of a chunked body still open: nginx skips chunk extensions and trailer
        lines whatever their length, while httptools gathers a trailer line again on every
        read (quadratic in its length: 20 MB in 10 KB reads cost 18 s of CPU). More than
        CHUNK_QUIET bytes in a row without body data are refused as nginx refuses a bad
        chunked body (no client sends that much framing). chunk_quiet: (request, its
        body_received at the last read, the bytes since without data)."""
        cur, quiet = self.cur, self.chunk_quiet
        got = cur.body_received
        if quiet is not None and quiet[0] is cur and quiet[1] == got:
            n = quiet[2] + len(data)
            if n > CHUNK_QUIET:
                raise _Abort(400, "client sent invalid chunked body")
            self.chunk_quiet = (cur, got, n)
        else:
            self.chunk_quiet = (cur, got, 0)

    def _http09_head(self, r: Any) -> None:
        """At the head's end, a request without a version: HTTP/0.9 (nginx takes only GET),
        answered without a header; nothing more is read. An explicit "HTTP/0.x" is nginx's
        400 (so is an HTTP/0.9 line that llhttp read with more after it and that cannot be
        read again line by line)."""
        if not self.http09:
            if not self.slow:
                raise Reparse
            r.version = 11  # (nginx's error answer has a header)
            raise _Abort(400, "client sent invalid request")
        self.http09 = False
        r.request_line = f"{r.method} {r.target}"  # ($request has no version)
        r.request_length -= len(" HTTP/0.9") + 2
        r.keepalive = False
        if r.method != "GET":
            raise _Abort(400, "client sent invalid method in HTTP/0.9 request")
        self.pending = (None, 0)  # answered, then closed


def make_parser(proto: object, lenient: bool = False) -> httptools.HttpRequestParser:
    p = httptools.HttpRequestParser(proto)
    if lenient:  # control characters in header values, HTTP/1.2 (see _feed_slow)
        p.set_dangerous_leniencies(lenient_headers=True, lenient_version=True)
    return p


_NGINX_METHOD = re.compile(rb"[A-Z_-]+")
_LLHTTP_METHODS: dict[bytes, bool] = {}


def _llhttp_knows(method: bytes) -> bool:
    known = _LLHTTP_METHODS.get(method)
    if known is None:
        try:
            httptools.HttpRequestParser(object()).feed_data(method + b" / HTTP/1.1\r\n")
            known = True
        except httptools.HttpParserError:
            known = False
        if len(_LLHTTP_METHODS) < 256:
            _LLHTTP_METHODS[method] = known
    return known


_HTTP09 = re.compile(rb"[^ \r\n]+ +[^ \r\n]+ *\r?\n")
_HIGH_BYTES = re.compile(rb"[%\x80-\xff]")


def _escape_byte(m: re.Match[bytes]) -> bytes:
    return b"%%%02X" % m.group()[0]


