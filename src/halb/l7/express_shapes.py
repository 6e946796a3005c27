"""What the proxy's express lane (l7/express.py) takes, decided once and remembered: request
heads split by regular expressions (by their bytes), the routes of a server's URIs (a location
that only proxies), and upstream answers with their client heads per route (by their bytes).

A request head in nginx's and llhttp's common ground is taken, anything else is left to the
general path (l7/http.py); so is a location with anything the lane does not reproduce, and an
answer that is not a whole 2xx with a Content-Length.
"""

from __future__ import annotations

import re
from typing import Any

from halb.config.model import Location, LocConf, ProxyPass, Server
from halb.l7.proxy import DEFAULT_NEXT
from halb.l7.proxy_headers import (
    BODY_LENGTH,
    CHUNKED_FLAG,
    CONSUMED,
    NORMAL,
    Plan,
    plan_for,
    render_head,
)
from halb.l7.proxy_response import DONE, parse_head
from halb.l7.request import Request
from halb.l7.response import DATES, Response
from halb.l7.routing import find_location

# A whole request head in nginx's and llhttp's common ground: GET or HEAD, an origin-form
# target that needs no normalization (no "%", "#", "\\", controls, spaces or bytes above 0x7e;
# "//" and "/." are refused below), HTTP/1.0 or 1.1, header names of letters, digits and "-",
# values of visible ASCII with inner spaces, one space after the colon and none at the end
# (so the line is the one nginx would rebuild), CRLF line ends, nothing after the head.
_HEAD = re.compile(r"(GET|HEAD) (/[^ ?#%\\\x00-\x20\x7f-\uffff]*)(\?[^ #\x00-\x20\x7f-\uffff]*)?"
                   r" HTTP/1\.([01])\r\n((?:[A-Za-z0-9-]+: [!-~](?:[ -~]*[!-~])?\r\n)*)\r\n\Z")
_LINE = re.compile(r"([A-Za-z0-9-]+): ([^\r]*)\r\n")
# request headers that call for the general path: a body, an upgrade, Expect, the headers
# nginx refuses twice (their duplicates are checked there)
_SPECIAL = frozenset({"content-length", "transfer-encoding", "expect", "upgrade",
                      "if-modified-since", "if-unmodified-since", "content-range", "if-range"})
# the location's settings the lane reproduces (any other directive: the general path)
_KNOWN = frozenset({
    "proxy_pass", "proxy_http_version", "proxy_set_header", "proxy_connect_timeout",
    "proxy_read_timeout", "proxy_send_timeout", "proxy_next_upstream",
    "proxy_next_upstream_tries", "proxy_next_upstream_timeout", "proxy_buffering",
    "proxy_buffer_size", "proxy_buffers", "proxy_busy_buffers_size", "proxy_request_buffering",
    "proxy_hide_header", "proxy_pass_header", "proxy_redirect", "proxy_intercept_errors",
    "proxy_ignore_client_abort", "postpone_output", "proxy_pass_request_headers",
    "proxy_pass_request_body", "proxy_bind"})  # (proxy_bind: new connections, made by proxy.py)
_MAX_URIS = 4096  # URIs remembered per server (then forgotten all at once)


class Route:
    """A location the lane may answer, with what it needs, resolved once."""

    __slots__ = ("conf", "filters_static", "location", "plan", "pp", "static", "upstream")

    def __init__(self, location: Location, pp: ProxyPass, plan: Plan) -> None:
        self.location = location
        self.conf = location.conf
        self.pp = pp
        self.plan = plan
        self.upstream = pp.upstream
        # the request head sent upstream depends only on the client's head (remembered with
        # it) unless a proxy_set_header reads something else ($remote_addr, ...)
        self.static = all(_static_entry(entry) for entry in plan.sending)
        # what add_header, expires and gzip do depends only on the head, the answer and the
        # second unless a value has variables
        f = self.conf.filters
        self.filters_static = f is not None and all(h.value.is_static for h in f.headers) \
            and (f.expires is None or f.expires.value is None)


_HEAD_VARIABLES = frozenset({"proxy_host", "proxy_port", "host", "request_uri", "uri", "args",
                             "request_method", "scheme"})


