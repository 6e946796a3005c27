"""ProxyRequest's failures, as ngx_http_upstream_next treats them: the upstream closing or
resetting (before the response: an `error` to retry; in the middle of a body: the client
connection closes, as nginx's does), the next-upstream decision (which failures count against
the peer, the tries and the timeout, 502 / 504 / the status passed through), a bug in the proxy
(one request lost, never the worker), and the client going away (499 unless
proxy_ignore_client_abort).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from halb.balancing import Outcome
from halb.l7.body import BODY, CONNECT, HEADER, OVER, STREAM, TUNNEL, ProxyState
from halb.l7.proxy_response import UNTIL_CLOSE
from halb.l7.static import Finish

if TYPE_CHECKING:
    from halb.l7.upstream import UpstreamConnection


FT_STATUS = {"timeout": 504, "http_504": 504, "http_500": 500, "http_503": 503,
             "http_403": 403, "http_404": 404, "http_429": 429}


class UpstreamFailures(ProxyState):
    """Mixin of ProxyRequest (l7/proxy.py)."""

    __slots__ = ()

    # -- the upstream going away --------------------------------------------------------------

    def upstream_eof(self, up: UpstreamConnection) -> None:
        if up is not self.up:
            return
        phase = self.phase
        if phase == STREAM:
            reader = self.reader
            assert reader is not None
            if reader.mode == UNTIL_CLOSE:
                reader.done = True
                self._complete()
            else:  # what was read is passed on (an error or a timeout drops it)
                self._mid_body_failure("upstream prematurely closed connection while reading "
                                       "upstream", flush=True)
        elif phase == TUNNEL:
            self._tunnel_end()
        elif phase == HEADER:
            self.fail("error", "upstream prematurely closed connection while reading response "
                               "header from upstream")

    def upstream_lost(self, up: UpstreamConnection, exc: Exception | None) -> None:
        if up is not self.up or self.phase == OVER:
            return
        if exc is None:
            self.upstream_eof(up)
            return
        errno = getattr(exc, "errno", None) or 104
        what = getattr(exc, "strerror", None) or "Connection reset by peer"
        reason = f"recv() failed ({errno}: {what})"
        if self.phase in (STREAM, TUNNEL):
            if self.phase == TUNNEL:
                self._tunnel_end()
                return
            self._mid_body_failure(f"{reason} while reading upstream")
        else:
            self.fail("error", f"{reason} while reading response header from upstream")

    def _mid_body_failure(self, message: str, flush: bool = False) -> None:
        """The header has gone (or is going) to the client: the response cannot be completed;
        nginx closes the client connection (the peer is not blamed)."""
        if self.phase == OVER:
            return
        self.conn.log_error("error", message + self._upstream_ctx(), self.r)
        self._done_with_upstream(self.resp, None, Outcome.SUCCESS, False)
        if flush and (self.out or self.conn.stream_pending):
            self._flush()
        self.out.clear()
        self.conn.stream_abort(self.r)

    # -- failures before the response started ------------------------------------------------

    def fail(self, ft: str, message: str) -> None:
        if self.phase == OVER:
            return
        if self.phase == STREAM or self.phase == TUNNEL:
            if self.phase == TUNNEL:
                self._tunnel_end()
            else:
                self._mid_body_failure(message)
            return
        self._next(ft, message)

    def _next(self, ft: str, message: str | None) -> None:
        """ngx_http_upstream_next: free the peer, then try another or finish."""
        r = self.r
        if message:
            self.conn.log_error("error", message + self._upstream_ctx(), r)
        status = FT_STATUS.get(ft, 502)
        att = self.att
        now = time.monotonic()
        if att is not None:
            att.status = status
            att.response = now - att.start
        self._release(Outcome.NEXT if ft in ("http_403", "http_404") else Outcome.FAILED, now)
        if self.tries:
            self.tries -= 1
        if self.cached and ft == "error":
            self.tries += 1  # a cached connection's failure does not use up a try
            peer = self.group.balancer.peers[0] if self.group.single else None
            if peer is not None and self.ctx is not None:
                self.ctx.tried.discard(id(peer))  # nginx's single peer ignores "tried"
        up = self.up
        self.up = None
        if up is not None:
            up.owner = None
            up.close()
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        self._disarm()
        if self.tries and self._retry_allowed(ft):
            self.connect_next()
            return
        self._finish_error(status)

    def _upstream_ctx(self) -> str:
        att = self.att
        if att is None:
            return ""
        return f', upstream: "{self.pp.scheme}://{att.addr}{self.r.uri}"'

    def _finish_error(self, status: int) -> None:
        self._over()
        self.conn.finish_request(self.r, Finish(status))

    def crashed(self, exc: Exception) -> None:
        """A bug in this module: the request ends (500, or a closed connection once the
        response started), the worker goes on."""
        r = self.r
        self.conn.log_error("alert", f"proxy failed: {exc!r}", r)
        if self.phase == OVER:
            return
        header = self.header_committed
        with contextlib.suppress(Exception):  # the request is being abandoned anyway
            self._done_with_upstream(None, None, Outcome.SUCCESS, False)
        if header:
            self.conn.stream_abort(r)
        else:
            r.keepalive = False
            self.conn.finish_request(r, Finish(500))

    def client_gone(self) -> None:
        """The client closed its connection (nginx logs 499 unless ignore_client_abort)."""
        if self.phase == OVER:
            return
        if self.plan.ignore_client_abort and self.phase in (BODY, CONNECT, HEADER):
            return
        self._done_with_upstream(self.resp, None, Outcome.SUCCESS, False)

    def client_eof(self) -> bool:
        """The client half-closed while its request is proxied (nginx's check for a broken
        connection): close the upstream and the client (499) unless ignore_client_abort."""
        if self.phase == OVER or self.phase == BODY or self.plan.ignore_client_abort:
            return False
        r = self.r
        self.conn.log_error("info", "client prematurely closed connection, so upstream "
                                    "connection is closed too", r)
        self.client_gone()
        if not self.header_committed or self.conn.stream_pending:
            r.status = 0  # nothing was sent: logged as 499
            r.response = None
        return True

