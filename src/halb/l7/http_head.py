"""The checks nginx makes once a request's header is read (ngx_http_process_request_header):
the request-target (origin form, absolute form with nginx's host rules, `*` for OPTIONS), Host
(validated; required by HTTP/1.1), the server it selects, Content-Length and Transfer-Encoding
(the smuggling shapes are 400, an unknown coding 501), Expect, the normalized URI, and whether
the connection may stay open (keepalive_timeout, keepalive_requests, keepalive_time, draining);
and, while the head is read, nginx's header buffers simulated (414 and 494 where nginx says so).
"""

from __future__ import annotations

import re
import time
from typing import Any

from halb.l7.http_lenient import ParseAbort
from halb.l7.request import Request
from halb.l7.routing import validate_host
from halb.l7.uri import BadURI, normalize, split_target

_ABSOLUTE_URI = re.compile(
    r"[A-Za-z][A-Za-z0-9+.\-]*://"
    r"(\[[A-Za-z0-9:._~!$&'()*+,;=\-]*\]|[A-Za-z0-9.\-]*)(?::[0-9]*)?([/?].*|)\Z", re.S)


class RequestHeadChecks:
    """Mixin of HttpConnection (l7/http.py)."""

    __slots__ = ()
    # (the attributes are HttpConnection's; see its __slots__)
    table: Any
    conf: Any
    draining: bool
    requests: int
    started: float
    last_host: tuple[str | None, str | None]
    last_match: tuple[str | None, Any]
    parser: Any
    url_len: int
    hb_busy: int
    hb_cap: int
    hb_pos: int

    # nginx reads the request line and headers into a client_header_buffer_size buffer, then
    # into up to `num` large_client_header_buffers of `size`: when a buffer fills, the line in
    # progress moves to a new one. A request line that does not fit is 414, a header 494.

    def _fits(self, length: int) -> bool:
        """Place a line of `length` bytes in the simulated buffers."""
        if length <= self.hb_cap - self.hb_pos:
            self.hb_pos += length
            return True
        num, size = self.conf.large_client_header_buffers
        if self.hb_busy >= num or length > size:
            return False
        self.hb_busy += 1
        self.hb_cap = size
        self.hb_pos = length
        return True

    def _request_line_fits(self) -> None:
        # "METHOD SP target SP HTTP/1.x CRLF"
        length = len(self.parser.get_method()) + self.url_len + 12
        self.hb_busy = 0
        self.hb_pos = 0
        self.hb_cap = self.conf.client_header_buffer_size
        if not self._fits(length):
            raise ParseAbort(414, "client sent too long URI")

    def _process_header(self, r: Request) -> tuple[int, str | None]:
        """ngx_http_process_request_header and the URI checks: (0, None), or a status to
        answer with the error log message nginx writes."""
        target = r.target
        host = None
        if target.startswith("/"):
            path, args = split_target(target)
        elif target == "*" and r.method == "OPTIONS":
            path, args = "*", None
        else:
            # an absolute-URI: any scheme, a host of letters, digits, "." and "-" (or an IP
            # literal), an optional port, then "/", "?" or nothing (ngx_http_parse_request_line)
            m = _ABSOLUTE_URI.match(target)
            if m is None:
                return self._bad(r, "client sent invalid request")
            host = validate_host(m.group(1))
            if host is None:
                return self._bad(r, "client sent invalid host in request line")
            rest = m.group(2)
            path, args = split_target("/" + rest if rest[:1] in ("?", "") else rest)
        header_host = r.headers.get("host")
        if header_host is not None:
            if header_host == self.last_host[0]:  # keep-alive clients repeat their Host
                valid = self.last_host[1]
            else:
                valid = validate_host(header_host)
                self.last_host = (header_host, valid)
            if valid is None:
                return self._bad(r, "client sent invalid host header")
            if host is None:
                host = valid
        elif r.version >= 11:
            return self._bad(r, 'client sent HTTP/1.1 request without "Host" header')
        r.host = host or ""
        if r.host == self.last_match[0]:
            match = self.last_match[1]
        else:
            match = self.table.find(r.host)
            self.last_match = (r.host, match)
        r.server = match.server
        if match.captures or match.named:
            r.captures = tuple(match.captures)
            r.named_captures = dict(match.named)
        self.conf = r.server.conf
        r.conf = r.server.conf
        cl = r.headers.get("content-length")
        if cl is not None:
            if not cl.isdigit() or len(cl) > 18:
                return self._bad(r, 'client sent invalid "Content-Length" header')
            r.content_length = int(cl)
        te = r.headers.get("transfer-encoding")
        if te is not None:
            if r.version < 11:
                return self._bad(r, 'client sent HTTP/1.0 request with "Transfer-Encoding" '
                                    "header")
            if te.lower() == "chunked":
                if cl is not None:
                    return self._bad(r, 'client sent "Content-Length" and "Transfer-Encoding" '
                                        "headers at the same time")
                r.chunked = True
            else:
                r.keepalive = False
                return 501, f'client sent unknown "Transfer-Encoding": "{te}"'
        expect = r.headers.get("expect")
        if expect is not None and expect.lower() == "100-continue" and r.version == 11:
            r.expect_continue = True
        if path == "*":
            r.uri = "*"
            return self._bad(r, "client sent invalid request")
        try:
            r.uri = normalize(path, r.server.conf.merge_slashes)
        except BadURI:
            r.uri = path
            return self._bad(r, "client sent invalid request")
        r.args = args
        conf = r.server.conf
        if r.keepalive and (conf.keepalive_timeout <= 0 or self.draining
                            or self.requests >= conf.keepalive_requests
                            or time.monotonic() - self.started > conf.keepalive_time):
            r.keepalive = False
        return 0, None

    @staticmethod
    def _bad(r: Request, message: str) -> tuple[int, str]:
        r.keepalive = False
        return 400, message

