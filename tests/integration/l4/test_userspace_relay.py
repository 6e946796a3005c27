"""The user-space data plane's TCP relay (l4/dataplane/tcp_relay.py) against real servers the
test drives by hand (plain sockets on loopback, no root): flow control when a real server stops
reading, resets passed on both ways, a FIN arriving with the last bytes, a failing handler that
takes down only its own connection, and an accept that fails (EMFILE) without a busy loop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from halb.l4.dataplane import tcp_relay
from halb.l4.dataplane.tcp_relay import BUFSIZE, HIGH_WATER, Listener, Poller, Relay
from halb.l4.dataplane.userspace import UserspaceDataPlane
from halb.l4.director import Director
from halb.l4.model import Command, DestSpec, Forward, Op, Proto, ServiceKey, ServiceSpec
from halb.runtime.loop import new_event_loop

VIP, RS = "127.5.20.10", "127.5.20.11"


def run(coro: Callable[[], Awaitable[None]], timeout: float = 60.0) -> None:
    loop = new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(coro(), timeout))
    finally:
        loop.close()


def free_port(addr: str) -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return int(s.getsockname()[1])


async def until(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def relay_lab(rcvbuf: int = 0) -> AsyncIterator[tuple[Director, socket.socket, int]]:
    """A director with one service VIP:port -> RS:port, RS a listening socket the test
    accepts from itself (`rcvbuf`: a small receive buffer, inherited by what it accepts)."""
    port = free_port(VIP)
    ls = socket.socket()
    director = Director(UserspaceDataPlane(), interval=0.2)
    try:
        if rcvbuf:
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        ls.bind((RS, port))
        ls.listen(16)
        ls.setblocking(False)
        await director.start()
        key = ServiceKey(Proto.TCP, VIP, port)
        await director.execute(Command(Op.ADD_SERVICE, service=ServiceSpec(key, "rr")))
        await director.execute(Command(Op.ADD_DEST, service=ServiceSpec(key),
                                       dest=DestSpec(RS, port, Forward.MASQ)))
        yield director, ls, port
    finally:
        await director.stop()
        ls.close()


async def pair(ls: socket.socket, port: int, client: str) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter, socket.socket]:
    """A client through the VIP and the real server's end of the same connection."""
    loop = asyncio.get_running_loop()
    r, w = await asyncio.open_connection(VIP, port, local_addr=(client, 0))
    conn, _ = await loop.sock_accept(ls)
    conn.setblocking(False)
    return r, w, conn