def _static_entry(entry: tuple[Any, ...]) -> bool:
    _name, line, tpl, kind, _getter, _latin1 = entry
    if line is not None or kind in (BODY_LENGTH, CHUNKED_FLAG):
        return True  # (no body in the lane: the length and chunked lines are never sent)
    if kind != NORMAL:
        return False
    return all(isinstance(part, str) or part.name in _HEAD_VARIABLES or
               (part.name.startswith("http_") and part.name != "http_cookie")
               for part in tpl.parts)


def _route_for(server: Server, location: Location) -> Route | None:
    conf: LocConf = location.conf
    if server.conf.rewrite is not None or conf.rewrite is not None or \
            conf.try_files is not None or conf.internal or \
            location.regex is not None:
        return None
    extra = conf.extra
    pp = extra.get("proxy_pass")
    if not isinstance(pp, ProxyPass) or pp.has_variables or pp.scheme != "http" or \
            pp.upstream is None:
        return None
    if any(key not in _KNOWN and not key.startswith("gzip") for key in extra):
        return None  # (gzip settings without a filter: gzip is off here)
    return Route(location, pp, plan_for(extra, DEFAULT_NEXT))


# id(server) -> (server, its URIs -> Route or None)
_ROUTES: dict[int, tuple[Server, dict[str, Route | None]]] = {}


def route_of(server: Server, uri: str) -> Route | None:
    entry = _ROUTES.get(id(server))
    if entry is None or entry[0] is not server:
        if len(_ROUTES) > 1024:  # reloads make new servers: forget old ones
            _ROUTES.clear()
        entry = _ROUTES[id(server)] = (server, {})
    uris = entry[1]
    try:
        return uris[uri]
    except KeyError:
        pass
    m = find_location(server.locations, uri)
    route = None
    if m.location is not None and not m.redirect and not m.captures and not m.named:
        route = _route_for(server, m.location)
    if len(uris) >= _MAX_URIS:
        uris.clear()
    uris[uri] = route
    return route


class Head:
    """A request head the lane may take, split once (heads repeat on keep-alive connections:
    they are remembered by their bytes)."""

    __slots__ = ("header_list", "headers", "host_header", "keepalive", "method", "path",
                 "query", "request_line", "target", "upstream_heads", "version")

    def __init__(self, method: str, path: str, query: str | None, minor: str,
                 header_list: list[tuple[str, str]], headers: dict[str, str],
                 keepalive: bool) -> None:
        self.method = method
        self.path = path
        self.query = query[1:] if query else None
        self.target = path + query if query else path
        self.version = 11 if minor == "1" else 10
        self.request_line = f"{method} {self.target} HTTP/1.{minor}"
        self.header_list = tuple(header_list)
        self.headers = headers
        self.host_header = headers.get("host")
        self.keepalive = keepalive
        self.upstream_heads: dict[Route, bytes] = {}  # the request head sent upstream


_HEADS: dict[bytes, Head | None] = {}
_HEADS_MAX = 1024


