"""Writes held to the end of the event loop's iteration: the express lane's answers to idle
keep-alive clients, and its requests to upstreams (with the choice of their connection).

Each write to a peer on this host (a backend, a load generator, a local client) wakes it: a
worker that writes as it goes, between long stretches of Python, wakes a sleeping peer for
every write. Held and written together once the iteration's events are handled (loop.call_soon),
they wake it once per burst. The order of what a connection sends stays: a connection holds at
most one write, and whatever else happens to it first (more data from the client, end of
input, a close) releases it before (l7/http.py and l7/upstream.py call `release`); a
connection that is closing or gone drops it.

A request of the lane (its peer picked) also waits for the end of the iteration before it takes
a cached connection to the peer, or makes one (`later`): the answers handled in the same
iteration have put their connections back by then, so fewer requests find the cache empty and
fewer connections are made and closed again. For the same reason a full keep-alive cache is
trimmed to keepalive N at the end of the iteration, after those requests took their
connections (`trim_later`), not as each answer puts its connection back: nginx's bound, kept
between iterations.

`Corked` is what holds: an object with a `corked` slot (bytes or None) and its transport.
The lists of what waits belong to one worker's server (l7/server.py: `held`), so that each
event loop flushes its own.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class Corked(Protocol):
    corked: bytes | None
    transport: Any


class Later(Protocol):
    def send(self) -> None: ...

    def crashed(self, exc: Exception) -> None: ...


class Trimmed(Protocol):
    def trim(self) -> None: ...


class Held:
    """What waits for the end of this iteration, in the order it was held."""

    __slots__ = ("items", "later", "loop", "scheduled", "trims")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: list[Corked] = []
        self.later: list[Later] = []
        self.trims: list[Trimmed] = []
        self.scheduled = False

    def send_later(self, request: Later) -> None:
        """`request.send()` at the end of this iteration."""
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)
        self.later.append(request)

    def trim_later(self, group: Trimmed) -> None:
        """`group.trim()` at the end of this iteration, after the requests' sends."""
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)
        self.trims.append(group)

    def hold(self, obj: Corked, data: bytes) -> None:
        if obj.corked is not None:  # (not expected: a second write before the first went)
            release(obj)
            obj.transport.write(data)
            return
        obj.corked = data
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)
        self.items.append(obj)

    def flush(self) -> None:
        self.scheduled = False
        later = self.later
        if later:
            self.later = []
            for request in later:
                try:
                    request.send()
                except Exception as e:  # a bug must cost one request, never the worker
                    request.crashed(e)
        trims = self.trims
        if trims:
            self.trims = []
            for group in trims:
                group.trim()
        items = self.items
        self.items = []
        for obj in items:
            release(obj)


def release(obj: Corked) -> None:
    """Write what `obj` holds now (something else is about to happen to its connection)."""
    data = obj.corked
    if data is not None:
        obj.corked = None
        t = obj.transport
        if t is not None and not t.is_closing():
            t.write(data)


__all__ = ["Corked", "Held", "Later", "Trimmed", "release"]
