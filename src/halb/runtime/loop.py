"""The event loop: uvloop when it is installed, asyncio's own otherwise."""

from __future__ import annotations

import asyncio


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; the fallback is for ports
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
