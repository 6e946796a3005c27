"""proxy_pass's timer: one per client connection, lent to each of its ProxyRequests in turn
(l7/proxy.py arms it for connect, send and read timeouts), so that a keep-alive connection does
not make and cancel an event-loop timer for every proxied request."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from halb.l7.proxy import ProxyRequest


class ConnectionTimer:
    """The proxy timer of one client connection, lent to each of its ProxyRequests in turn:
    one handle serves many requests (it is moved only when it would fire later than the
    deadline of the request that starts it; a handle that fires early finds the request's
    deadline later and moves, or finds no request and stops)."""

    __slots__ = ("at", "handle", "loop", "owner")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.handle: asyncio.TimerHandle | None = None
        self.at = 0.0
        self.owner: ProxyRequest | None = None

    def start(self, owner: ProxyRequest, deadline: float) -> None:
        self.owner = owner
        handle = self.handle
        if handle is None or self.at > deadline:
            if handle is not None:
                handle.cancel()
            self.handle = self.loop.call_at(deadline, self._fire)
            self.at = deadline

    def stop(self, owner: ProxyRequest) -> None:
        if self.owner is owner:
            self.owner = None  # (the handle stays for the next request)

    def close(self) -> None:
        self.owner = None
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _fire(self) -> None:
        self.handle = None
        owner = self.owner
        if owner is not None:
            owner._on_timer()
