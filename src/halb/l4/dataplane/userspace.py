"""The user-space data plane: asyncio TCP and UDP forwarding for every virtual service, a full
proxy in the role of IPVS's NAT (-m) mode. No root needed.

TCP. Each service gets a listening socket on VIP:port (bound synchronously in `sync`, served by
`loop.create_server`). An accepted client is scheduled through the table with its real address
and port (persistence, thresholds, every scheduler exactly as in service.py), then connected to
the real server. Two Protocols relay the bytes as they come, with no per-connection Task once
connected (the connect itself is one short task): flow control through pause_writing /
resume_writing on each side, half-close both ways (an EOF on one side becomes write_eof(), i.e.
shutdown(SHUT_WR), on the other once its buffer is flushed), and resets passed on as resets
(SO_LINGER 0). Every socket event is fed to the table as the segments IPVS would have seen
(conntrack.PROXY_SEGMENTS), so states, active/inactive counts, timeouts and stats are live.
Each read() chunk counts as one packet and its length as bytes.

A real server that refuses, resets or does not answer: the client is reset, the error counted
(`errors`), the director keeps serving. No real server available: the client is reset.

UDP. Each service gets a bound datagram socket read with `add_reader`. A datagram is scheduled
through the table (`ServiceTable.datagram`); each entry owns a connected socket to its real
server whose replies go back to the client from VIP:port. The entry, and the socket, live `udp`
seconds after the last datagram (expiry runs in the director's tick).

Refused here, with a message: DR (-g) and TUN (-i) real servers (the proxy cannot keep the
client's packets intact: DR needs the kernel data plane), fwmark and port-zero services, SCTP.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections import Counter
from typing import ClassVar, cast

from halb.l4.conntrack import ProxyEvent
from halb.l4.dataplane.base import DataPlane, DataPlaneError
from halb.l4.model import DestSpec, Forward, Proto, ServiceKey, ServiceSpec
from halb.l4.service import Conn, ServiceTable, VirtualService

log = logging.getLogger("halb.l4.userspace")

HIGH_WATER = 256 * 1024  # bytes buffered toward one side before the other side stops reading
LOW_WATER = 64 * 1024
UDP_MAX = 65535
UDP_BURST = 64  # datagrams read per readiness callback
_LINGER_RST = struct.pack("ii", 1, 0)

EXACT = frozenset({"rr", "wrr", "lc", "wlc", "sed", "nq", "sh", "dh", "lblc", "lblcr", "mh",
                   "fo", "ovf", "twos"})


def _reset(transport: asyncio.BaseTransport | None) -> None:
    """Close with a RST (SO_LINGER 0), as a reset passed through a NAT would look."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        except OSError:
            pass
    transport.abort()  # type: ignore[attr-defined]


