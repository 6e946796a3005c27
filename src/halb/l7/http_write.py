"""Writing responses: whole bodies, files (sendfile / pread under flow control), and the
streamed bodies of proxied responses (chunked for HTTP/1.1 clients when the length is unknown).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from halb.l7.log import request_context
from halb.l7.request import Request
from halb.l7.response import Response, render_headers

SMALL_FILE = 64 * 1024  # read with the headers in one write
CHUNK = 256 * 1024


class ResponseWriter:
    """Mixin for HttpConnection: everything that writes to the client."""

    __slots__ = ()
    transport: Any
    closing: bool
    draining: bool
    conf: Any
    server: Any
    number: int
    loop: Any
    responding: Request | None
    paused_writing: bool
    file_fd: int | None
    file_offset: int
    file_left: int
    use_sendfile: bool
    sock_fd: int
    deadline: float
    stream_chunked: bool
    on_writable: Callable[[], None] | None

    if TYPE_CHECKING:  # provided by HttpConnection
        def _done(self, r: Request, lingering: bool) -> None: ...
        def _force_close(self) -> None: ...

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
        if r.send_continue:
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
        elif self.on_writable is not None:
            self.on_writable()

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


    # -- streamed bodies (proxy_pass) ---------------------------------------------------------

    def stream_begin(self, r: Request, resp: Response, chunked_hint: bool,
                     on_writable: Callable[[], None] | None) -> None:
        """The header of a response whose body follows in pieces."""
        t = self.transport
        if t is None or self.closing:
            return
        r.response = resp
        r.status = resp.status
        if self.draining:
            r.keepalive = False
        conf = r.conf or self.conf
        chunked = False
        if resp.unknown_length and not (r.is_head or resp.no_body):
            if r.version >= 11 and conf.chunked_transfer_encoding:
                chunked = True
            else:
                r.keepalive = False  # the close ends the body
        head = render_headers(resp, server_tokens=conf.server_tokens, keepalive=r.keepalive,
                              keepalive_header=conf.keepalive_header, chunked=chunked)
        r.bytes_sent = len(head)
        t.write(head)
        self.stream_chunked = chunked
        self.on_writable = on_writable

    def stream_body(self, r: Request, data: bytes) -> bool:
        """Write a piece of the body; False when the client is not keeping up."""
        t = self.transport
        if t is None or self.closing or not data:
            return not self.closing
        if r.is_head:
            return True
        if self.stream_chunked:
            t.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            t.write(data)
        r.body_bytes_sent += len(data)
        r.bytes_sent += len(data)
        return not self.paused_writing

    def stream_end(self, r: Request) -> None:
        t = self.transport
        self.on_writable = None
        if t is not None and not self.closing and self.stream_chunked and not r.is_head:
            t.write(b"0\r\n\r\n")
        self.stream_chunked = False
        self._done(r, False)

    def stream_abort(self, r: Request) -> None:
        """The body cannot be completed (the upstream failed mid-way): like nginx, close."""
        self.on_writable = None
        self.stream_chunked = False
        r.keepalive = False
        self.responding = None
        self.server.access_log(r)
        self._force_close()

    def write_buffered(self) -> int:
        t = self.transport
        return t.get_write_buffer_size() if t is not None else 0
