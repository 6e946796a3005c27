"""The client side of the nginx role: one asyncio.Protocol per connection, httptools parsing.

No Task per request: parser callbacks build the Request; once the data that came with its
headers is parsed (so a bad body already read fails the request, as in nginx), the phases run
synchronously (l7/handler.py) and the response is written, with file bodies streamed under flow
control (sendfile when `sendfile on` and the transport's buffer is empty, pread chunks
otherwise). Keep-alive and pipelined requests are answered in order: while one request is
answered asynchronously, later ones wait in a queue and reading pauses; a request that cannot
be parsed is answered after those before it, then the connection closes.

llhttp is stricter than nginx's parser. When it refuses data that starts a request, that data
is parsed again line by line (_feed_slow) the way nginx would take it: unknown methods, raw
bytes above 0x7f in the target, bare LF, control characters in header values, HTTP/1.x > 1.1,
header lines nginx ignores. Header buffers are simulated (client_header_buffer_size, then
large_client_header_buffers) so 414 and 494 come at nginx's boundaries.

Limits and faults are answered as nginx answers them: 414 for a request line longer than a
large header buffer, 400 "Request Header Or Cookie Too Large" for a header line or a header
block that does not fit, 413 over client_max_body_size, 400 and close for request smuggling
shapes (Content-Length with Transfer-Encoding, duplicate Content-Length or Host, bad chunk
sizes), 505 for HTTP/2+ on this port; client_header_timeout closes the connection without an
answer (nginx logs 408 and sends nothing), keepalive_timeout closes idle connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import httptools

from halb.config.model import LocConf
from halb.l7 import cork, express, handler
from halb.l7.http_head import RequestHeadChecks
from halb.l7.http_lenient import LenientParsing, Reparse, make_parser
from halb.l7.http_lenient import ParseAbort as _Abort
from halb.l7.http_write import STATES, ResponseWriter
from halb.l7.log import request_context
from halb.l7.request import Request
from halb.l7.response import DATES, Response
from halb.l7.uri import normalize, split_target

if TYPE_CHECKING:
    from halb.l7.server import HttpServer


# Headers nginx refuses to see twice (400).
UNIQUE_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "if-modified-since",
                            "if-unmodified-since", "content-range", "if-range"})

# Connection states for the timer (defined with the writer, which moves them too).
IDLE, READING_HEADER, READING_BODY, WRITING, LINGERING, DISCARDING = STATES


class HttpConnection(LenientParsing, RequestHeadChecks, ResponseWriter, asyncio.Protocol):
    __slots__ = (
        "body_filter",
        "body_left",
        "chunk_quiet",
        "closing",
        "conf",
        "corked",
        "cur",
        "deadline",
        "draining",
        "escaping",
        "file_fd",
        "file_left",
        "file_offset",
        "hb_busy",
        "hb_cap",
        "hb_pos",
        "header_bytes",
        "http09",
        "idle_since",
        "lane",
        "last_header_len",
        "last_host",
        "last_match",
        "line_part",
        "line_seen",
        "loop",
        "method",
        "number",
        "on_writable",
        "parser",
        "paused_writing",
        "pending",
        "pipelined",
        "proxy_timer",
        "queue",
        "remote_addr",
        "remote_port",
        "requests",
        "responding",
        "server",
        "server_addr",
        "server_port",
        "slow",
        "sock_fd",
        "started",
        "state",
        "stream_chunked",
        "stream_pending",
        "table",
        "timer",
        "timer_at",
        "timer_off",
        "transport",
        "tunnel",
        "url_len",
        "url_parts",
        "use_sendfile",
    )

    # the request phases (l7/tls_accept.FeatureConnection adds realip and 497 before them)
    phases = staticmethod(handler.handle)
    express = True  # the proxy's express lane may answer (not with realip, TLS, PROXY)

    def __init__(self, server: HttpServer, number: int) -> None:
        self.server = server
        self.number = number
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = make_parser(self)
        self.cur: Request | None = None  # the request being parsed
        self.responding: Request | None = None  # the request being answered
        self.queue: deque[Request] = deque()  # parsed, waiting for their turn
        self.requests = 0
        self.started = time.monotonic()
        self.state = READING_HEADER
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0  # when the timer fires
        self.timer_off = False  # the timer finds nothing to do (wait_upstream)
        self.closing = False
        self.corked: bytes | None = None  # an answer held to the end of the iteration
        self.draining = False
        self.paused_writing = False
        self.pipelined = False
        self.url_parts: list[bytes] = []
        self.escaping = False  # feeding a request line whose bytes above 0x7f were %-escaped
        self.slow = False  # parsing line by line the way nginx reads (see _feed_slow)
        self.line_seen = False  # slow parsing: the request line has been fed
        self.http09 = False  # the request line being ended had no version (HTTP/0.9)
        self.line_part: tuple[Request, int, bytes] | None = None  # an open head's open line
        self.chunk_quiet: tuple[Request, int, int] | None = None  # a chunked body's framing
        self.method: bytes | None = None  # slow parsing: a method llhttp does not know
        self.pending: tuple[Request | None, int] | None = None  # an error to answer last
        self.header_bytes = 0
        self.url_len = 0
        # nginx's header buffers, simulated: bytes used in the current one, its size, and how
        # many large ones are busy (-1: the request line is not accounted yet)
        self.hb_pos = 0
        self.hb_cap = 0
        self.hb_busy = -1
        self.file_fd: int | None = None
        self.file_offset = 0
        self.file_left = 0
        self.use_sendfile = False
        self.stream_chunked = False  # a streamed body is being chunk-encoded
        self.body_filter: Any = None  # the output body filter of the response (l7/filters/)
        self.stream_pending = b""  # a streamed response's header, not written yet
        self.tunnel: Any = None  # an upgraded connection's upstream side (proxy_pass)
        self.proxy_timer: Any = None  # proxy_pass's timer, one for all requests (l7/proxy.py)
        self.on_writable: Callable[[], None] | None = None  # a streamed body waits for the client
        self.sock_fd = -1
        self.idle_since = self.loop.time()
        self.last_host: tuple[str | None, str | None] = (None, None)  # Host -> validated
        self.lane: tuple[Any, ...] = (None,)  # the express lane's last head and its route
        self.last_match: tuple[str | None, Any] = (None, None)  # host -> ServerMatch
        self.remote_addr = ""
        self.remote_port = 0
        self.server_addr = ""
        self.server_port = 0

    # -- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  (uvloop's is not a subclass)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self.remote_addr, self.remote_port = peer[0], peer[1]
        else:
            self.remote_addr = "unix:"
        if isinstance(local, tuple):
            self.server_addr, self.server_port = local[0], local[1]
            self.table = self.server.listen_table.lookup(self.server_addr, self.server_port)
        else:
            self.server_addr = f"unix:{local}"
            self.table = self.server.listen_table.lookup(self.server_addr, 0)
        self.conf: LocConf = self.table.default.conf
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                self.sock_fd = sock.fileno()
        transport.set_write_buffer_limits(high=64 * 1024, low=0)
        if not self.server.register(self):
            self.closing = True
            transport.abort()
            return
        self.arm(READING_HEADER, self.conf.client_header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.corked = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._close_file()
        r = self.responding
        if r is not None and r.proxy is not None:
            r.proxy.client_gone()
        if r is not None and r.status and r.response is not None:
            # the client went away mid-response: log what was sent (nginx logs it too)
            self.responding = None
            self.server.access_log(r)
        elif r is not None and not r.status:
            r.status = 499
            self.responding = None
            self.server.access_log(r)
        pt = self.proxy_timer
        if pt is not None and pt.owner is None:  # (a request going on without us keeps it)
            pt.close()
        self.server.unregister(self)

    def eof_received(self) -> bool | None:
        if self.corked is not None:
            cork.release(self)
        if self.tunnel is not None:
            self.tunnel.tunnel_eof()
            return True
        r = self.responding
        if r is not None and r.proxy is not None and r.proxy.client_eof():
            return False  # nginx closes a proxied request whose client went away (499)
        # close now if nothing is being answered; otherwise keep the write side open
        return not (self.state == LINGERING or self.responding is None)

    def log_error(self, level: str, message: str, r: Request) -> None:
        """An error log line about request r, with nginx's client/server/request context."""
        log = self.server.error_log_for(r.conf)  # error_log of the request's location
        if log.enabled(level):
            log.log(level, message, self.number, request_context(r))

    # -- timers -------------------------------------------------------------------------------

    def arm(self, state: int, timeout: float) -> None:
        self.state = state
        self.deadline = deadline = self.loop.time() + timeout
        if self.timer is None:
            self.timer = self.loop.call_at(deadline, self._on_timer)
            self.timer_at = deadline
            self.timer_off = False
        elif self.timer_off:
            self._timer_on()

    def _timer_on(self) -> None:
        """The timer runs again after wait_upstream: as a new one would, it fires at the
        deadline (the handle kept from before is moved only when it would fire later)."""
        if self.timer is None or self.timer_at > self.deadline:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(self.deadline, self._on_timer)
            self.timer_at = self.deadline
        self.timer_off = False

    def wait_upstream(self) -> None:
        """A proxied request waits for its upstream: no client timer runs (send_timeout is
        for writing; proxy_*_timeout bound the wait). The handle is kept, switched off (one
        timer per connection, not one per request)."""
        self.state = WRITING
        if self.timer is not None:
            self.timer_off = True

    def _on_timer(self) -> None:
        self.timer = None
        if self.timer_off:  # switched off: as if it had been cancelled
            self.timer_off = False
            return
        if self.closing:
            return
        now = self.loop.time()
        if now < self.deadline:
            self.timer = self.loop.call_at(self.deadline, self._on_timer)
            self.timer_at = self.deadline
            return
        if self.state == READING_HEADER and self.cur is not None:
            # nginx: "client timed out" while reading the header; 408 is logged, not sent
            r = self.cur
            r.status = 408
            r.request_line = r.request_line or ""
            self.server.error_log.log("info", "client timed out (110: Connection timed out) "
                                      "while reading client request headers", self.number,
                                      f", client: {self.remote_addr}")
            self.server.access_log(r)
        elif self.state == READING_BODY and self.responding is not None:
            self.responding.status = self.responding.status or 408
        elif self.state == WRITING and self.on_writable is not None and \
                not self.paused_writing:
            return  # a streamed (proxied) body waits for its upstream, not for the client
        self._force_close()

    # -- parsing ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.corked is not None:  # (the answer held by l7/cork.py goes first)
            cork.release(self)
        if self.responding is None and self.cur is None and self.express and not self.slow \
                and self.pending is None and not self.queue and not self.closing and \
                self.state != LINGERING and self.tunnel is None and express.take(self, data):
            return  # (the common proxied GET: l7/express.py)
        if self.tunnel is not None:  # upgraded (101): the bytes are the upstream's
            self.tunnel.tunnel_data(data)
            return
        waiting = self.responding
        if self.closing or self.pending is not None:
            return  # after a parse error nothing more is read as HTTP
        if self.state == LINGERING:
            return  # lingering close: read and drop until the client stops
        queued, requests = len(self.queue), self.requests
        retry = self.cur is None and not self.slow  # a message starts here
        after_upgrade: bytes | None = None
        try:
            try:
                if self.slow:
                    self._feed_slow(data)
                else:
                    self.parser.feed_data(data)
                cur = self.cur
                if cur is not None:
                    if not cur.request_line:
                        self._head_open(data)  # (too long a line; HTTP/0.9: no version)
                    elif cur.chunked:
                        self._chunked_open(data)  # (framing without data, unbounded)
            except httptools.HttpParserCallbackError as e:
                if not (retry and isinstance(e.__context__, Reparse)):
                    raise
            except httptools.HttpParserError:
                if not retry:
                    raise
            else:
                retry = False
            if retry:  # (outside the except clause: an _Abort keeps its own context)
                # llhttp is stricter than nginx (methods it does not know, bytes above 0x7f
                # in the target, bare LF, control characters in values, HTTP/1.2): parse this
                # data again, line by line, as nginx reads it (the requests it completed were
                # only queued, nothing has been answered)
                while len(self.queue) > queued:
                    self.queue.pop()
                self.requests = requests
                self.cur = None
                self.parser = make_parser(self, lenient=True)
                self.slow = True
                self._feed_slow(data)
        except httptools.HttpParserUpgrade as e:
            # nginx's request parser knows nothing of Upgrade: the request is a plain one
            # (a location that proxies switches protocols on the upstream's 101), and what
            # follows it is read as the next request
            offset = e.args[0] if e.args and isinstance(e.args[0], int) else len(data)
            after_upgrade = b"" if self.slow else data[offset:]
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _Abort):
                self._abort(cause.status, cause.log)
            else:
                self._abort(500, f"internal error while parsing: {cause!r}", "alert")
        except httptools.HttpParserError as e:
            self._abort(400, f"client sent invalid request: {e}", "info")
        except _Abort as e:
            self._abort(e.status, e.log)
        if after_upgrade is not None:
            self.parser = make_parser(self, lenient=self.slow)
            if after_upgrade:
                self.data_received(after_upgrade)
                return
        if self.slow and self.cur is None and self.pending is None:
            self.slow = False  # back to the strict parser between requests
            self.parser = make_parser(self)
        self._kick()
        r = self.responding
        if r is not None and r is waiting and r.proxy is not None and self.cur is not r and \
                self.transport is not None:
            # a proxied request keeps reading so that the client's FIN is noticed (nginx's
            # check for a broken connection); what comes instead waits after one read
            self.transport.pause_reading()

    def _kick(self) -> None:
        """Answer what was parsed, in order (requests start once their data is parsed, as
        nginx handles a request after reading what the client sent with it)."""
        if self.responding is None and not self.closing and self.state != LINGERING:
            if self.queue:
                self._start(self.queue.popleft())
            elif self.pending is not None:
                self._answer_pending()

    def on_message_begin(self) -> None:
        r = Request(self, time.monotonic())
        self.cur = r
        self.url_parts = []
        self.url_len = 0
        self.header_bytes = 0
        self.hb_busy = -1
        self.line_seen = False
        if self.state == IDLE:
            self.arm(READING_HEADER, self.conf.client_header_timeout)
        if self.responding is not None or self.queue:
            self.pipelined = True
            r.pipeline = True
        r.conn_requests = self.requests + 1

    def on_url(self, url: bytes) -> None:
        if self.escaping:
            url = unquote_to_bytes(url)
        self.url_parts.append(url)
        self.url_len += len(url)
        # a request line that cannot fit in a large header buffer whatever follows
        if self.url_len + 2 > self.conf.large_client_header_buffers[1]:
            raise _Abort(414, "client sent too long URI")

    def on_header(self, name: bytes, value: bytes) -> None:
        r = self.cur
        assert r is not None
        if r.request_line:  # a chunked body's trailer: nginx skips it, no limit, no headers
            return
        if self.hb_busy < 0:
            self._request_line_fits()
        size = len(name) + len(value) + 4  # "Name: value CRLF"
        if size <= self.hb_cap - self.hb_pos:  # _fits, inlined for the common case
            self.hb_pos += size
        elif not self._fits(size):
            if size > self.conf.large_client_header_buffers[1]:
                raise _Abort(494, 'client sent too long header line: "'
                                  f'{name[:32].decode("latin-1")}..."')
            raise _Abort(494, "client sent too large request")
        self.header_bytes += size
        known = _NAMES.get(name)
        if known is None:
            known = _header_name(name)
        key, low, plain_ok, underscore_ok = known
        if not plain_ok and not (underscore_ok and self.conf.underscores_in_headers) \
                and self.conf.ignore_invalid_headers:
            return
        val = value.decode("latin-1")
        if val[:1] in (" ", "\t") or val[-1:] in (" ", "\t"):
            val = val.strip(" \t")
        r.header_list.append((key, val))
        if low in r.headers:
            if low in UNIQUE_HEADERS:  # ngx_http_process_unique_header_line
                raise _Abort(400, f'client sent duplicate header line: "{key}: {val}", '
                                  f'previous value: "{key}: {r.headers[low]}"')
            return  # the first value wins; $http_cookie and friends read header_list
        r.headers[low] = val

    def on_headers_complete(self) -> None:
        r = self.cur
        assert r is not None
        if self.hb_busy < 0:
            self._request_line_fits()
        if self.hb_cap - self.hb_pos >= 2:  # the empty line that ends the header (_fits)
            self.hb_pos += 2
        elif not self._fits(2):
            raise _Abort(494, "client sent too large request")
        p = self.parser
        version = p.get_http_version()
        major, _, minor = version.partition(".")
        # nginx: 1.0, or 1.1 and later 1.x as 1.1; 0.x is invalid and 2.0 and up are 505
        r.version = 10 if version == "1.0" else 11 if major == "1" else \
            9 if major == "0" else 20
        if self.method is not None:
            r.method = self.method.decode("latin-1")
            self.method = None
        else:
            r.method = p.get_method().decode("latin-1")
        r.target = b"".join(self.url_parts).decode("utf-8", "surrogateescape")
        r.request_line = f"{r.method} {r.target} HTTP/{version}"
        # (bytes: a target with UTF-8 is longer on the wire than in characters)
        r.request_length = self.header_bytes + len(r.request_line) + 4 + \
            self.url_len - len(r.target)
        r.keepalive = bool(p.should_keep_alive())
        self.requests += 1
        if r.version == 20:
            raise _Abort(505, "client sent invalid HTTP version")
        if r.version == 9:
            self._http09_head(r)
        elif len(minor) > 3:
            raise _Abort(400, "client sent invalid request")
        status, message = self._process_header(r)
        if status:
            raise _Abort(status, message)
        r.body_expected = r.chunked or (r.content_length or 0) > 0
        if r.body_expected:
            self.arm(READING_BODY, self.conf.client_body_timeout)
        self.queue.append(r)  # started by _kick once this data is parsed

    def on_body(self, body: bytes) -> None:
        r = self.cur
        if r is None:
            return
        r.body_received += len(body)
        r.request_length += len(body)
        if r.on_body is not None:
            r.on_body(body)
        elif r.response is None and self.responding is not r:
            r.body_chunks.append(body)  # not started yet: its handler may want the body
        self.deadline = self.loop.time() + (self.conf.lingering_timeout
                                            if self.state == DISCARDING
                                            else self.conf.client_body_timeout)
        # a chunked body is held to client_max_body_size only while a handler reads it (an
        # answered request's body is discarded, and nginx does not count what it discards)
        if r.chunked and r.conf is not None and self.responding is r and r.response is None:
            limit = r.conf.client_max_body_size
            if limit and r.body_received > limit and r.status == 0:
                raise _Abort(413, "client intended to send too large chunked body: "
                                  f"{r.body_received} bytes")

    def on_message_complete(self) -> None:
        r = self.cur
        self.cur = None
        if r is None:
            return
        r.body_expected = False
        r.body_complete = True
        if r.on_body_done is not None:
            r.on_body_done()
        if self.responding is r and r.response is None and self.transport is not None \
                and r.proxy is None:  # (a proxied request keeps reading: a FIN aborts it)
            self.transport.pause_reading()  # answered later: read no further request yet
        if self.state == DISCARDING:
            self._force_close()  # the body is read: the close that was due
            return
        if self.closing or self.state == LINGERING:
            return
        if self.responding is r:
            if self.state == READING_BODY:
                if r.proxy is not None and r.response is None:
                    self.wait_upstream()
                else:
                    self.arm(WRITING, self.conf.send_timeout)
        elif self.responding is None and not self.queue:
            self._idle()

    # -- answering ----------------------------------------------------------------------------

    def _start(self, r: Request) -> None:
        self.responding = r
        if self.state != READING_BODY:
            self.arm(WRITING, self.conf.send_timeout)
        try:
            result = self.phases(r)
        except Exception as e:  # a bug must cost one request, never the worker
            self.server.error_log.log("alert", f"request failed: {e!r}", self.number,
                                      request_context(r))
            r.keepalive = False
            result = handler.special(r, 500)
        if result is handler.PENDING:
            if self.cur is not r:
                if r.proxy is not None:
                    self.wait_upstream()
                elif self.transport is not None:
                    self.transport.pause_reading()
            return
        if result is handler.CLOSE:
            r.status = 444
            self.server.access_log(r)
            self.responding = None
            self._force_close()
            return
        assert isinstance(result, Response)
        self.send(r, result)

    def finish_request(self, r: Request, result: object,
                       amend: Callable[[Response], None] | None = None) -> None:
        """The final answer of an asynchronous content handler (proxy_pass); `amend` may
        adjust the response the phases produce (X-Accel-Redirect keeps some headers)."""
        if self.responding is not r or self.closing:
            return
        try:
            final = handler.resume(r, result)
            if amend is not None and isinstance(final, Response):
                amend(final)
        except Exception as e:
            self.server.error_log.log("alert", f"request failed: {e!r}", self.number,
                                      request_context(r))
            r.keepalive = False
            final = handler.special(r, 500)
        if final is handler.PENDING:
            return
        if final is handler.CLOSE:
            r.status = 444
            self.server.access_log(r)
            self.responding = None
            self._force_close()
            return
        assert isinstance(final, Response)
        self.send(r, final)

    def send_continue(self, r: Request) -> None:
        """nginx reads a body it needs after answering "Expect: 100-continue"."""
        r.test_expect()
        if r.send_continue and self.transport is not None and not self.closing:
            r.send_continue = False
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _abort(self, status: int, log: str | None, level: str = "info") -> None:
        """A request that cannot be parsed further: it is answered after the requests parsed
        before it (nginx reads a pipelined request only after answering the previous one),
        then the connection closes. Nothing more is read."""
        parsing = self.cur is not None
        r = self.cur or Request(self, time.monotonic())
        self.cur = None
        r.keepalive = False
        if not r.request_line and self.method is None:
            with contextlib.suppress(Exception):  # a HEAD gets its error page without body
                r.method = self.parser.get_method().decode("latin-1")
        if not r.request_line and parsing and self.header_bytes and self.url_parts:
            # a header line went wrong: nginx has the request line (its log and error lines
            # show it, and $request_uri / $args)
            with contextlib.suppress(Exception):
                r.target = b"".join(self.url_parts).decode("utf-8", "surrogateescape")
                version = self.parser.get_http_version()
                r.request_line = f"{r.method} {r.target} HTTP/{version}"
                r.args = r.target.partition("?")[2] or None
                path = split_target(r.target)[0]  # ($uri: nginx has processed the line)
                r.uri = normalize(path, self.conf.merge_slashes) if path[:1] == "/" else path
                r.request_length = self.header_bytes + len(r.request_line) + 2 + \
                    self.url_len - len(r.target)
        if r.server is None:
            r.server = self.table.default
            r.conf = r.server.conf
        if log:
            self.server.error_log.log(level, log, self.number, request_context(r))
        if r in self.queue:
            self.queue.remove(r)  # its body is bad: the error is its answer
        elif r.response is not None or r is self.responding:
            # answered before its body went wrong: nginx finalizes it with the error and,
            # the header being sent, closes the connection
            self.pending = (None, 0)
            if self.responding is None:
                self._force_close()
            return
        self.pending = (r, status)

    def _answer_pending(self) -> None:
        assert self.pending is not None
        r, status = self.pending
        if r is None:
            self._force_close()
            return
        self.responding = r
        self.send(r, handler.special(r, status), lingering=True)

    def _done(self, r: Request, lingering: bool) -> None:
        """The response is written: log, then the next request, idle, or close."""
        self.responding = None
        DATES.update(time.time())
        self.server.access_log(r)
        t = self.transport
        if t is None or self.closing:
            return
        if not r.keepalive or self.draining:
            self._queue_clear()
            if self.cur is r and not lingering and self.pending is None:
                # its body is still coming: nginx reads and discards it, then closes
                self._discard()
            # the client may still be sending (a body we did not read, a pipelined request):
            # nginx's lingering close keeps reading so that our answer is not lost to a reset
            elif lingering or self.cur is not None:
                self._linger()
            else:
                self.closing = True
                t.close()
            return
        if self.queue:
            nxt = self.queue.popleft()
            t.resume_reading()
            self._start(nxt)
            return
        if self.pending is not None:
            self._answer_pending()
            return
        t.resume_reading()
        cur = self.cur
        if cur is r:  # answered before its body arrived: keep reading it
            self.arm(READING_BODY, self.conf.client_body_timeout)
        elif cur is not None:  # the next request is already being read
            self.arm(READING_HEADER, self.conf.client_header_timeout)
        else:
            self._idle()

    def _idle(self) -> None:
        """Between requests: keepalive_timeout runs (draining: close soon)."""
        self.idle_since = self.loop.time()
        if self.draining:
            self._close_idle_later()
        else:
            self.arm(IDLE, self.conf.keepalive_timeout)

    def _queue_clear(self) -> None:
        self.queue.clear()

    def _discard(self) -> None:
        """Read the rest of the answered request's body (lingering_timeout between reads),
        then close: nginx sends no FIN while it discards a body."""
        t = self.transport
        assert t is not None
        self.state = DISCARDING
        t.resume_reading()
        self.deadline = self.loop.time() + self.conf.lingering_timeout
        if self.timer is None or self.timer_off:
            self._timer_on()

    def _linger(self) -> None:
        """nginx's lingering close: stop writing, read and drop what the client still sends."""
        t = self.transport
        assert t is not None
        self.state = LINGERING
        with contextlib.suppress(OSError, RuntimeError):
            t.write_eof()
        t.resume_reading()
        self.deadline = self.loop.time() + self.conf.lingering_timeout
        if self.timer is None or self.timer_off:
            self._timer_on()

    def _force_close(self) -> None:
        if self.corked is not None:
            cork.release(self)
        self.closing = True
        self._close_file()
        if self.transport is not None:
            self.transport.close()

    # -- graceful shutdown --------------------------------------------------------------------

    GRACE = 1.0  # an idle keep-alive connection is closed once it has been idle this long

    def shutdown(self) -> None:
        """Stop keep-alive: the current answer is the last; idle connections close."""
        self.draining = True
        if self.responding is None and self.cur is None and not self.queue:
            self._close_idle_later()

    def _close_idle_later(self) -> None:
        idle = self.loop.time() - self.idle_since
        if idle >= self.GRACE:
            self._force_close()
        else:
            if self.timer is not None:  # (arm only moves a later deadline: keepalive_timeout)
                self.timer.cancel()
                self.timer = None
            self.arm(IDLE, self.GRACE - idle)


def _valid_header_name(low: str, underscores: bool) -> bool:
    for ch in low:
        if ch == "_":
            if not underscores:
                return False
            continue
        if not ("a" <= ch <= "z" or "0" <= ch <= "9" or ch == "-"):
            return False
    return True


# Header names repeat from request to request: their decoded forms and validity are cached.
_NAMES: dict[bytes, tuple[str, str, bool, bool]] = {}


def _header_name(name: bytes) -> tuple[str, str, bool, bool]:
    key = name.decode("latin-1")
    low = key.lower()
    entry = (key, low, _valid_header_name(low, False), _valid_header_name(low, True))
    if len(_NAMES) < 4096:
        _NAMES[name] = entry
    return entry
