"""Writes held to the end of the event loop's iteration: the express lane's answers to idle
keep-alive clients and its requests to cached upstream connections.

Each write to a peer on this host (a backend, a load generator, a local client) wakes it: a
worker that writes as it goes, between long stretches of Python, wakes a sleeping peer for
every write. Held and written together once the iteration's events are handled (loop.call_soon),
they wake it once per burst. The order of what a connection sends stays: a connection holds at
most one write, and whatever else happens to it first (more data from the client, end of
input, a close) releases it before (l7/http.py and l7/upstream.py call `release`); a
connection that is closing or gone drops it.

`Corked` is what holds: an object with a `corked` slot (bytes or None) and its transport.
The list of what waits belongs to one worker's server (l7/server.py: `held`), so that each
event loop flushes its own.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class Corked(Protocol):
    corked: bytes | None
    transport: Any


class Held:
    """What waits for the end of this iteration, in the order it was held."""

    __slots__ = ("items", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: list[Corked] = []

    def hold(self, obj: Corked, data: bytes) -> None:
        if obj.corked is not None:  # (not expected: a second write before the first went)
            release(obj)
            obj.transport.write(data)
            return
        obj.corked = data
        items = self.items
        if not items:
            self.loop.call_soon(self.flush)
        items.append(obj)

    def flush(self) -> None:
        items = self.items
        self.items = []
        for obj in items:
            data = obj.corked
            if data is not None:
                obj.corked = None
                t = obj.transport
                if t is not None and not t.is_closing():
                    t.write(data)


def release(obj: Corked) -> None:
    """Write what `obj` holds now (something else is about to happen to its connection)."""
    data = obj.corked
    if data is not None:
        obj.corked = None
        t = obj.transport
        if t is not None and not t.is_closing():
            t.write(data)


__all__ = ["Corked", "Held", "release"]