async def drain(conn: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    n = 0
    while data := await loop.sock_recv(conn, 1 << 20):
        n += len(data)
    return n


def only_relay(director: Director) -> Relay:
    dp = director.dataplane
    assert isinstance(dp, UserspaceDataPlane)
    (relay,) = dp.live
    return relay


def hard_close(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_a_real_server_that_stops_reading_stops_the_client_being_read() -> None:
    async def main() -> None:
        async with relay_lab(rcvbuf=64 * 1024) as (director, ls, port):
            r, w, conn = await pair(ls, port, "127.5.21.1")
            total = 24 << 20
            w.write(bytes(range(256)) * (total // 256))  # the real server reads nothing yet
            relay = only_relay(director)
            await until(lambda: relay.c_paused, "the relay to stop reading the client")
            waiting = len(relay.sbuf or b"")
            assert HIGH_WATER < waiting <= HIGH_WATER + BUFSIZE  # bounded, not the 24 MiB
            w.write_eof()
            assert await drain(conn) == total  # it resumes: every byte, then the FIN
            conn.close()
            assert await r.read() == b""
            w.close()
            (svc,) = director.view().services
            assert svc.stats.inbytes == total

    run(main)


def test_resets_are_passed_on_both_ways() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with relay_lab() as (director, ls, port):
            dp = director.dataplane
            assert isinstance(dp, UserspaceDataPlane)
            # the client resets: the real server sees a reset, the entry goes to CLOSE
            r, w, conn = await pair(ls, port, "127.5.22.1")
            w.write(b"ping")
            assert await loop.sock_recv(conn, 10) == b"ping"
            sock = w.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(loop.sock_recv(conn, 10), 10)
            conn.close()
            await until(lambda: not dp.live, "the relay to end")
            (entry,) = director.view(connections=True).connections
            assert entry.state == "CLOSE"
            # the real server resets: the client sees a reset
            r, w, conn = await pair(ls, port, "127.5.22.2")
            await loop.sock_sendall(conn, b"pong")
            assert await r.readexactly(4) == b"pong"
            hard_close(conn)
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(r.read(), 10)
            w.close()
            assert dp.errors["server-reset"] == 1
            await until(lambda: not dp.live, "the relay to end")

    run(main)


def test_a_fin_with_the_last_bytes_then_the_client_still_sends() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with relay_lab() as (director, ls, port):
            r, w, conn = await pair(ls, port, "127.5.23.1")
            answer = b"a" * 100_000
            await loop.sock_sendall(conn, answer)
            conn.shutdown(socket.SHUT_WR)  # the FIN right behind the bytes
            assert await r.read() == answer  # all of them, then the end
            w.write(b"more" * 1000)  # our half is still open toward the real server
            w.write_eof()
            assert await drain(conn) == 4000
            conn.close()
            w.close()
            dp = director.dataplane
            assert isinstance(dp, UserspaceDataPlane)
            await until(lambda: not dp.live, "the relay to end")
            (entry,) = director.view(connections=True).connections
            assert entry.state == "TIME_WAIT"
            (svc,) = director.view().services
            assert (svc.stats.inbytes, svc.stats.outbytes) == (4000, len(answer))

    run(main)


def test_a_failing_handler_resets_its_connection_only(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with relay_lab() as (director, ls, port):
            dp = director.dataplane
            assert isinstance(dp, UserspaceDataPlane)
            r1, w1, conn1 = await pair(ls, port, "127.5.24.1")
            victim = only_relay(director)
            r2, w2, conn2 = await pair(ls, port, "127.5.24.2")
            read_server = Relay._read_server

            def broken(self: Relay, to_eof: int) -> None:
                if self is victim:
                    raise RuntimeError("a bug")
                read_server(self, to_eof)

            monkeypatch.setattr(tcp_relay.Relay, "_read_server", broken)
            await loop.sock_sendall(conn1, b"x")
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(r1.read(), 10)
            await loop.sock_sendall(conn2, b"still here")
            assert await r2.readexactly(10) == b"still here"
            assert dp.errors["internal"] == 1 and victim.closed and len(dp.live) == 1
            for w, conn in ((w1, conn1), (w2, conn2)):
                w.close()
                conn.close()

    run(main)


class _NoFds(socket.socket):
    def _accept(self) -> tuple[int, object]:
        raise OSError(errno.EMFILE, "Too many open files")


def test_a_failing_accept_rests_the_listener_instead_of_spinning() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        dp = UserspaceDataPlane()
        poller = Poller(loop, loop.time)
        sock = _NoFds()
        client = socket.socket()
        try:
            sock.bind((VIP, 0))
            sock.listen(4)
            sock.setblocking(False)
            key = ServiceKey(Proto.TCP, VIP, sock.getsockname()[1])
            listener = Listener(dp, poller, key, sock)
            client.setblocking(False)
            await loop.sock_connect(client, sock.getsockname())  # waits in the backlog
            await until(lambda: dp.errors["accept"] == 1, "the first failed accept")
            assert listener.paused
            await until(lambda: dp.errors["accept"] >= 2, "a retry after the rest")
            # level-triggered and always readable: without the rest this would be thousands
            assert dp.errors["accept"] < 10
            listener.close()
        finally:
            client.close()
            sock.close()
            poller.shutdown()

    run(main)
