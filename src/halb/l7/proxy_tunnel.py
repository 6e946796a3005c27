"""ProxyRequest's two ways out of plain proxying: X-Accel-Redirect (an internal redirect
named by the upstream, keeping the headers nginx keeps) and the tunnel an upgraded connection
(101 Switching Protocols, e.g. WebSocket) becomes, with flow control both ways.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from halb.balancing import Outcome
from halb.l7.body import HEADER, READ_AHEAD, STREAM, TUNNEL, ProxyState
from halb.l7.proxy_headers import (
    ACCEL_KEEP,
)
from halb.l7.proxy_response import (
    UNTIL_CLOSE,
    BodyReader,
    ResponseHead,
)
from halb.l7.response import Response
from halb.l7.static import Finish, Redirect

if TYPE_CHECKING:
    pass


class AccelAndTunnel(ProxyState):
    """Mixin of ProxyRequest (l7/proxy.py)."""

    __slots__ = ()

    # -- X-Accel-Redirect, the tunnel ---------------------------------------------------------

    def _accel_redirect(self, head: ResponseHead, uri: str) -> None:
        r = self.r
        kept = self.kept = [(n, v) for n, v in head.headers if n.lower() in ACCEL_KEEP]
        if uri.startswith("@"):
            red = Redirect(uri, None, named=True)
        else:
            path, q, args = uri.partition("?")
            if "/../" in path + "/" or not path.startswith("/"):
                self.conn.finish_request(r, Finish(404))
                return
            red = Redirect(path, args if q else None)
        if r.method != "HEAD":
            r.method = "GET"

        def amend(resp: Response) -> None:
            if resp.status < 300 or resp.status == 304:  # an error page stays text/html
                for name, value in kept:
                    if name.lower() == "content-type":
                        resp.content_type = value
            _prepend(resp, [(n, v) for n, v in kept if n.lower() != "content-type"])

        self.conn.finish_request(r, red, amend)

    def _tunnel(self, head: ResponseHead, rest: bytes) -> None:
        """101 to a client that asked to upgrade: both directions are passed as they come."""
        r = self.r
        r.keepalive = False
        self.reader = BodyReader(UNTIL_CLOSE)
        self._send_head(head)
        self.phase = TUNNEL
        self.conn.tunnel_start(r, self)
        if rest:
            self.conn.tunnel_write(rest)
        self._arm(self.plan.read_timeout, "reading upstream")

    def tunnel_data(self, data: bytes) -> None:
        """Bytes from the client of an upgraded connection."""
        up = self.up
        if up is not None and not up.closed:
            up.write(data)
            if self.att is not None:
                self.att.sent += len(data)
            self._arm(self.plan.read_timeout, "proxying upgraded connection")
            t = up.transport
            if t is not None and t.get_write_buffer_size() > READ_AHEAD:
                self.conn.tunnel_pause(True)  # until the upstream takes it (upstream_writable)

    def upstream_writable(self) -> None:
        if self.phase == TUNNEL:
            self.conn.tunnel_pause(False)
            return
        up = self.up
        if up is None or self.phase not in (HEADER, STREAM):
            return
        if self.body_sent < self.body.size:
            self._pump_body(up)
        if self.client_paused:
            t = up.transport
            if t is None or t.get_write_buffer_size() <= READ_AHEAD // 2:
                self.client_paused = False
                self.conn.tunnel_pause(False)

    def tunnel_eof(self) -> None:
        """The client closed its side: nginx ends the upgraded connection once what the client
        sent is passed on (the upstream's late answer is not waited for)."""
        if self.phase == TUNNEL:
            self._tunnel_end()

    def _tunnel_end(self) -> None:
        self._done_with_upstream(self.resp, None, Outcome.SUCCESS, False)
        self.conn.tunnel_end(self.r)


def _prepend(resp: Response, headers: list[tuple[str, str]]) -> None:
    """Headers nginx put in the list before the handler that answers added its own (the ETag
    and Accept-Ranges of a static file come after them)."""
    if not headers:
        return
    if resp.etag is not None:
        headers.append(("ETag", resp.etag))
        resp.etag = None
    if resp.accept_ranges:
        headers.append(("Accept-Ranges", "bytes"))
        resp.accept_ranges = False
    resp.headers[:0] = headers