def split(data: bytes) -> Head | None:
    """The head in `data` if it is one the lane may take, else None."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    m = _HEAD.match(text)
    if m is None:
        return None
    method, path, query, minor, block = m.groups()
    if "//" in path or "/." in path:
        return None
    header_list = _LINE.findall(block) if block else []
    headers: dict[str, str] = {}
    for name, value in header_list:
        low = name.lower()
        if low in headers or low in _SPECIAL:
            return None
        headers[low] = value
    connection = headers.get("connection")
    if connection is None:
        keepalive = minor == "1"
    else:
        connection = connection.lower()
        if connection == "close":
            keepalive = False
        elif connection == "keep-alive":
            keepalive = True
        else:
            return None
    if minor == "1" and "host" not in headers:
        return None  # 400: the general path answers it
    return Head(method, path, query, minor, header_list, headers, keepalive)


class Answer:
    """An upstream's whole answer the lane may pass on (a 2xx with a Content-Length, head
    and body in one read), parsed once: backends repeat their answers byte for byte within a
    second, so answers are remembered by their bytes, with their client heads per route."""

    __slots__ = ("close", "code", "fields", "filtered", "length", "rendered", "size",
                 "status_line")

    def __init__(self, code: int, status_line: str, size: int, length: int, close: bool,
                 fields: list[tuple[str, tuple[str, str]]]) -> None:
        self.code = code
        self.status_line = status_line
        self.size = size  # of the head
        self.length = length
        self.close = close  # the upstream closes after it (HTTP/1.0, Connection: close)
        self.fields = fields  # (lower-case name, (name, value))
        # (route, keep-alive) -> (the Date's second, the client's head, its Response: one
        # object for the requests it answers, read by their variables and never changed)
        self.rendered: dict[tuple[Route, bool], tuple[int, bytes, Response]] = {}
        # through the output filters, also per client head (l7/express.py's _filtered)
        self.filtered: dict[tuple[Route, bool, Head], Filtered] = {}

    def passed(self, hide: frozenset[str]) -> tuple[list[tuple[str, str]], str | None]:
        """The headers passed to the client in their order, and the Content-Type (placed by
        the header filter), as ProxyRequest._send_head selects them."""
        content_type = None
        out = []
        for low, pair in self.fields:
            if low in hide:
                continue
            if low in CONSUMED:
                if low == "content-type":
                    content_type = pair[1]
                continue
            out.append(pair)
        return out, content_type

    def render(self, route: Route, r: Request) -> tuple[int, bytes, Response]:
        """The client's head as ProxyRequest._send_head renders it for this route."""
        plan = route.plan
        out, content_type = self.passed(plan.hide)
        date = DATES.header()  # (the second the rendering is good for)
        head = render_head(r, self.code, self.status_line, content_type, self.length, None,
                           out, plan, False, r.keepalive)
        resp = Response(self.code, headers=out, content_type=content_type,
                        content_length=self.length)
        if date is not DATES.date_header:  # (the second turned while rendering)
            return (-1, head, resp)
        rendered = (DATES.second, head, resp)
        self.rendered[(route, r.keepalive)] = rendered
        return rendered


class Filtered:
    """An answer's client head through a route's output filters for one client head: what
    to do again for the next such request within the second."""

    __slots__ = ("chunked", "gzip", "head", "keepalive", "resp", "second")

    def __init__(self, second: int, head: bytes, resp: Response, gzip: tuple[int, ...] | None,
                 chunked: bool, keepalive: bool) -> None:
        self.second = second
        self.head = head
        self.resp = resp  # shared: its `gzip` is the body filter of the request being answered
        self.gzip = gzip  # GzipBody's arguments when the body is compressed
        self.chunked = chunked
        self.keepalive = keepalive  # (an HTTP/1.0 client of a compressed answer: close)


OTHER = Answer(0, "", 0, -1, True, [])  # not the lane's: the general path reads it
_ANSWERS: dict[bytes, Answer] = {}
_ANSWERS_MAX = 512
_ANSWER_BYTES = 4096  # longer answers are not remembered


def _answer(data: bytes) -> Answer:
    status, head, _ = parse_head(data, len(data) + 1)
    if status != DONE or head is None:
        return OTHER
    code = head.status
    lows = head.lows
    if not 200 <= code < 300 or code == 204 or head.accel or head.chunked or \
            head.content_length < 0 or "location" in lows or "refresh" in lows:
        a = OTHER
    else:
        a = Answer(code, head.status_line, head.size, head.content_length,
                   head.connection_close, list(zip(lows, head.headers, strict=True)))
    if len(data) <= _ANSWER_BYTES:
        if len(_ANSWERS) >= _ANSWERS_MAX:
            _ANSWERS.clear()
        _ANSWERS[data] = a
    return a


def head_of(data: bytes) -> Head | None:
    """The head `data` holds if the lane may take it (remembered by its bytes)."""
    try:
        return _HEADS[data]
    except KeyError:
        pass
    h = split(data)
    if len(_HEADS) >= _HEADS_MAX:
        _HEADS.clear()
    _HEADS[data] = h
    return h


def answer_of(data: bytes) -> Answer:
    """The answer `data` holds (OTHER when it is not the lane's; remembered by its bytes)."""
    a = _ANSWERS.get(data)
    return a if a is not None else _answer(data)
