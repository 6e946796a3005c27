"""ProxyRequest's request-body side: reading the client's body (413 for a chunked body over
client_max_body_size), keeping it (l7/body.py: memory, then an unlinked temp file), and sending
it upstream with flow control — whole after the header when buffered, piece by piece as it
comes with proxy_request_buffering off (chunked to HTTP/1.1 upstreams when its length is
unknown), the client's reading paused while the upstream does not keep up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from halb.l7.body import BODY, HEADER, OVER, PUMP_HIGH, READ_AHEAD, STREAM, ProxyState
from halb.l7.static import Finish
from halb.l7.upstream import UpstreamConnection

if TYPE_CHECKING:
    pass


class RequestBodySender(ProxyState):
    """Mixin of ProxyRequest (l7/proxy.py)."""

    __slots__ = ()

    def _too_large(self) -> Finish:
        r = self.r
        r.keepalive = False
        self._over()
        return Finish(413, "client intended to send too large chunked body: "
                           f"{r.body_received} bytes")

    def _body_chunk(self, data: bytes) -> None:
        if self.phase == OVER:
            return
        r = self.r
        if r.chunked and r.on_body is not None:
            conf = r.conf
            assert conf is not None
            limit = conf.client_max_body_size
            if limit and r.body_received > limit:
                r.on_body = None
                r.on_body_done = None
                self.conn.finish_request(r, self._too_large())
                return
        if not self.plan.pass_body:
            return
        up = self.up
        attached = self.streaming and up is not None and self.phase in (HEADER, STREAM)
        if attached and self.body_sent >= self.body.size:
            assert up is not None
            self._send_piece(up, data)  # caught up: straight through, nothing kept
            t = up.transport
            if t is not None and t.get_write_buffer_size() > READ_AHEAD:
                self.client_paused = True  # until the upstream takes it (upstream_writable)
                self.conn.tunnel_pause(True)
            if self.phase == HEADER:
                self._arm(self.plan.send_timeout, "sending request to upstream")
            return
        self.body.add(data)  # memory up to client_body_buffer_size, then a temp file
        if attached:
            assert up is not None
            self._pump_body(up)

    def _send_piece(self, up: UpstreamConnection, data: bytes) -> None:
        if self.upchunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        up.write(data)
        att = self.att
        if att is not None:
            att.sent += len(data)

    def _pump_body(self, up: UpstreamConnection) -> None:
        """Send the kept body from body_sent on, while the upstream takes it (flow control:
        upstream_writable calls again); then the last chunk, and the response timer."""
        body = self.body
        t = up.transport
        while self.body_sent < body.size:
            if t is None or up.closed:
                return
            if t.get_write_buffer_size() > PUMP_HIGH:
                return
            piece = body.read(self.body_sent)
            if not piece:
                break
            self._send_piece(up, piece)
            self.body_sent += len(piece)
        if self.body_done:
            self._body_sent_all(up)

    def _body_sent_all(self, up: UpstreamConnection) -> None:
        if self.upchunked:
            up.write(b"0\r\n\r\n")
            if self.att is not None:
                self.att.sent += 5
        self._arm(self.plan.read_timeout, "reading response header from upstream")

    def _body_done(self) -> None:
        r = self.r
        r.on_body = None
        r.on_body_done = None
        self.body_done = True
        if self.phase == BODY:
            self._begin()
        elif self.streaming and self.up is not None and self.phase in (HEADER, STREAM) \
                and self.body_sent >= self.body.size:
            self._body_sent_all(self.up)  # (otherwise _pump_body ends it once all is out)

