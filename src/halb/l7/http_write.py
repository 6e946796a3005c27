"""Writing responses: whole bodies, files (sendfile / pread under flow control), and the
streamed bodies of proxied responses (chunked for HTTP/1.1 clients when the length is unknown).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from halb.l7.filters.chain import header_filter
from halb.l7.log import request_context
from halb.l7.request import Request
from halb.l7.response import Response, render_headers

# the connection's states for its timer: IDLE, READING_HEADER, READING_BODY, WRITING,
# LINGERING, DISCARDING (l7/http.py)
STATES = tuple(range(6))
WRITING = STATES[3]

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
    stream_pending: bytes
    body_filter: Any
    tunnel: Any
    on_writable: Callable[[], None] | None

    if TYPE_CHECKING:  # provided by HttpConnection
        cur: Request | None
        state: int

        def arm(self, state: int, timeout: float) -> None: ...
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
        body_filter = None
        if conf.filters is not None:  # add_header, expires, gzip (l7/filters/)
            body_filter = header_filter(r, resp, conf.filters)
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
        if r.version == 9:  # HTTP/0.9: the bare body
            head = b""
        r.bytes_sent = len(head)
        if (r.is_head and r.version != 9) or resp.no_body or resp.status == 204:
            self._close_resp_file(resp)
            t.write(head)
            self._done(r, lingering)
            return
        if body_filter is not None:
            self._send_filtered(r, resp, body_filter, head, chunked, lingering)
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

    def _send_filtered(self, r: Request, resp: Response, body_filter: Any, head: bytes,
                       chunked: bool, lingering: bool) -> None:
        """A body that passes through an output filter (gzip): read and filtered in pieces,
        its length unknown (chunked for HTTP/1.1, else the close ends it)."""
        t = self.transport
        self.stream_chunked = chunked
        if resp.file_fd is None or resp.file_count <= SMALL_FILE:
            if resp.file_fd is None:
                data = resp.body
            else:
                try:
                    data = os.pread(resp.file_fd, resp.file_count, resp.file_offset)
                except OSError as e:
                    self._close_resp_file(resp)
                    self.server.error_log.log("crit", f"pread() failed ({e.errno}: "
                                              f"{e.strerror})", self.number, request_context(r))
                    self._force_close()
                    return
                self._close_resp_file(resp)
            t.write(head + self._framed(r, body_filter.last(data), True))
            self.stream_chunked = False
            self._done(r, lingering)
            return
        t.write(head)
        self.body_filter = body_filter
        self.file_fd = resp.file_fd
        resp.file_fd = None
        self.file_offset = resp.file_offset
        self.file_left = resp.file_count
        self._pump_file()

    def _framed(self, r: Request, data: bytes, final: bool) -> bytes:
        """A filtered piece as it goes out (chunk framing), counted as sent."""
        n = len(data)
        if self.stream_chunked:
            out = b"%x\r\n%b\r\n" % (n, data) if n else b""
            if final:
                out += b"0\r\n\r\n"
        else:
            out = data
        r.body_bytes_sent += n
        r.bytes_sent += len(out)
        return out

    def _pump_filtered(self) -> None:
        r = self.responding
        t = self.transport
        bf = self.body_filter
        if r is None or t is None or self.file_fd is None:
            return
        fd = self.file_fd
        while self.file_left > 0 and not self.paused_writing:
            if self.closing or t.is_closing():
                self._close_file()
                self.body_filter = None
                return
            try:
                data = os.pread(fd, min(self.file_left, CHUNK), self.file_offset)
            except OSError:
                data = b""
            if not data:  # the file shrank under us: the response cannot be completed
                self._close_file()
                self.body_filter = None
                self._force_close()
                return
            self.file_offset += len(data)
            self.file_left -= len(data)
            final = self.file_left == 0
            out = bf.last(data) if final else bf.data(data)
            out = self._framed(r, out, final)
            if out:
                t.write(out)
            self.deadline = self.loop.time() + self.conf.send_timeout
        if self.file_left == 0:
            self._close_file()
            self.body_filter = None
            self.stream_chunked = False
            self._done(r, False)

    def _pump_file(self) -> None:
        if self.body_filter is not None:
            self._pump_filtered()
            return
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

    def stream_start(self, r: Request, resp: Response, head: bytes, chunked: bool,
                     on_writable: Callable[[], None] | None, body_filter: Any = None) -> None:
        """A response whose header the handler rendered and whose body follows in pieces.
        Nothing is written yet: the header goes out with the first stream_body(), or at
        stream_end(); a stream_abort() before that sends nothing (nginx's postponed output)."""
        r.response = resp
        r.status = resp.status
        self.stream_pending = head if r.version != 9 else b""  # (HTTP/0.9: the bare body)
        self.stream_chunked = chunked
        self.on_writable = on_writable
        self.body_filter = body_filter

    def stream_body(self, r: Request, data: bytes, flush: bool = False) -> bool:
        """Write a piece of the body (after the header if still pending); False when the
        client is not keeping up. flush: an output filter passes on what it holds."""
        t = self.transport
        if t is None or self.closing:
            return False
        if self.body_filter is not None:
            data = self.body_filter.data(data, flush)
        head = self.stream_pending
        n = len(data)
        if self.stream_chunked and n:
            data = b"%x\r\n%b\r\n" % (n, data)
        if head:
            self.stream_pending = b""
            r.bytes_sent += len(head)
            data = head + data
        if data:
            t.write(data)
            if self.paused_writing and self.cur is not r:
                # send_timeout runs while the client does not take what is written
                self.arm(WRITING, (r.conf or self.conf).send_timeout)
        n = len(data) - (len(head) if head else 0)  # (with the chunk framing, as nginx counts)
        r.body_bytes_sent += n
        r.bytes_sent += n
        return not self.paused_writing

    def stream_end(self, r: Request, tail: bytes = b"") -> None:
        """The last piece of the body, then the end (the chunked terminator)."""
        t = self.transport
        self.on_writable = None
        if self.body_filter is not None:
            tail = self.body_filter.last(tail)
            self.body_filter = None
        if t is not None and not self.closing:
            head = self.stream_pending
            self.stream_pending = b""
            n = len(tail)
            if self.stream_chunked:
                tail = (b"%x\r\n%b\r\n0\r\n\r\n" % (n, tail)) if n else b"0\r\n\r\n"
            data = head + tail if head else tail
            if data:
                t.write(data)
            r.body_bytes_sent += len(tail)  # (with the chunk framing, as nginx counts)
            r.bytes_sent += len(data)
        self.stream_chunked = False
        if self.responding is r:
            self._done(r, False)

    def stream_abort(self, r: Request) -> None:
        """The body cannot be completed (the upstream failed mid-way): like nginx, close; a
        header still pending is never sent."""
        self.on_writable = None
        self.stream_chunked = False
        self.stream_pending = b""
        self.body_filter = None
        r.keepalive = False
        if self.responding is r:
            self.responding = None
            self.server.access_log(r)
        self._force_close()

    def write_buffered(self) -> int:
        t = self.transport
        return t.get_write_buffer_size() if t is not None else 0

    # -- an upgraded connection (proxy_pass and 101 Switching Protocols) ----------------------

    def tunnel_start(self, r: Request, peer: Any) -> None:
        """From now on the client's bytes go to peer.tunnel_data() (its EOF to tunnel_eof())
        and tunnel_write() passes the upstream's bytes; the header is written now."""
        t = self.transport
        head = self.stream_pending
        self.stream_pending = b""
        self.tunnel = peer
        if self.timer is not None:  # the proxy's timeouts govern an upgraded connection
            self.timer.cancel()
            self.timer = None
        if t is not None and not self.closing:
            if head:
                t.write(head)
                r.bytes_sent += len(head)
            t.resume_reading()

    def tunnel_write(self, data: bytes) -> None:
        t = self.transport
        if t is not None and not self.closing:
            t.write(data)
            r = self.responding
            if r is not None:
                r.body_bytes_sent += len(data)
                r.bytes_sent += len(data)

    def tunnel_pause(self, pause: bool) -> None:
        """Stop (or resume) reading the client while the upstream does not keep up."""
        t = self.transport
        if t is not None and not self.closing:
            if pause:
                t.pause_reading()
            else:
                t.resume_reading()

    def tunnel_end(self, r: Request) -> None:
        self.tunnel = None
        r.keepalive = False
        if self.responding is r:
            self.responding = None
            self.server.access_log(r)
        t = self.transport
        if t is not None and not self.closing:
            self.closing = True
            t.close()  # after what is buffered
