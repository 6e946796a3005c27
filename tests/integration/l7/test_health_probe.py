"""l7.health.probe: one health check against loopback servers that answer right, wrong, in
pieces, on another port, on a unix socket, not at all, or refuse the connection.

In-process asyncio servers on 127.0.0.1 (and a unix socket in tmp_path); no halb process.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from halb.balancing import Peer
from halb.config.nginx_health import BodyTest, HealthCheck, Match, StatusTest
from halb.l7.health import ProbeResult, probe

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
REQUEST = b"GET /hc HTTP/1.0\r\nHost: u\r\nConnection: close\r\n\r\n"


def answer(*parts: bytes, pause: float = 0.0) -> Handler:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen.append(await reader.readuntil(b"\r\n\r\n"))
            for p in parts:
                writer.write(p)
                await writer.drain()
                await asyncio.sleep(pause)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    seen: list[bytes] = []
    serve.seen = seen  # type: ignore[attr-defined]
    return serve


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # until the checker gives up and closes
    writer.close()


def check(match: Match | None = None, **kw: object) -> HealthCheck:
    return HealthCheck("u", match=match, request=REQUEST, connect_timeout=2.0,
                       read_timeout=2.0, **kw)  # type: ignore[arg-type]


async def on_tcp(handler: Handler, hc: HealthCheck, peer_port: int | None = None
                 ) -> ProbeResult:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await probe(hc, Peer("u", "127.0.0.1", peer_port or port))
    finally:
        server.close()
        await server.wait_closed()


def test_passes_and_sends_the_check_request() -> None:
    handler = answer(b"HTTP/1.1 204 No Content\r\n\r\n")
    result = asyncio.run(on_tcp(handler, check()))
    assert result == ProbeResult(True, "checking status code")
    assert handler.seen == [REQUEST]  # type: ignore[attr-defined]


def test_wrong_status_fails_without_an_io_error() -> None:
    result = asyncio.run(on_tcp(answer(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"),
                                check()))
    assert result == ProbeResult(False, "checking status code")


def test_match_on_a_chunked_body_sent_in_pieces() -> None:
    match = Match("m", status=(StatusTest(False, ((200, 200),)),),
                  body=(BodyTest(False, re.compile("Welcome to nginx!")),))
    parts = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"8\r\nWelcome ",
             b"\r\n9\r\nto nginx!\r\n", b"0\r\n\r\n")
    ok = asyncio.run(on_tcp(answer(*parts, pause=0.01), check(match)))
    assert ok == ProbeResult(True, "checking response")
    other = Match("m", body=(BodyTest(False, re.compile("maintenance")),))
    bad = asyncio.run(on_tcp(answer(*parts), check(other)))
    assert bad == ProbeResult(False, "checking response")


def test_port_parameter_overrides_the_server_port() -> None:
    async def run() -> ProbeResult:
        server = await asyncio.start_server(answer(b"HTTP/1.0 200 OK\r\n\r\nok"),
                                            "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:  # the server's own port (1) has nothing listening
            return await probe(check(port=port), Peer("u", "127.0.0.1", 1))
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(run()).ok


def test_unix_socket_server(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")

    async def run() -> ProbeResult:
        server = await asyncio.start_unix_server(answer(b"HTTP/1.0 301 Moved\r\n\r\n"), path)
        try:
            return await probe(check(), Peer("u", f"unix:{path}", 0))
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(run()).ok


def test_refused_silent_and_garbage_servers_fail_with_nginx_words() -> None:
    async def refused() -> ProbeResult:
        server = await asyncio.start_server(hang, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()  # the port is free again: connect() is refused
        return await probe(check(), Peer("u", "127.0.0.1", port))

    r = asyncio.run(refused())
    assert (r.ok, r.phrase, r.error) == (False, "connecting to upstream",
                                         "connect() failed (111: Connection refused)")
    quick = HealthCheck("u", request=REQUEST, connect_timeout=2.0, read_timeout=0.2)
    r = asyncio.run(on_tcp(hang, quick))
    assert (r.ok, r.phrase, r.error) == (False, "reading response header from upstream",
                                         "upstream timed out (110: Connection timed out)")
    r = asyncio.run(on_tcp(answer(b"\x16\x03\x01 binary"), check()))
    assert (r.ok, r.error) == (False, "upstream prematurely closed connection")
    r = asyncio.run(on_tcp(answer(), check()))
    assert (r.ok, r.error) == (False, "upstream closed connection without a response")
