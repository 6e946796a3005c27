"""The user-space data plane behind a Director, on loopback only (no root): three real servers
on 127.5.0.x, the VIP on 127.5.0.10, clients from distinct 127.5.x.y source addresses.

Each real server greets with its name, then obeys one command line:
  ECHO      echo every byte until EOF, then close;
  SINK      read until EOF, answer with the byte count, close;
  FINFIRST  send "bye", shut its write side down, read until EOF and record the byte count.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from halb.balancing import create
from halb.balancing.base import Peer, PickContext
from halb.l4.dataplane.userspace import UserspaceDataPlane
from halb.l4.director import Director
from halb.l4.model import (
    Command,
    DestSpec,
    Forward,
    Op,
    Proto,
    ServiceKey,
    ServiceSpec,
    Timeouts,
)
from halb.l4.service import DirectorError
from halb.runtime.loop import new_event_loop

VIP = "127.5.0.10"
RS_ADDRS = ["127.5.0.11", "127.5.0.12", "127.5.0.13"]
DEAD = "127.5.0.14"
NAMES = {a: n for a, n in zip(RS_ADDRS, "ABC", strict=True)}


def run(coro: Callable[[], Awaitable[None]], timeout: float = 60.0) -> None:
    loop = new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(coro(), timeout))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def free_port(addr: str, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((addr, 0))
        return int(s.getsockname()[1])


class Clock:
    """time.monotonic plus an offset the test moves forward (expiry without sleeping)."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._loop_time = asyncio.get_running_loop().time

    def __call__(self) -> float:
        return self._loop_time() + self.offset


@dataclass
class RealServer:
    addr: str
    port: int
    name: str
    server: asyncio.Server | None = None
    udp: asyncio.DatagramTransport | None = None
    accepted: int = 0
    sunk: list[int] = field(default_factory=list)  # FINFIRST: bytes read after its own FIN

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            w.write(f"{self.name}\n".encode())
            cmd = (await r.readline()).strip()
            if cmd == b"ECHO":
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            elif cmd == b"SINK":
                n = 0
                while data := await r.read(65536):
                    n += len(data)
                w.write(f"{n}\n".encode())
            elif cmd == b"FINFIRST":
                w.write(b"bye\n")
                await w.drain()
                w.write_eof()
                n = 0
                while data := await r.read(65536):
                    n += len(data)
                self.sunk.append(n)
            await w.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()


class _UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.t: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.t is not None
        self.t.sendto(self.name + b":" + data, addr)


