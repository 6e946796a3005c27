"""The nginx role in process, for unit tests: a worker's HttpServer built from nginx.conf text
on its own event loop, and one client connection over a fake transport (no sockets). `turn`
runs one iteration of the loop (what l7/cork.py holds to the end of an iteration is written
then); `close` ends the connection, the server and the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Self

from halb.config.nginx import load_text
from halb.l7.http import HttpConnection
from halb.l7.log import ErrorLogger
from halb.l7.server import HttpServer
from halb.testing.fakes import FakeTransport


def turn(loop: asyncio.AbstractEventLoop) -> None:
    """One iteration of the loop."""
    loop.call_soon(loop.stop)
    loop.run_forever()


class ServerRig:
    """A server from `config` and one client connection; `transport` makes the client's
    transport from the loop (a plain FakeTransport by default)."""

    def __init__(self, config: str, transport: Callable[[asyncio.AbstractEventLoop],
                                                        FakeTransport] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.srv = HttpServer(load_text(config), self.loop, ErrorLogger(()), 0)
        self.conn = HttpConnection(self.srv, 1)
        self.client = transport(self.loop) if transport is not None else FakeTransport()
        self.conn.connection_made(self.client)  # type: ignore[arg-type]

    def turn(self) -> None:
        turn(self.loop)

    def close(self) -> None:
        self.conn.connection_lost(None)
        self.srv.close_listeners()
        self.loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
