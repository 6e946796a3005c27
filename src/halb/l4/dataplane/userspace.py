"""The user-space data plane: TCP and UDP forwarding for every virtual service on the event
loop, a full proxy in the role of IPVS's NAT (-m) mode. No root needed.

TCP (l4/dataplane/tcp_relay.py). Each service gets a listening socket on VIP:port (bound
synchronously in `sync`) in the plane's epoll set. An accepted client is scheduled through the
table with its real address and port (persistence, thresholds, every scheduler exactly as in
service.py), then connected to the real server with a non-blocking connect. One `Relay` per
connection moves the bytes as they come, with no Task, coroutine or transport: flow control
(HIGH_WATER / LOW_WATER bytes waiting for a side), half-close both ways (an EOF on one side
becomes shutdown(SHUT_WR) on the other once what waits for it is sent), and resets passed on as
resets (SO_LINGER 0). Every socket event is fed to the table as the segments IPVS would have
seen (conntrack.PROXY_SEGMENTS), so states, active/inactive counts, timeouts and stats are live.
Each recv() chunk counts as one packet and its length as bytes.

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
from collections import Counter
from typing import ClassVar

from halb.l4.dataplane.base import DataPlane, DataPlaneError
from halb.l4.dataplane.tcp_relay import Listener, Poller, Relay
from halb.l4.model import DestSpec, Forward, Proto, ServiceKey, ServiceSpec
from halb.l4.service import Conn, ServiceTable, VirtualService

log = logging.getLogger("halb.l4.userspace")

UDP_MAX = 65535
UDP_BURST = 64  # datagrams read per readiness callback

EXACT = frozenset({"rr", "wrr", "lc", "wlc", "sed", "nq", "sh", "dh", "lblc", "lblcr", "mh",
                   "fo", "ovf", "twos"})


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


class UserspaceDataPlane(DataPlane):
    """Forwarding in user space: one listener per service, the table kept live."""

    name: ClassVar[str] = "userspace"
    exact: ClassVar[frozenset[str]] = EXACT

    def __init__(self) -> None:
        self.table: ServiceTable | None = None
        self.tcp: dict[ServiceKey, Listener] = {}
        self.udp: dict[ServiceKey, _UdpFront] = {}
        self.live: set[Relay] = set()
        self.poller: Poller | None = None
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
            listener = self.tcp.get(key)
            if listener is not None:
                listener.svc = svc  # the service a connection is scheduled through
                continue
            if key in self.udp:
                continue
            try:
                sock = _bound(key)
            except OSError as e:
                err = DataPlaneError(f"{_svc_name(svc)}: cannot bind: {e.strerror or e}")
                err.errno = e.errno or errno.EADDRNOTAVAIL  # type: ignore[attr-defined]
                raise err from e
            if key.proto is Proto.TCP:
                if self.poller is None:
                    self.poller = Poller(self.loop, self.now)
                self.tcp[key] = listener = Listener(self, self.poller, key, sock)
                listener.svc = svc
            else:
                self.udp[key] = _UdpFront(self, key, sock)

    async def stop(self) -> None:
        for listener in self.tcp.values():
            listener.close()
        for front in self.udp.values():
            front.close()
        self.tcp.clear()
        self.udp.clear()
        for relay in list(self.live):
            relay._finish(reset=True)
        for flow in list(self.flows):
            flow.close()
        if self.poller is not None:
            self.poller.shutdown()
            self.poller = None
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