@contextlib.asynccontextmanager
async def lab(udp: bool = False) -> AsyncIterator[tuple[Director, list[RealServer], Clock]]:
    port = free_port(VIP, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    servers = [RealServer(a, port, NAMES[a]) for a in RS_ADDRS]
    clock = Clock()
    director = Director(UserspaceDataPlane(), now=clock, interval=0.2)
    loop = asyncio.get_running_loop()
    try:
        for s in servers:
            if udp:
                t, _ = await loop.create_datagram_endpoint(lambda s=s: _UdpEcho(s.name),
                                                           local_addr=(s.addr, s.port))
                s.udp = t  # type: ignore[assignment]
            else:
                s.server = await asyncio.start_server(s.handle, s.addr, s.port)
        await director.start()
        yield director, servers, clock
    finally:
        await director.stop()
        for s in servers:
            if s.server is not None:
                s.server.close()
                await s.server.wait_closed()
            if s.udp is not None:
                s.udp.close()


def key_of(director: Director, proto: Proto = Proto.TCP) -> ServiceKey:
    return next(k for k in director.table.services if k.proto is proto)


async def service(director: Director, port: int, *, scheduler: str = "rr",
                  weights: dict[str, int] | None = None, proto: Proto = Proto.TCP,
                  **kw: object) -> ServiceKey:
    key = ServiceKey(proto, VIP, port)
    await director.execute(Command(Op.ADD_SERVICE,
                                   service=ServiceSpec(key, scheduler=scheduler, **kw)))
    for addr in reversed(RS_ADDRS):  # the kernel's list puts the newest first: A, B, C
        w = (weights or {}).get(addr, 1)
        await director.execute(Command(Op.ADD_DEST, service=ServiceSpec(key),
                                       dest=DestSpec(addr, port, Forward.MASQ, weight=w)))
    return key


async def connect(port: int, client: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter,
                                                   str]:
    r, w = await asyncio.open_connection(VIP, port, local_addr=(client, 0))
    name = (await r.readline()).decode().strip()
    return r, w, name


async def one_exchange(port: int, client: str, payload: bytes = b"x" * 10) -> tuple[str, int]:
    """SINK: send payload, half-close, read the count. Returns (server name, bytes back)."""
    r, w, name = await connect(port, client)
    w.write(b"SINK\n" + payload)
    w.write_eof()
    answer = await r.read()
    w.close()
    assert int(answer) == len(payload)
    return name, len(name) + 1 + len(answer)


# -- tests -------------------------------------------------------------------------------------


def test_wrr_distribution_matches_the_scheduler_exactly() -> None:
    weights = {RS_ADDRS[0]: 4, RS_ADDRS[1]: 3, RS_ADDRS[2]: 2}

    async def main() -> None:
        async with lab() as (director, servers, _):
            port = servers[0].port
            await service(director, port, scheduler="wrr", weights=weights)
            got = "".join([(await one_exchange(port, f"127.5.1.{1 + i % 50}"))[0]
                           for i in range(45)])
            # the same scheduler fed the same list changes, picking 45 times
            peers = [Peer(a, host=a, port=port, weight=weights[a]) for a in RS_ADDRS]
            wrr = create("wrr", [])
            for p in reversed(peers):
                wrr.add_dest(p)  # type: ignore[attr-defined]
            ctx = PickContext(now=0.0, rng=director.rng)
            want = "".join(NAMES[wrr.pick(ctx).host] for _ in range(45))  # type: ignore[union-attr]
            assert got == want
            assert got[3:21] == "AABABCABC" * 2  # IPVS's period for weights 4, 3, 2
            assert [s.accepted for s in servers] == [20, 15, 10]

    run(main)


def test_persistence_keeps_a_client_and_expires() -> None:
    async def main() -> None:
        async with lab() as (director, servers, clock):
            port = servers[0].port
            await service(director, port, scheduler="rr", persistent=300)
            a = {(await one_exchange(port, "127.5.2.1"))[0] for _ in range(6)}
            b = {(await one_exchange(port, "127.5.2.2"))[0] for _ in range(6)}
            assert len(a) == 1 and len(b) == 1 and a != b
            rows = director.view(connections=True).connections
            templates = {(r.client[0], NAMES[r.dest[0]]) for r in rows if r.template}
            assert templates == {("127.5.2.1", *a), ("127.5.2.2", *b)}
            # past the template's timeout (and the entries' TIME_WAIT): all gone
            clock.offset += 301
            director.tick()
            assert [r for r in director.view(connections=True).connections if r.template] == []
            c = {(await one_exchange(port, "127.5.2.1"))[0] for _ in range(3)}
            assert len(c) == 1 and c != a  # scheduled afresh: rr's cursor had moved on

    run(main)


def test_netmask_groups_clients() -> None:
    async def main() -> None:
        async with lab() as (director, servers, _):
            port = servers[0].port
            await service(director, port, scheduler="rr", persistent=60,
                          netmask="255.255.255.0")
            names = {(await one_exchange(port, f"127.5.3.{i}"))[0] for i in range(1, 12)}
            assert len(names) == 1

    run(main)


def test_weight_zero_drains_and_existing_connection_continues() -> None:
    async def main() -> None:
        async with lab() as (director, servers, _):
            port = servers[0].port
            key = await service(director, port, scheduler="rr")
            r, w, held = await connect(port, "127.5.4.1")
            w.write(b"ECHO\nbefore")
            assert await r.readexactly(6) == b"before"
            addr = next(a for a, n in NAMES.items() if n == held)
            await director.execute(Command(Op.EDIT_DEST, service=ServiceSpec(key),
                                           dest=DestSpec(addr, port, Forward.MASQ, weight=0)))
            names = [(await one_exchange(port, f"127.5.4.{2 + i}"))[0] for i in range(12)]
            assert held not in names and set(names) == set("ABC") - {held}
            w.write(b"after")  # the quiesced server's connection goes on
            assert await r.readexactly(5) == b"after"
            d = next(d for d in director.view().services[0].dests if d.spec.addr == addr)
            assert (d.spec.weight, d.active) == (0, 1)
            w.write_eof()
            assert await r.read() == b""
            w.close()

    run(main)


def test_half_close_both_ways() -> None:
    async def main() -> None:
        async with lab() as (director, servers, _):
            port = servers[0].port
            await service(director, port, scheduler="rr")
            # the client half-closes: the server still answers after the client's FIN
            payload = b"z" * 300_000
            name, _ = await one_exchange(port, "127.5.5.1", payload)
            # the server half-closes first: the client still sends, the server still reads
            r, w, name = await connect(port, "127.5.5.2")
            w.write(b"FINFIRST\n")
            assert await r.readline() == b"bye\n"
            assert await r.read() == b""  # the server's FIN came through
            w.write(b"y" * 50_000)  # ... and our side is still open toward it
            w.write_eof()
            await w.drain()
            srv = next(s for s in servers if s.name == name)
            for _ in range(200):
                if srv.sunk:
                    break
                await asyncio.sleep(0.01)
            assert srv.sunk == [50_000]
            w.close()
            states = {c.state for c in director.view(connections=True).connections}
            assert states == {"TIME_WAIT"}  # both ended by FINs, as IPVS would list them

    run(main)


def test_client_speaks_first() -> None:
    """Bytes and a FIN sent at once, before the director has connected to the real server,
    are kept and passed on (and counted after the handshake, as IPVS would see them)."""

    async def main() -> None:
        async with lab() as (director, servers, _):
            port = servers[0].port
            await service(director, port, scheduler="rr")
            for i in range(6):
                r, w = await asyncio.open_connection(VIP, port, local_addr=(f"127.5.10.{i+1}",
                                                                            0))
                payload = bytes(range(256)) * (i * 40 + 1)
                w.write(b"SINK\n" + payload)
                if i % 2:
                    w.write_eof()  # the FIN too before anything came back
                else:
                    await w.drain()
                name = (await r.readline()).strip()
                if not i % 2:
                    w.write_eof()
                assert name in (b"A", b"B", b"C")
                assert int(await r.read()) == len(payload)
                w.close()
            (svc,) = director.view().services
            assert svc.stats.conns == 6
            assert svc.stats.inbytes == sum(5 + 256 * (i * 40 + 1) for i in range(6))

    run(main)


def test_dead_real_server_resets_the_client_and_the_director_goes_on() -> None:
    async def main() -> None:
        async with lab() as (director, servers, _):
            port = servers[0].port
            key = ServiceKey(Proto.TCP, VIP, port)
            await director.execute(Command(Op.ADD_SERVICE,
                                           service=ServiceSpec(key, scheduler="rr")))
            for addr in (RS_ADDRS[0], DEAD):  # list: DEAD, A
                await director.execute(Command(Op.ADD_DEST, service=ServiceSpec(key),
                                               dest=DestSpec(addr, port, Forward.MASQ)))
            dp = director.dataplane
            assert isinstance(dp, UserspaceDataPlane)
            outcomes = []
            for i in range(6):
                r, w = await asyncio.open_connection(VIP, port, local_addr=(f"127.5.6.{i+1}",
                                                                            0))
                try:
                    line = await r.readline()
                    outcomes.append(line.decode().strip() or "closed")
                except ConnectionResetError:
                    outcomes.append("reset")
                w.close()
            assert outcomes == ["reset", "A"] * 3
            assert dp.errors["connect"] == 3
            dead = next(d for d in director.view().services[0].dests if d.spec.addr == DEAD)
            assert (dead.active, dead.inactive, dead.stats.conns) == (0, 3, 3)  # in CLOSE

    run(main)


def test_udp_round_trip_and_expiry() -> None:
    async def main() -> None:
        async with lab(udp=True) as (director, servers, clock):
            port = servers[0].port
            await service(director, port, scheduler="rr", proto=Proto.UDP)
            loop = asyncio.get_running_loop()
            got: dict[str, list[bytes]] = {}
            sent = 0
            for i in range(3):
                client = f"127.5.7.{i + 1}"
                q: asyncio.Queue[bytes] = asyncio.Queue()

                class P(asyncio.DatagramProtocol):
                    def datagram_received(self, data: bytes, addr: tuple[str, int],
                                          q: asyncio.Queue[bytes] = q) -> None:
                        assert addr == (VIP, port)  # the answer comes from the VIP
                        q.put_nowait(data)

                t, _ = await loop.create_datagram_endpoint(P, local_addr=(client, 0),
                                                           remote_addr=(VIP, port))
                try:
                    for j in range(4):
                        msg = f"hello {i} {j}".encode()
                        t.sendto(msg)
                        sent += len(msg)
                        got.setdefault(client, []).append(await asyncio.wait_for(q.get(), 5))
                finally:
                    t.close()
            # each client stays on one real server; three clients spread over three
            per_client = {c: {m.split(b":")[0] for m in ms} for c, ms in got.items()}
            assert all(len(v) == 1 for v in per_client.values())
            assert set().union(*per_client.values()) == {b"A", b"B", b"C"}
            v = director.view(connections=True)
            assert {(c.proto, c.state) for c in v.connections} == {("UDP", "UDP")}
            assert len(v.connections) == 3
            (svc,) = v.services
            received = sum(len(m) for ms in got.values() for m in ms)
            assert (svc.stats.conns, svc.stats.inpkts, svc.stats.outpkts) == (3, 12, 12)
            assert (svc.stats.inbytes, svc.stats.outbytes) == (sent, received)
            assert [d.inactive for d in svc.dests] == [1, 1, 1]
            dp = director.dataplane
            assert isinstance(dp, UserspaceDataPlane) and len(dp.flows) == 3
            await director.execute(Command(Op.SET_TIMEOUTS, timeouts=Timeouts(0, 0, 30)))
            clock.offset += 301  # the entries were armed with 300 s
            director.tick()
            assert director.view(connections=True).connections == ()
            assert len(dp.flows) == 0 and [d.inactive for d in
                                           director.view().services[0].dests] == [0, 0, 0]

    run(main)


def test_view_counters_match_the_traffic() -> None:
    async def main() -> None:
        async with lab() as (director, servers, _):
            port = servers[0].port
            await service(director, port, scheduler="wlc")
            sent = back = 0
            per_name: dict[str, int] = {}
            for i in range(9):
                payload = bytes(1000 * (i + 1))
                name, nback = await one_exchange(port, f"127.5.8.{i + 1}", payload)
                sent += len(b"SINK\n") + len(payload)
                back += nback
                per_name[name] = per_name.get(name, 0) + 1
            (svc,) = director.view().services
            assert svc.stats.conns == 9
            assert (svc.stats.inbytes, svc.stats.outbytes) == (sent, back)
            assert 9 <= svc.stats.inpkts <= svc.stats.inbytes
            assert 9 <= svc.stats.outpkts <= svc.stats.outbytes
            for d in svc.dests:
                assert d.stats.conns == per_name.get(NAMES[d.spec.addr], 0)
                assert (d.active, d.inactive) == (0, d.stats.conns)  # all in TIME_WAIT
            assert sum(d.stats.inbytes for d in svc.dests) == sent
            assert sum(d.stats.outbytes for d in svc.dests) == back
            assert sorted(per_name.values()) == [3, 3, 3]  # wlc over equal servers
            await director.execute(Command(Op.ZERO))
            assert director.view().services[0].stats.conns == 0

    run(main)


def test_refusals() -> None:
    async def main() -> None:
        async with lab() as (director, servers, _):
            port = servers[0].port
            key = ServiceKey(Proto.TCP, VIP, port)
            await director.execute(Command(Op.ADD_SERVICE, service=ServiceSpec(key)))
            with pytest.raises(DirectorError) as e:
                await director.execute(Command(Op.ADD_DEST, service=ServiceSpec(key),
                                               dest=DestSpec(RS_ADDRS[0], port)))  # -g
            assert e.value.errno == errno.EOPNOTSUPP and "DR" in str(e.value)
            assert director.view().services[0].dests == ()
            with pytest.raises(DirectorError) as e:
                await director.execute(Command(Op.ADD_SERVICE, service=ServiceSpec(
                    ServiceKey(Proto.FWM, fwmark=1), persistent=60)))
            assert e.value.errno == errno.EOPNOTSUPP
            # an address this host does not have: the bind fails, the service is not kept
            other = ServiceKey(Proto.TCP, "198.18.0.1", port)
            with pytest.raises(DirectorError) as e:
                await director.execute(Command(Op.ADD_SERVICE, service=ServiceSpec(other)))
            assert e.value.errno == errno.EADDRNOTAVAIL
            assert [s.spec.key for s in director.view().services] == [key]
            with pytest.raises(DirectorError) as e:
                await director.execute(Command(Op.ADD_SERVICE, service=ServiceSpec(key)))
            assert e.value.errno == errno.EEXIST

    run(main)


def test_stop_removes_everything() -> None:
    async def main() -> None:
        async with lab() as (director, servers, _):
            port = servers[0].port
            await service(director, port)
            r, w, _name = await connect(port, "127.5.9.1")
            w.write(b"ECHO\n")
            await director.stop()
            with pytest.raises(ConnectionResetError):  # reset, not left hanging
                await r.read()
            w.close()
            assert director.view().services == ()
            with pytest.raises(OSError):
                await asyncio.open_connection(VIP, port)
            await director.start()  # lab() stops it again

    run(main)
