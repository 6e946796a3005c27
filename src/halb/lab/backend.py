"""`halb backend`: a tiny HTTP/1.1 demo server that says which node answered.

The seeds put an index.html on each Tomcat / httpd backend that identifies the node ("标识节点
即可"); this is that backend, as one asyncio process:

- any path but /health answers 200 with a small HTML page naming the node, and the headers
  `X-Backend: NAME` (the node) and `X-Backend-Peer: ADDR:PORT` (who connected: behind a proxy,
  the proxy node — the lab reads which nginx node served a request from it);
- /health answers 200 "ok", or 503 "unhealthy" while the health file exists (`--health-file`)
  or after SIGUSR1 (SIGUSR2 makes it healthy again) — neither delayed nor failed at random;
- `--delay S` holds every answer S seconds (a timer, no task per request); `--error-rate P`
  answers 500 to a fraction P of requests, drawn from a seeded rng (`--seed`) so runs repeat;
- keep-alive and pipelining (answers leave in request order), HTTP/1.0 closes unless it asks
  for keep-alive, HEAD gets headers only, a request body is read and dropped, a malformed
  request gets 400 and the connection is closed; the server keeps serving everyone else.

SIGTERM / SIGINT stop it (exit 0). `start()` runs one inside a caller's loop (for tests).
"""

from __future__ import annotations

import asyncio
import html
import os
import random
import signal
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import cast

import httptools

from halb import __version__

REASONS = {200: "OK", 400: "Bad Request", 500: "Internal Server Error",
           503: "Service Unavailable"}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8081
    name: str = "backend"
    delay: float = 0.0
    error_rate: float = 0.0
    seed: int | None = None
    health_file: str | None = None
    quiet: bool = False


def parse_listen(text: str) -> tuple[str, int]:
    """ADDR:PORT, [V6]:PORT or PORT (on 127.0.0.1) -> (host, port); ValueError if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid port in {text!r}")
    return host or "0.0.0.0", int(port)


def page(name: str, peer: str, path: str) -> bytes:
    """The index page: which node answered, to whom, for what."""
    n, p, u = (html.escape(s) for s in (name, peer, path))
    return (f"<!DOCTYPE html>\n<html><head><title>{n}</title></head>\n"
            f"<body><h1>{n}</h1>\n<p>served by {n} to {p} for {u}</p>\n</body></html>\n"
            ).encode()


def response(status: int, body: bytes, headers: list[tuple[str, str]], keep_alive: bool,
             head: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
             f"Server: halb-backend/{__version__}", *(f"{k}: {v}" for k, v in headers),
             f"Content-Length: {len(body)}",
             "Connection: keep-alive" if keep_alive else "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body)


@dataclass
class Stats:
    requests: int = 0
    errors: int = 0
    bad: int = 0
    connections: int = 0


@dataclass
class Backend:
    """The server's shared state: settings, the seeded rng, the health switch, counters."""

    settings: Settings
    rng: random.Random = field(init=False)
    forced_unhealthy: bool = False
    stats: Stats = field(default_factory=Stats)
    server: asyncio.AbstractServer | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.settings.seed)

    def healthy(self) -> bool:
        if self.forced_unhealthy:
            return False
        f = self.settings.health_file
        return not (f and os.path.exists(f))

    def answer(self, method: str, path: str, peer: str, keep_alive: bool) -> tuple[bytes, bool]:
        """(bytes to send, delayed?) for one request."""
        s = self.settings
        self.stats.requests += 1
        head = method == "HEAD"
        ident = [("X-Backend", s.name), ("X-Backend-Peer", peer)]
        if path.split("?", 1)[0] == "/health":
            ok = self.healthy()
            body = b"ok\n" if ok else b"unhealthy\n"
            return response(200 if ok else 503, body, [*ident, ("Content-Type", "text/plain")],
                            keep_alive, head), False
        if s.error_rate > 0 and self.rng.random() < s.error_rate:
            self.stats.errors += 1
            body = f"{s.name}: injected error\n".encode()
            return response(500, body, [*ident, ("Content-Type", "text/plain")], keep_alive,
                            head), True
        return response(200, page(s.name, peer, path), [*ident, ("Content-Type", "text/html")],
                        keep_alive, head), True


class _Request:
    __slots__ = ("data", "done", "keep_alive")

    def __init__(self) -> None:
        self.data = b""
        self.done = False
        self.keep_alive = True


class BackendProtocol(asyncio.Protocol):
    """One connection: parse with httptools, answer in order, delay with call_later."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer = "-"
        self.url = b""
        self.queue: deque[_Request] = deque()
        self.closing = False

    # -- asyncio --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.backend.stats.connections += 1
        peer = self.transport.get_extra_info("peername")
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._bad()
        except httptools.HttpParserError:
            self._bad()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.queue.clear()

    # -- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        p = self.parser
        method = p.get_method().decode("latin-1")
        keep = p.should_keep_alive()
        data, delayed = self.backend.answer(method, self.url.decode("latin-1"), self.peer, keep)
        req = _Request()
        req.data, req.keep_alive = data, keep
        self.queue.append(req)
        delay = self.backend.settings.delay
        if delayed and delay > 0:
            asyncio.get_running_loop().call_later(delay, self._ready, req)
        else:
            self._ready(req)

    # -- answers --------------------------------------------------------------------------------

    def _ready(self, req: _Request) -> None:
        req.done = True
        t = self.transport
        while self.queue and self.queue[0].done and t is not None and not t.is_closing():
            head = self.queue.popleft()
            t.write(head.data)
            if not head.keep_alive:
                self.closing = True
                self.queue.clear()
                t.close()

    def _bad(self) -> None:
        """A malformed request: 400 after the answers already owed, then close."""
        self.backend.stats.bad += 1
        self.closing = True
        req = _Request()
        req.data = response(400, b"bad request\n", [("X-Backend", self.backend.settings.name)],
                            False)
        req.keep_alive = False
        self.queue.append(req)
        self._ready(req)


async def start(settings: Settings) -> Backend:
    """A listening backend in the running loop (close with `backend.server.close()`)."""
    backend = Backend(settings)
    loop = asyncio.get_running_loop()
    backend.server = await loop.create_server(lambda: BackendProtocol(backend), settings.host,
                                              settings.port, reuse_address=True, backlog=1024)
    return backend


async def _serve(settings: Settings) -> int:
    backend = await start(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def set_health(unhealthy: bool) -> None:
        backend.forced_unhealthy = unhealthy

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, set_health, True)
    loop.add_signal_handler(signal.SIGUSR2, set_health, False)
    assert backend.server is not None
    bound = backend.server.sockets[0].getsockname()
    if not settings.quiet:
        sys.stdout.write(f"halb backend {settings.name} listening on {bound[0]}:{bound[1]}\n")
        sys.stdout.flush()
    await stop.wait()
    backend.server.close()
    return 0


def serve(settings: Settings) -> int:
    """Run in the foreground until SIGTERM / SIGINT."""
    from halb.runtime.loop import new_event_loop

    loop = new_event_loop()
    try:
        return loop.run_until_complete(_serve(settings))
    finally:
        loop.close()
