"""The state of one HTTP request as it moves through the phases (nginx's ngx_http_request_t).

Plain data with slots: the connection fills in what the parser saw, the phases fill in the
server, location, status and what was sent; variables and the access log read it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from halb.config.model import Location, LocConf, Server
    from halb.l7.response import Response


class Request:
    __slots__ = (
        "args",
        "body_bytes_sent",
        "body_chunks",
        "body_complete",
        "body_expected",
        "body_received",
        "bytes_sent",
        "captures",
        "chunked",
        "conf",
        "conn",
        "conn_requests",
        "content_length",
        "err_status",
        "error_page_done",
        "expect_continue",
        "header_list",
        "headers",
        "host",
        "internal",
        "keepalive",
        "location",
        "log_memo",
        "method",
        "named_captures",
        "on_body",
        "on_body_done",
        "pipeline",
        "proxy",
        "request_length",
        "request_line",
        "response",
        "send_continue",
        "server",
        "server_captures",
        "start",
        "status",
        "target",
        "uri",
        "uri_changed",
        "uri_changes",
        "valid",
        "valid_location",
        "var_cache",
        "version",
    )

    def __init__(self, conn: Any, start: float) -> None:
        self.conn = conn
        self.start = start
        self.method = "GET"
        self.version = 11  # 9, 10 or 11 (HTTP/0.9, 1.0, 1.1)
        self.target = ""  # the request-target as sent ($request_uri)
        self.request_line = ""
        self.uri = "/"
        self.args: str | None = None
        self.header_list: list[tuple[str, str]] = []  # (name as sent, value)
        self.headers: dict[str, str] = {}  # lower-case name -> first value
        self.host = ""
        self.keepalive = False
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False  # "Expect: 100-continue" not yet tested (HTTP/1.1)
        self.send_continue = False  # write "100 Continue" before the answer
        self.body_expected = False
        self.body_received = 0
        self.body_complete = False
        self.body_chunks: list[bytes] = []  # body read before a handler asked for it
        self.on_body: Callable[[bytes], None] | None = None  # a handler reading the body
        self.on_body_done: Callable[[], None] | None = None
        self.proxy: Any = None  # the ProxyRequest answering this request
        self.server: Server | None = None
        self.server_captures: tuple[Any, Any] | None = None
        self.location: Location | None = None
        self.conf: LocConf | None = None
        self.captures: tuple[str | None, ...] = ()
        self.named_captures: dict[str, str | None] = {}
        self.internal = False
        self.uri_changed = False  # a rewrite changed the URI: search the locations again
        self.valid_location = True  # cleared by rewrite's `break`: proxy_pass ignores its URI
        self.uri_changes = 0
        self.error_page_done = False
        self.err_status: int | None = None  # set by error_page: the final status (0: keep)
        self.status = 0
        self.response: Response | None = None
        self.body_bytes_sent = 0
        self.bytes_sent = 0
        self.request_length = 0
        self.valid = True
        self.var_cache: dict[str, str | None] | None = None
        self.conn_requests = 1  # $connection_requests: this request's number on its connection
        self.pipeline = False  # $pipe: read with (behind) an earlier request still in progress
        self.log_memo: Any = None  # the express lane's: what makes its log lines repeat

    @classmethod
    def lane(cls, conn: Any, start: float, method: str, version: int, target: str,
             request_line: str, request_length: int, header_list: Any, headers: dict[str, str],
             host: str, server: Server, keepalive: bool, uri: str, args: str | None,
             location: Location, conf: LocConf, conn_requests: int) -> Request:
        """A request of the proxy's express lane (l7/express.py), its fields set at once: what
        the parser and the header checks would have set, the rest as __init__ leaves them
        (tests/unit/l7/test_request.py compares the two). header_list and headers are the
        remembered head's, shared (nothing changes a request's headers once it is read)."""
        self = object.__new__(cls)
        self.conn = conn
        self.start = start
        self.method = method
        self.version = version
        self.target = target
        self.request_line = request_line
        self.uri = uri
        self.args = args
        self.header_list = header_list
        self.headers = headers
        self.host = host
        self.keepalive = keepalive
        self.content_length = None
        self.chunked = False
        self.expect_continue = False
        self.send_continue = False
        self.body_expected = False
        self.body_received = 0
        self.body_complete = False
        self.body_chunks = []
        self.on_body = None
        self.on_body_done = None
        self.proxy = None
        self.server = server
        self.server_captures = None
        self.location = location
        self.conf = conf
        self.captures = ()
        self.named_captures = {}
        self.internal = False
        self.uri_changed = False
        self.valid_location = True
        self.uri_changes = 0
        self.error_page_done = False
        self.err_status = None
        self.status = 0
        self.response = None
        self.body_bytes_sent = 0
        self.bytes_sent = 0
        self.request_length = request_length
        self.valid = True
        self.var_cache = None
        self.conn_requests = conn_requests
        self.pipeline = False
        self.log_memo = None
        return self

    @property
    def protocol(self) -> str:
        if self.version == 9:
            return ""  # ($server_protocol of an HTTP/0.9 request, which has none)
        return "HTTP/1.1" if self.version == 11 else "HTTP/1.0"

    @property
    def is_head(self) -> bool:
        return self.method == "HEAD"

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def test_expect(self) -> None:
        """ngx_http_test_expect, called where nginx reads or discards the body: the first
        time, an "Expect: 100-continue" is answered with "100 Continue"."""
        if self.expect_continue:
            self.expect_continue = False
            self.send_continue = True
