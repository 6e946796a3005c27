"""The client side of the nginx role: one asyncio.Protocol per connection, httptools parsing.

No Task per request: parser callbacks build the Request, the phases run synchronously at the
end of the headers (l7/handler.py), and the response is written from the callbacks, with file
bodies streamed under flow control (sendfile when `sendfile on` and the transport's buffer is
empty, pread chunks otherwise). Keep-alive and pipelined requests are answered in order: while
one request is answered asynchronously, later ones wait in a queue and reading pauses.

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
import os
import re
import time
from collections import deque
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

import httptools

from halb.config.model import LocConf
from halb.l7 import handler
from halb.l7.log import request_context
from halb.l7.request import Request
from halb.l7.response import DATES, Response, render_headers
from halb.l7.routing import validate_host
from halb.l7.uri import BadURI, normalize, split_target

if TYPE_CHECKING:
    from halb.l7.server import HttpServer

SMALL_FILE = 64 * 1024  # read with the headers in one write
CHUNK = 256 * 1024


class _Abort(Exception):
    """Raised from a parser callback to stop parsing with an HTTP status."""

    def __init__(self, status: int, log: str | None = None) -> None:
        self.status = status
        self.log = log


# Headers nginx refuses to see twice (400).
UNIQUE_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "if-modified-since",
                            "if-unmodified-since", "content-range", "if-range"})

# Connection states for the timer.
IDLE, READING_HEADER, READING_BODY, WRITING, LINGERING = range(5)


class HttpConnection(asyncio.Protocol):
    __slots__ = (
        "body_left", "closing", "conf", "cur", "deadline", "draining", "escaping", "file_fd",
        "file_left", "file_offset", "header_bytes", "header_count", "idle_since",
        "last_header_len", "loop", "number", "parser", "paused_writing", "pipelined", "queue",
        "remote_addr", "remote_port", "requests", "responding", "server", "server_addr", "server_port",
        "sock_fd", "started", "state", "table", "timer", "transport", "url_parts", "use_sendfile",
    )

    def __init__(self, server: HttpServer, number: int) -> None:
        self.server = server
        self.number = number
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.cur: Request | None = None  # the request being parsed
        self.responding: Request | None = None  # the request being answered
        self.queue: deque[Request] = deque()  # parsed, waiting for their turn
        self.requests = 0
        self.started = time.monotonic()
        self.state = READING_HEADER
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.closing = False
        self.draining = False
        self.paused_writing = False
        self.pipelined = False
        self.url_parts: list[bytes] = []
        self.escaping = False  # feeding a request line whose bytes above 0x7f were %-escaped
        self.header_bytes = 0
        self.header_count = 0
        self.file_fd: int | None = None
        self.file_offset = 0
        self.file_left = 0
        self.use_sendfile = False
        self.sock_fd = -1
        self.idle_since = self.loop.time()
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
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._close_file()
        r = self.responding
        if r is not None and r.status and r.response is not None:
            # the client went away mid-response: log what was sent (nginx logs it too)
            self.responding = None
            self.server.access_log(r)
        elif r is not None and not r.status:
            r.status = 499
            self.responding = None
            self.server.access_log(r)
        self.server.unregister(self)

    def eof_received(self) -> bool | None:
        # close now if nothing is being answered; otherwise keep the write side open
        return not (self.state == LINGERING or self.responding is None)

    def log_error(self, level: str, message: str, r: Request) -> None:
        """An error log line about request r, with nginx's client/server/request context."""
        log = self.server.error_log
        if log.enabled(level):
            log.log(level, message, self.number, request_context(r))

    # -- timers -------------------------------------------------------------------------------

    def arm(self, state: int, timeout: float) -> None:
        self.state = state
        self.deadline = self.loop.time() + timeout
        if self.timer is None:
            self.timer = self.loop.call_at(self.deadline, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.closing:
            return
        now = self.loop.time()
        if now < self.deadline:
            self.timer = self.loop.call_at(self.deadline, self._on_timer)
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
        self._force_close()

    # -- parsing ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.state == LINGERING:
            return  # lingering close: read and drop until the client stops
        try:
            if data.isascii():
                self.parser.feed_data(data)
            else:
                self._feed_non_ascii(data)
        except httptools.HttpParserUpgrade:
            # an Upgrade request to a location that does not proxy: answered as a plain
            # request, then the connection closes (nothing after the headers is HTTP/1)
            if self.cur is not None:
                self.cur.keepalive = False
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _Abort):
                self._abort(cause.status, cause.log)
            else:
                self._abort(500, f"internal error while parsing: {cause!r}", "alert")
        except httptools.HttpParserError as e:
            self._abort(400, f"client sent invalid request: {e}", "info")

    def _feed_non_ascii(self, data: bytes) -> None:
        """llhttp refuses bytes above 0x7f in a request-target; nginx takes them as they are.
        Such a request line is fed with "%" and those bytes %-escaped (on_url undoes it, so
        $request_uri keeps the bytes as sent); header and body bytes go through unchanged."""
        feed = self.parser.feed_data
        i, n = 0, len(data)
        while i < n:
            r = self.cur
            if r is not None and r.request_line:  # in the body: as much as belongs to it
                end = n
                if r.content_length is not None and not r.chunked:
                    end = min(n, i + max(1, r.content_length - r.body_received))
                feed(data[i:end])
                i = end
                continue
            nl = data.find(b"\n", i)
            end = n if nl < 0 else nl + 1
            line = data[i:end]
            i = end
            if not line.isascii() and (r is None or (
                    self.header_bytes == 0 and _rest_of_request_line(line))):
                self.escaping = True
                try:
                    feed(_HIGH_BYTES.sub(_escape_byte, line))
                finally:
                    self.escaping = False
                continue
            feed(line)

    def on_message_begin(self) -> None:
        r = Request(self, time.monotonic())
        self.cur = r
        self.url_parts = []
        self.header_bytes = 0
        self.header_count = 0
        if self.state == IDLE:
            self.arm(READING_HEADER, self.conf.client_header_timeout)
        if self.responding is not None or self.queue:
            self.pipelined = True

    def on_url(self, url: bytes) -> None:
        if self.escaping:
            url = unquote_to_bytes(url)
        self.url_parts.append(url)
        n = sum(len(p) for p in self.url_parts)
        if n + 16 > self.conf.large_client_header_buffers[1]:
            raise _Abort(414, "client sent too long URI")

    def on_header(self, name: bytes, value: bytes) -> None:
        r = self.cur
        assert r is not None
        size = len(name) + len(value) + 4
        num, bufsize = self.conf.large_client_header_buffers
        if size > bufsize:
            raise _Abort(494, f'client sent too long header line: "{name[:32].decode("latin-1")}'
                              '..."')
        self.header_bytes += size
        if self.header_bytes > num * bufsize:
            raise _Abort(494, "client sent too large request")
        key = name.decode("latin-1")
        val = value.decode("latin-1").strip(" \t")
        low = key.lower()
        if not _valid_header_name(low, self.conf.underscores_in_headers) \
                and self.conf.ignore_invalid_headers:
            return
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
        p = self.parser
        version = p.get_http_version()
        r.version = 11 if version == "1.1" else 10 if version == "1.0" else 20
        r.method = p.get_method().decode("latin-1")
        r.target = b"".join(self.url_parts).decode("utf-8", "surrogateescape")
        r.request_line = f"{r.method} {r.target} HTTP/{version}"
        r.request_length = self.header_bytes + len(r.request_line) + 4
        r.keepalive = bool(p.should_keep_alive())
        self.requests += 1
        if r.version == 20:
            raise _Abort(505, "client sent invalid HTTP version")
        status, message = self._process_header(r)
        if status:
            raise _Abort(status, message)
        r.body_expected = r.chunked or (r.content_length or 0) > 0
        if r.body_expected:
            self.arm(READING_BODY, self.conf.client_body_timeout)
        if self.responding is None and not self.queue:
            self._start(r)
        else:
            self.queue.append(r)

    def _process_header(self, r: Request) -> tuple[int, str | None]:
        """ngx_http_process_request_header and the URI checks: (0, None), or a status to
        answer with the error log message nginx writes."""
        target = r.target
        host = None
        if target.startswith("/"):
            path, args = split_target(target)
        elif target[:7].lower() == "http://" or target[:8].lower() == "https://":
            rest = target.split("://", 1)[1]
            slash = rest.find("/")
            hostport, path_q = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
            host = validate_host(hostport)
            if host is None:
                return self._bad(r, "client sent invalid host in request line")
            path, args = split_target(path_q)
        elif target == "*" and r.method == "OPTIONS":
            path, args = "*", None
        else:
            return self._bad(r, "client sent invalid request")
        header_host = r.headers.get("host")
        if host is None and header_host is not None:
            host = validate_host(header_host)
            if host is None:
                return self._bad(r, "client sent invalid host header")
        if host is None and r.version == 11:
            return self._bad(r, 'client sent HTTP/1.1 request without "Host" header')
        r.host = host or ""
        match = self.table.find(r.host)
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

    def on_body(self, body: bytes) -> None:
        r = self.cur
        if r is None:
            return
        r.body_received += len(body)
        r.request_length += len(body)
        self.deadline = self.loop.time() + self.conf.client_body_timeout
        if r.chunked and r.conf is not None:
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
        if self.closing or self.state == LINGERING:
            return
        if self.responding is r:
            if self.state == READING_BODY:
                self.arm(WRITING, self.conf.send_timeout)
        elif self.responding is None and not self.queue:
            self._idle()

    # -- answering ----------------------------------------------------------------------------

    def _start(self, r: Request) -> None:
        self.responding = r
        if self.state != READING_BODY:
            self.arm(WRITING, self.conf.send_timeout)
        try:
            result = handler.handle(r)
        except Exception as e:  # a bug must cost one request, never the worker
            self.server.error_log.log("alert", f"request failed: {e!r}", self.number,
                                      request_context(r))
            r.keepalive = False
            result = handler.special(r, 500)
        if result is handler.PENDING:
            if self.transport is not None and self.cur is not r:
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

    def _abort(self, status: int, log: str | None, level: str = "info") -> None:
        """A request that cannot be parsed further: answer it (if possible) and close."""
        r = self.cur or Request(self, time.monotonic())
        self.cur = None
        r.keepalive = False
        if r.server is None:
            r.server = self.table.default
            r.conf = r.server.conf
        if log:
            self.server.error_log.log(level, log, self.number, request_context(r))
        self.queue.clear()
        if self.responding is not None:
            self._force_close()  # the current answer is cut short; nothing more can follow
            return
        self.responding = r
        resp = handler.special(r, status)
        self.send(r, resp, lingering=status == 413)

    def send(self, r: Request, resp: Response, lingering: bool = False) -> None:
        """Write a response; called by the phases or later by an asynchronous handler."""
        t = self.transport
        if t is None or self.closing:
            self._close_resp_file(resp)
            return
        r.response = resp
        r.status = resp.status
        if self.draining:
            r.keepalive = False
        if r.expect_continue and r.body_expected and resp.status < 300:
            t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        conf = r.conf or self.conf
        chunked = False
        if resp.unknown_length and not r.is_head:
            # ngx_http_chunked_header_filter: chunked for HTTP/1.1, else the close ends it
            if r.version >= 11 and conf.chunked_transfer_encoding:
                chunked = True
            else:
                r.keepalive = False
        head = render_headers(resp, server_tokens=conf.server_tokens, keepalive=r.keepalive,
                              keepalive_header=conf.keepalive_header, chunked=chunked)
        if resp.close:  # after the headers: nginx says keep-alive, then closes
            r.keepalive = False
        r.bytes_sent = len(head)
        if r.is_head or resp.no_body or resp.status == 204:
            self._close_resp_file(resp)
            t.write(head)
            self._done(r, lingering)
            return
        if resp.file_fd is None:
            if chunked:
                body = resp.body
                t.write(head + (b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n" if body
                                else b"0\r\n\r\n"))
                r.body_bytes_sent = len(body)
                r.bytes_sent += len(body)
                self._done(r, lingering)
                return
            t.write(head + resp.body)
            r.body_bytes_sent = len(resp.body)
            r.bytes_sent += len(resp.body)
            self._done(r, lingering)
            return
        count = resp.file_count
        if count <= SMALL_FILE:
            try:
                data = os.pread(resp.file_fd, count, resp.file_offset)
            except OSError as e:
                self._close_resp_file(resp)
                self.server.error_log.log("crit", f"pread() failed ({e.errno}: {e.strerror})",
                                          self.number, request_context(r))
                self._force_close()
                return
            self._close_resp_file(resp)
            t.write(head + data)
            r.body_bytes_sent = len(data)
            r.bytes_sent += len(data)
            self._done(r, lingering)
            return
        t.write(head)
        self.file_fd = resp.file_fd
        resp.file_fd = None
        self.file_offset = resp.file_offset
        self.file_left = count
        self.use_sendfile = conf.sendfile and self.sock_fd >= 0 and \
            t.get_extra_info("sslcontext") is None
        self._pump_file()

    def _pump_file(self) -> None:
        r = self.responding
        t = self.transport
        if r is None or t is None or self.file_fd is None:
            return
        fd = self.file_fd
        while self.file_left > 0 and not self.paused_writing:
            if self.closing or t.is_closing():
                self._close_file()
                return
            if self.use_sendfile and t.get_write_buffer_size() == 0:
                try:
                    n = os.sendfile(self.sock_fd, fd, self.file_offset, min(self.file_left,
                                                                            1 << 20))
                except BlockingIOError:
                    n = 0
                except OSError:
                    self._close_file()
                    self._force_close()
                    return
                if n > 0:
                    self._sent_file(r, n)
                    continue
            try:
                data = os.pread(fd, min(self.file_left, CHUNK), self.file_offset)
            except OSError:
                data = b""
            if not data:  # the file shrank under us: the response cannot be completed
                self._close_file()
                self._force_close()
                return
            t.write(data)
            self._sent_file(r, len(data))
        if self.file_left == 0:
            self._close_file()
            self._done(r, False)

    def _sent_file(self, r: Request, n: int) -> None:
        self.file_offset += n
        self.file_left -= n
        r.body_bytes_sent += n
        r.bytes_sent += n
        self.deadline = self.loop.time() + self.conf.send_timeout

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        self.deadline = self.loop.time() + self.conf.send_timeout
        if self.file_fd is not None:
            self._pump_file()

    def _close_file(self) -> None:
        if self.file_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.file_fd)
            self.file_fd = None
            self.file_left = 0

    @staticmethod
    def _close_resp_file(resp: Response) -> None:
        if resp.file_fd is not None:
            with contextlib.suppress(OSError):
                os.close(resp.file_fd)
            resp.file_fd = None

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
            # the client may still be sending (a body we did not read, a pipelined request):
            # nginx's lingering close keeps reading so that our answer is not lost to a reset
            if lingering or self.cur is not None:
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

    def _linger(self) -> None:
        """nginx's lingering close: stop writing, read and drop what the client still sends."""
        t = self.transport
        assert t is not None
        self.state = LINGERING
        with contextlib.suppress(OSError, RuntimeError):
            t.write_eof()
        t.resume_reading()
        self.deadline = self.loop.time() + self.conf.lingering_timeout
        if self.timer is None:
            self.timer = self.loop.call_at(self.deadline, self._on_timer)

    def _force_close(self) -> None:
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
            self.arm(IDLE, self.GRACE - idle)



_HIGH_BYTES = re.compile(rb"[%\x80-\xff]")
_LINE_END = re.compile(rb" HTTP/\d\.\d\r?\n\Z")


def _escape_byte(m: re.Match[bytes]) -> bytes:
    return b"%%%02X" % m.group()[0]


def _rest_of_request_line(line: bytes) -> bool:
    """Whether a line fed before any header is (the rest of) the request line."""
    if line.endswith(b"\n"):
        return _LINE_END.search(line) is not None
    return b":" not in line


def _valid_header_name(low: str, underscores: bool) -> bool:
    for ch in low:
        if ch == "_":
            if not underscores:
                return False
            continue
        if not ("a" <= ch <= "z" or "0" <= ch <= "9" or ch == "-"):
            return False
    return True