class _Client(asyncio.Protocol):
    """The client side of one proxied TCP connection (and the owner of its table entry)."""

    __slots__ = ("closed", "cp", "dp", "early", "eof_in", "eof_out", "key", "server",
                 "transport", "up_task")

    def __init__(self, dp: UserspaceDataPlane, key: ServiceKey) -> None:
        self.dp = dp
        self.key = key
        self.cp: Conn | None = None
        self.transport: asyncio.Transport | None = None
        self.server: _Server | None = None
        self.up_task: asyncio.Task[None] | None = None
        self.early: bytearray | None = None  # client bytes read before the server was up
        self.eof_in = False  # the client sent FIN
        self.eof_out = False  # the real server sent FIN
        self.closed = False

    # -- the client connection -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        try:
            self._accepted(self.transport)
        except Exception:  # never leave a half-made transport to the loop (uvloop hangs on it)
            log.exception("accepting a connection")
            self.dp.errors["internal"] += 1
            self._finish(reset=True)

    def _accepted(self, transport: asyncio.Transport) -> None:
        dp, table = self.dp, self.dp.table
        svc = table.services.get(self.key) if table is not None else None
        peer = transport.get_extra_info("peername")
        if svc is None or table is None or not peer:
            dp.errors["no-service"] += 1
            _reset(transport)
            return
        now = dp.now()
        cp = table.schedule(svc, (peer[0], peer[1]), now, dp.rng)
        if cp is None:
            dp.errors["no-destination"] += 1
            log.warning("%s: no destination available for %s:%s", _svc_name(svc), *peer[:2])
            _reset(transport)
            return
        self.cp = cp
        cp.owner = self
        table.event(cp, ProxyEvent.ACCEPT, now)
        dp.live.add(self)
        # the client is read on while the real server is connected: data_received keeps what
        # comes early and stops reading only past HIGH_WATER (no pause / resume round trip per
        # connection); the loop is the data plane's (asyncio.get_running_loop() costs a
        # getpid() system call on Python 3.11)
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        loop = dp.loop or asyncio.get_running_loop()
        self.up_task = loop.create_task(self._connect(loop, cp.dest.spec.addr, cp.dport))

    async def _connect(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        try:
            await loop.create_connection(lambda: _Server(self), host, port)
        except asyncio.CancelledError:
            return
        except OSError as e:
            self._refused(e)
        finally:
            self.up_task = None

    def _refused(self, e: OSError) -> None:
        cp, dp = self.cp, self.dp
        dp.errors["connect"] += 1
        if cp is not None:
            log.warning("real server %s:%s: %s", cp.dest.spec.addr, cp.dport,
                        e.strerror or e)
            if dp.table is not None:
                dp.table.event(cp, ProxyEvent.SERVER_RST, dp.now())
        self._finish(reset=True)

    def upstream_ready(self, server: _Server) -> None:
        self.server = server
        cp, dp = self.cp, self.dp
        if cp is None or self.closed or dp.table is None:
            _reset(server.transport)
            return
        now = dp.now()
        table = dp.table
        table.event(cp, ProxyEvent.CONNECTED, now)
        st = server.transport
        assert st is not None
        # what the client sent meanwhile reaches the table as IPVS would have seen it: after
        # the handshake with the real server
        early = self.early
        if early:
            self.early = None
            st.write(early)
            table.inbound(cp, len(early), now)
            if len(early) > HIGH_WATER and self.transport is not None and \
                    not self.transport.is_closing():
                self.transport.resume_reading()  # paused by data_received
        if self.eof_in:
            table.event(cp, ProxyEvent.CLIENT_FIN, now)
            st.write_eof()

    def data_received(self, data: bytes) -> None:
        server = self.server
        if server is None or server.transport is None:
            if self.early is None:
                self.early = bytearray()
            self.early += data
            if len(self.early) > HIGH_WATER and self.transport is not None:
                self.transport.pause_reading()
            return
        server.transport.write(data)
        cp, dp = self.cp, self.dp
        if cp is not None and dp.table is not None:
            dp.table.inbound(cp, len(data), dp.now())

    def eof_received(self) -> bool:
        self.eof_in = True
        if self.server is None:
            return True  # passed on once the real server is connected
        cp, dp = self.cp, self.dp
        if cp is not None and dp.table is not None:
            dp.table.event(cp, ProxyEvent.CLIENT_FIN, dp.now())
        if self.eof_out:  # both sides sent FIN: close() sends the server ours, after what is
            self._finish(reset=False)  # buffered (no shutdown() before it: one call less)
            return True
        server = self.server
        if server is not None and server.transport is not None and \
                not server.transport.is_closing():
            server.transport.write_eof()
        return True  # keep our write half open for the server's answer

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        cp, dp = self.cp, self.dp
        if cp is not None and dp.table is not None:
            dp.table.event(cp, ProxyEvent.CLIENT_RST, dp.now())
        self._finish(reset=True)

    # flow control: the client cannot take more, stop reading the server
    def pause_writing(self) -> None:
        if self.server is not None and self.server.transport is not None:
            self.server.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.server is not None and self.server.transport is not None and \
                not self.server.transport.is_closing():
            self.server.transport.resume_reading()

    # -- the end -------------------------------------------------------------------------------

    def expired(self, conn: Conn) -> None:
        """The entry timed out or its real server was deleted: reset both sides."""
        self.dp.errors["expired"] += 1
        self._finish(reset=True)

    def _finish(self, *, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.dp.live.discard(self)
        if self.cp is not None:
            self.cp.owner = None
        if self.up_task is not None:
            self.up_task.cancel()
        server_t = self.server.transport if self.server is not None else None
        if reset:
            _reset(self.transport)
            _reset(server_t)
        else:
            if self.transport is not None:
                self.transport.close()  # flushes what is buffered first
            if server_t is not None:
                server_t.close()


class _Server(asyncio.Protocol):
    """The real-server side of one proxied TCP connection."""

    __slots__ = ("client", "transport")

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        self.client.upstream_ready(self)

    def data_received(self, data: bytes) -> None:
        c = self.client
        t = c.transport
        if t is None or c.closed:
            return
        t.write(data)
        cp, dp = c.cp, c.dp
        if cp is not None and dp.table is not None:
            dp.table.outbound(cp, len(data), dp.now())

    def eof_received(self) -> bool:
        c = self.client
        c.eof_out = True
        cp, dp = c.cp, c.dp
        if cp is not None and dp.table is not None and not c.closed:
            dp.table.event(cp, ProxyEvent.SERVER_FIN, dp.now())
        if c.eof_in:  # the client's FIN came first: close() sends it ours after the buffer
            c._finish(reset=False)
            return True
        if c.transport is not None and not c.transport.is_closing():
            c.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        c = self.client
        if c.closed:
            return
        cp, dp = c.cp, c.dp
        dp.errors["server-reset"] += 1
        if cp is not None and dp.table is not None:
            dp.table.event(cp, ProxyEvent.SERVER_RST, dp.now())
        c._finish(reset=True)

    def pause_writing(self) -> None:
        t = self.client.transport
        if t is not None:
            t.pause_reading()

    def resume_writing(self) -> None:
        t = self.client.transport
        if t is not None and not t.is_closing():
            t.resume_reading()


class _UdpFlow:
    """One UDP entry's socket toward its real server; replies go back from VIP:port."""

    __slots__ = ("client", "cp", "dp", "front", "sock")

    def __init__(self, dp: UserspaceDataPlane, front: _UdpFront, cp: Conn) -> None:
        self.dp = dp
        self.front = front
        self.cp = cp
        self.client = cp.client
        family = socket.AF_INET6 if ":" in cp.dest.spec.addr else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect((cp.dest.spec.addr, cp.dport))
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)
        dp.flows.add(self)

    def send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            self.dp.errors["udp-drop"] += 1
        except OSError:  # ECONNREFUSED from an earlier ICMP port unreachable
            self.dp.errors["udp-refused"] += 1

    def _readable(self) -> None:
        dp = self.dp
        for _ in range(UDP_BURST):
            try:
                data = self.sock.recv(UDP_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                dp.errors["udp-refused"] += 1
                return
            if dp.table is not None and self.cp.owner is self:
                dp.table.outbound(self.cp, len(data), dp.now())
            self.front.reply(data, self.client)

    def expired(self, conn: Conn) -> None:
        self.close()

    def close(self) -> None:
        if self.sock.fileno() < 0:
            return
        self.dp.flows.discard(self)
        try:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        except RuntimeError:  # no running loop (shutdown)
            pass
        self.sock.close()


class _UdpFront:
    """A UDP service's socket on VIP:port."""

    __slots__ = ("dp", "key", "sock")

    def __init__(self, dp: UserspaceDataPlane, key: ServiceKey, sock: socket.socket) -> None:
        self.dp = dp
        self.key = key
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        dp = self.dp
        table = dp.table
        for _ in range(UDP_BURST):
            try:
                data, addr = self.sock.recvfrom(UDP_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            svc = table.services.get(self.key) if table is not None else None
            if svc is None or table is None:
                return
            cp = table.datagram(svc, (addr[0], addr[1]), len(data), dp.now(), dp.rng)
            if cp is None:
                dp.errors["no-destination"] += 1
                continue
            flow = cp.owner
            if not isinstance(flow, _UdpFlow):
                try:
                    flow = _UdpFlow(dp, self, cp)
                except OSError as e:
                    dp.errors["udp-refused"] += 1
                    log.warning("real server %s:%s: %s", cp.dest.spec.addr, cp.dport, e)
                    continue
                cp.owner = flow
            flow.send(data)

    def reply(self, data: bytes, client: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, client)
        except OSError:
            self.dp.errors["udp-drop"] += 1

    def close(self) -> None:
        if self.sock.fileno() < 0:
            return
        try:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        except RuntimeError:
            pass
        self.sock.close()


class _TcpListener:
    __slots__ = ("server", "sock", "task")

    def __init__(self, dp: UserspaceDataPlane, key: ServiceKey, sock: socket.socket) -> None:
        self.sock = sock
        self.server: asyncio.Server | None = None
        loop = asyncio.get_running_loop()
        self.task: asyncio.Task[None] | None = loop.create_task(self._serve(dp, key))

    async def _serve(self, dp: UserspaceDataPlane, key: ServiceKey) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(lambda: _Client(dp, key), sock=self.sock,
                                                   backlog=1024)
        finally:
            self.task = None

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.server is not None:
            self.server.close()
        else:
            self.sock.close()


class UserspaceDataPlane(DataPlane):
    """Forwarding in user space: one listener per service, the table kept live."""

    name: ClassVar[str] = "userspace"
    exact: ClassVar[frozenset[str]] = EXACT

    def __init__(self) -> None:
        self.table: ServiceTable | None = None
        self.tcp: dict[ServiceKey, _TcpListener] = {}
        self.udp: dict[ServiceKey, _UdpFront] = {}
        self.live: set[_Client] = set()
        self.flows: set[_UdpFlow] = set()
        self.errors: Counter[str] = Counter()
        self.loop: asyncio.AbstractEventLoop | None = None

    def unsupported(self, spec: ServiceSpec, dest: DestSpec | None = None) -> str | None:
        key = spec.key
        if key.proto is Proto.FWM:
            return ("fwmark services need the kernel data plane (--dataplane nftables); "
                    "the user-space data plane listens on an address and port")
        if key.proto is Proto.SCTP:
            return "the user-space data plane forwards TCP and UDP only"
        if key.port == 0:
            return ("a port-zero service needs the kernel data plane (--dataplane nftables); "
                    "the user-space data plane listens on one port")
        if dest is not None and dest.forward in (Forward.ROUTE, Forward.TUNNEL):
            how = "-g (DR)" if dest.forward is Forward.ROUTE else "-i (TUN)"
            return (f"{how} is not possible in the user-space data plane, which forwards as a "
                    f"proxy in NAT mode: use -m, or DR with --dataplane nftables")
        return None

    async def start(self, table: ServiceTable) -> None:
        self.table = table
        self.sync(table)

    def sync(self, table: ServiceTable) -> None:
        self.table = table
        self.loop = asyncio.get_running_loop()
        want = {k: s for k, s in table.services.items() if self.unsupported(s.spec) is None}
        for key in [k for k in self.tcp if k not in want]:
            self.tcp.pop(key).close()
        for key in [k for k in self.udp if k not in want]:
            self.udp.pop(key).close()
        for key, svc in want.items():
            if key in self.tcp or key in self.udp:
                continue
            try:
                sock = _bound(key)
            except OSError as e:
                err = DataPlaneError(f"{_svc_name(svc)}: cannot bind: {e.strerror or e}")
                err.errno = e.errno or errno.EADDRNOTAVAIL  # type: ignore[attr-defined]
                raise err from e
            if key.proto is Proto.TCP:
                self.tcp[key] = _TcpListener(self, key, sock)
            else:
                self.udp[key] = _UdpFront(self, key, sock)

    async def stop(self) -> None:
        for listener in self.tcp.values():
            listener.close()
        for front in self.udp.values():
            front.close()
        self.tcp.clear()
        self.udp.clear()
        for client in list(self.live):
            client._finish(reset=True)
        for flow in list(self.flows):
            flow.close()
        await asyncio.sleep(0)  # let the transports run their close callbacks


def _bound(key: ServiceKey) -> socket.socket:
    family = socket.AF_INET6 if ":" in key.addr else socket.AF_INET
    kind = socket.SOCK_STREAM if key.proto is Proto.TCP else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((key.addr, key.port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _svc_name(svc: VirtualService) -> str:
    k = svc.spec.key
    return f"{k.proto.value} {k.addr}:{k.port}"
