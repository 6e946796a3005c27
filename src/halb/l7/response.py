"""Responses as nginx writes them: status lines, header order, special (error) pages, dates.

Status lines and error pages are nginx's own text (ngx_http_header_filter_module.c,
ngx_http_special_response.c), so a client sees the same bytes from halb as from nginx except
for the server token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

from halb import __version__

SERVER_NAME = "halb"
SERVER_VERSION = f"{SERVER_NAME}/{__version__}"

REASONS: dict[int, str] = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Moved Temporarily", 303: "See Other",
    304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Not Allowed", 406: "Not Acceptable", 408: "Request Time-out",
    409: "Conflict", 410: "Gone", 411: "Length Required", 412: "Precondition Failed",
    413: "Request Entity Too Large", 414: "Request-URI Too Large",
    415: "Unsupported Media Type", 416: "Requested Range Not Satisfiable",
    421: "Misdirected Request", 429: "Too Many Requests",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Temporarily Unavailable", 504: "Gateway Time-out",
    505: "HTTP Version Not Supported", 507: "Insufficient Storage",
}

# nginx-internal codes answered with a 400 status line and their own page.
SPECIAL_400 = {
    494: "Request Header Or Cookie Too Large",
    495: "The SSL certificate error",
    496: "No required SSL certificate was sent",
    497: "The plain HTTP request was sent to HTTPS port",
}


def _status_line(code: int) -> bytes:
    reason = REASONS.get(code)
    if reason is None:
        return b"HTTP/1.1 %03d \r\n" % code
    return b"HTTP/1.1 %d %s\r\n" % (code, reason.encode())


STATUS_LINES: dict[int, bytes] = {c: _status_line(c) for c in REASONS}


def status_line(code: int) -> bytes:
    line = STATUS_LINES.get(code)
    if line is None:
        if code in SPECIAL_400:
            return STATUS_LINES[400]
        line = _status_line(code)
    return line


# Codes that get a built-in page (ngx_http_error_pages); others get no body.
_PAGES = {301, 302, 303, 307, 308} | set(range(400, 417)) - {407} | {421, 429} \
    | set(SPECIAL_400) | {500, 501, 502, 503, 504, 505, 507}

_MSIE_PADDING = (
    b"<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n" * 6
)


# Page titles that differ from the status line's reason (ngx_http_special_response.c).
PAGE_TITLES = {302: "302 Found", 401: "401 Authorization Required"}


def error_page(code: int, server_tokens: str = "on", msie: bool = False) -> bytes | None:
    """The built-in page for `code`, or None when nginx sends none."""
    if code not in _PAGES:
        return None
    if code in SPECIAL_400:
        title = f"400 {SPECIAL_400[code]}"
        head = (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
                f"<center><h1>400 Bad Request</h1></center>\r\n"
                f"<center>{SPECIAL_400[code]}</center>\r\n")
    else:
        title = PAGE_TITLES.get(code) or f"{code} {REASONS[code]}"
        head = (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
                f"<center><h1>{title}</h1></center>\r\n")
    token = SERVER_VERSION if server_tokens != "off" else SERVER_NAME
    body = head.encode() + b"<hr><center>" + token.encode() + b"</center>\r\n</body>\r\n</html>\r\n"
    if msie and code >= 400:
        body += _MSIE_PADDING
    return body


def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def parse_http_date(value: str) -> float | None:
    try:
        dt = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None:
        return None
    return dt.timestamp()


class DateCache:
    """The Date header and log times, computed once per second (nginx's ngx_cached_* times)."""

    __slots__ = ("date_header", "second", "time_iso8601", "time_local")

    def __init__(self) -> None:
        self.second = -1
        self.date_header = b""
        self.time_local = ""
        self.time_iso8601 = ""
        self.update(time.time())

    def header(self) -> bytes:
        """The Date line for a header being sent now (nginx updates its cached time on every
        event-loop wake-up, so the first answer after an idle spell is not dated earlier)."""
        self.update(time.time())
        return self.date_header

    def update(self, now: float) -> None:
        sec = int(now)
        if sec == self.second:
            return
        self.second = sec
        self.date_header = b"Date: " + http_date(sec).encode() + b"\r\n"
        lt = time.localtime(sec)
        self.time_local = time.strftime("%d/%b/%Y:%H:%M:%S ", lt) + time.strftime("%z", lt)
        self.time_iso8601 = time.strftime("%Y-%m-%dT%H:%M:%S", lt) + _iso_offset(lt)


def _iso_offset(lt: time.struct_time) -> str:
    z = time.strftime("%z", lt)
    return f"{z[:3]}:{z[3:]}"


DATES = DateCache()


@dataclass(slots=True)
class Response:
    """What a handler answers. Either `body` (bytes) or a file range is sent after headers."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    content_type: str | None = None
    content_length: int | None = None  # None: len(body)
    last_modified: float | None = None
    etag: str | None = None
    location: str | None = None
    location_early: bool = False  # made absolute by the header filter: written before Connection
    file_fd: int | None = None  # an open file to send after the headers
    file_offset: int = 0
    file_count: int = 0
    close: bool = False  # close the connection after this response
    accept_ranges: bool = False
    no_body: bool = False  # HEAD, 304: headers only
    unknown_length: bool = False  # no Content-Length: chunked for HTTP/1.1, else close
    status_line: bytes | None = None  # a proxied response keeps the upstream's reason phrase
    last_modified_raw: str | None = None  # a proxied Last-Modified, as the upstream wrote it
    vary: bool = False  # "Vary: Accept-Encoding" (gzip_vary: l7/filters/gzip.py)
    gzip: Any = None  # the gzip body filter when compressed ($gzip_ratio)


_LAST_MODIFIED: dict[float, bytes] = {}  # mtime -> its header line (files change rarely)


def render_headers(resp: Response, *, server_tokens: str, keepalive: bool,
                   keepalive_header: float | None = None, chunked: bool = False) -> bytes:
    """Serialize the status line and headers in nginx's order (ngx_http_header_filter): the
    fixed ones, a Location the filter made absolute, Connection, Keep-Alive, then the list
    (a Location that was already absolute, ETag, Accept-Ranges, the rest as added)."""
    status = resp.status
    out = [resp.status_line or status_line(status)]
    if server_tokens != "off":
        out.append(b"Server: " + SERVER_VERSION.encode() + b"\r\n")
    else:
        out.append(b"Server: " + SERVER_NAME.encode() + b"\r\n")
    out.append(DATES.header())
    no_content = status == 204  # nginx drops the type, length and Last-Modified of a 204
    if resp.content_type and not no_content:
        out.append(b"Content-Type: " + resp.content_type.encode("latin-1") + b"\r\n")
    length = resp.content_length if resp.content_length is not None else len(resp.body)
    if status != 304 and not (no_content or 100 <= status < 200 or resp.unknown_length):
        out.append(b"Content-Length: %d\r\n" % length)
    if resp.last_modified is not None and not no_content:
        line = _LAST_MODIFIED.get(resp.last_modified)
        if line is None:
            line = b"Last-Modified: " + http_date(resp.last_modified).encode() + b"\r\n"
            if len(_LAST_MODIFIED) >= 4096:
                _LAST_MODIFIED.clear()
            _LAST_MODIFIED[resp.last_modified] = line
        out.append(line)
    elif resp.last_modified_raw is not None and not no_content:
        out.append(b"Last-Modified: " + resp.last_modified_raw.encode("latin-1") + b"\r\n")
    location = None
    if resp.location is not None:
        location = b"Location: " + resp.location.encode("utf-8", "surrogateescape") + b"\r\n"
        if resp.location_early:
            out.append(location)
            location = None
    if chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    out.append(b"Connection: keep-alive\r\n" if keepalive else b"Connection: close\r\n")
    if keepalive and keepalive_header:
        out.append(b"Keep-Alive: timeout=%d\r\n" % int(keepalive_header))
    if resp.vary:
        out.append(b"Vary: Accept-Encoding\r\n")
    if location is not None:
        out.append(location)
    if resp.etag is not None:
        out.append(b"ETag: " + resp.etag.encode() + b"\r\n")
    if resp.accept_ranges:
        out.append(b"Accept-Ranges: bytes\r\n")
    for name, value in resp.headers:
        out.append(name.encode("latin-1") + b": " + value.encode("utf-8", "surrogateescape")
                   + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)
