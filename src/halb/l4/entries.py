"""The objects the director's table holds (PURE): virtual services, real servers, connection
entries and persistence templates, the error the table raises, and the helpers they share
(netmask, masked client, address bytes, building a scheduler). l4/service.py owns the
behaviour (commands, scheduling, states, expiry, stats) and re-exports these names.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from typing import Protocol

from halb.balancing.base import Balancer, ConfigurationError, Needs, Peer, PickContext, create
from halb.l4.conntrack import Counters, TcpState
from halb.l4.model import ConnView, DestSpec, Proto, ServiceKey, ServiceSpec

FTPPORT = 21
NEVER = float("inf")
UDP_STATE = "UDP"


class DirectorError(Exception):
    """A command the table refuses, with the errno the kernel would return."""

    def __init__(self, code: int, message: str = "") -> None:
        self.errno = code
        super().__init__(message or os.strerror(code))


_TCP, _TCP_NONE = Proto.TCP, TcpState.NONE  # plain globals: an Enum attribute is a slow lookup

class ConnOwner(Protocol):
    """What a data plane hangs on an entry it carries: told when the entry goes away
    (timed out, or its real server deleted) so that it closes the sockets."""

    def expired(self, conn: Conn) -> None: ...


class RealServer:
    __slots__ = ("available", "counters", "peer", "persist", "service", "spec")

    def __init__(self, spec: DestSpec, service: VirtualService) -> None:
        self.spec = spec
        self.service = service
        self.peer = Peer(name=hostport(spec.addr, spec.port), host=spec.addr, port=spec.port,
                         weight=spec.weight)
        self.available = True
        self.persist = 0  # PersistConn: templates bound here
        self.counters = Counters()

    @property
    def active(self) -> int:
        return self.peer.active

    @property
    def inactive(self) -> int:
        return self.peer.inactive

    @property
    def overloaded(self) -> bool:
        return self.peer.overloaded

    def __repr__(self) -> str:
        return f"RealServer({self.peer.name}, w={self.peer.weight})"


class VirtualService:
    __slots__ = ("_balancer", "_by_peer", "counters", "dests", "mask", "needs_client",
                 "needs_daddr", "spec")

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.dests: list[RealServer] = []  # kernel order: the newest first
        self.counters = Counters()
        self.mask = netmask(spec)
        self._by_peer: dict[int, RealServer] = {}
        self.balancer = make_balancer(spec, [])

    @property
    def balancer(self) -> Balancer:
        return self._balancer

    @balancer.setter
    def balancer(self, b: Balancer) -> None:
        self._balancer = b
        self.needs_client = bool(b.needs & Needs.CLIENT)  # what PickContext must carry
        self.needs_daddr = bool(b.needs & Needs.DESTINATION)

    @property
    def key(self) -> ServiceKey:
        return self.spec.key

    def find(self, addr: str, port: int) -> RealServer | None:
        for d in self.dests:
            if d.spec.addr == addr and d.spec.port == port:
                return d
        return None

    def rebuild(self) -> None:
        self.balancer = make_balancer(self.spec, [d.peer for d in self.dests])
        self._by_peer = {id(d.peer): d for d in self.dests}

    def added(self, dest: RealServer) -> None:
        """`dest` was linked at the head of self.dests."""
        self._by_peer[id(dest.peer)] = dest
        add = getattr(self.balancer, "add_dest", None)
        if add is not None:
            add(dest.peer)
        else:
            self.rebuild()

    def removed(self, dest: RealServer) -> None:
        self._by_peer.pop(id(dest.peer), None)
        remove = getattr(self.balancer, "del_dest", None)
        if remove is not None:
            remove(dest.peer)
        else:
            self.rebuild()

    def pick(self, ctx: PickContext) -> RealServer | None:
        peer = self.balancer.pick(ctx)
        return None if peer is None else self._by_peer.get(id(peer))

    def __repr__(self) -> str:
        return f"VirtualService({self.spec.key})"


class Conn:
    """A connection entry or a persistence template (ip_vs_conn)."""

    __slots__ = ("active", "client", "control", "dest", "dport", "due", "expires", "n_control",
                 "owner", "proto", "service", "state", "template", "timeout", "tkey", "vaddr",
                 "vport")

    def __init__(self, proto: Proto, client: tuple[str, int], vaddr: str, vport: int,
                 dest: RealServer, dport: int, *, template: bool = False) -> None:
        self.proto = proto
        self.client = client
        self.vaddr = vaddr
        self.vport = vport
        self.dest = dest
        self.dport = dport
        self.service = dest.service
        self.template = template
        self.state: TcpState | None = _TCP_NONE if proto is _TCP else None
        self.timeout = 0.0
        self.expires = 0.0
        self.due = NEVER  # the deadline of this entry's live timer in the table's heap
        self.active = False  # counted in ActiveConn (ESTABLISHED); else InActConn
        self.control: Conn | None = None  # the template this entry is bound to
        self.n_control = 0  # entries this template controls
        self.owner: ConnOwner | None = None
        self.tkey: tuple[object, ...] | None = None  # templates: the key they are found by

    @property
    def state_name(self) -> str:
        if self.template:
            return "NONE"
        return self.state.name if self.state is not None else UDP_STATE

    def __repr__(self) -> str:
        return (f"Conn({self.proto.value} {self.client} -> {self.vaddr}:{self.vport} -> "
                f"{self.dest.peer.name} {self.state_name}{' template' if self.template else ''})")


# -- helpers -----------------------------------------------------------------------------------


def update_overload_on_unbind(d: RealServer) -> None:
    peer = d.peer
    total = peer.active + peer.inactive
    lo, up = d.spec.l_threshold, d.spec.u_threshold
    if lo:
        if total < lo:
            peer.overloaded = False
    elif up:
        if total * 4 < up * 3:
            peer.overloaded = False
    else:
        peer.overloaded = False


def zero(svc: VirtualService) -> None:
    svc.counters.zero()
    for d in svc.dests:
        d.counters.zero()


def conn_view(c: Conn, now: float) -> ConnView:
    key = c.service.spec.key
    if c.template and c.proto is Proto.FWM:
        proto = "IP"
        virtual = (str(ipaddress.IPv4Address(key.fwmark & 0xFFFFFFFF)), 0)
    else:
        proto = c.proto.value
        virtual = (c.vaddr, c.vport)
    return ConnView(proto=proto, expires=max(0.0, c.expires - now), state=c.state_name,
                    client=c.client, virtual=virtual, dest=(c.dest.spec.addr, c.dport),
                    template=c.template)


def hostport(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def packed(addr: str) -> bytes | None:
    """The address as bytes (the schedulers hash them); dotted quads without ipaddress."""
    parts = addr.split(".")
    if len(parts) == 4:
        try:
            b = bytes(int(x) for x in parts)
        except ValueError:  # a part out of 0..255, or not a number
            b = b""
        if len(b) == 4 and all(x.isdigit() for x in parts):
            return b
    try:
        return ipaddress.ip_address(addr).packed
    except ValueError:
        return None


def netmask(spec: ServiceSpec) -> int:
    """The -M netmask as a prefix length (IPv4 dotted mask, or the IPv6 prefix as text)."""
    text = spec.netmask or ""
    v6 = spec.key.ipv6 or ":" in spec.key.addr
    try:
        if v6:
            plen = int(text) if text and "." not in text else 128
            if not 1 <= plen <= 128:
                raise ValueError(text)
            return plen
        if not text:
            return 32
        return ipaddress.IPv4Network(f"0.0.0.0/{text}").prefixlen
    except ValueError:
        raise DirectorError(errno.EINVAL, f"invalid netmask {text!r}") from None


def snet(addr: str, plen: int) -> str:
    """The client address masked by the service's netmask (the template's client)."""
    ip = ipaddress.ip_address(addr)
    bits = ip.max_prefixlen
    plen = min(plen, bits)
    mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
    return str(ipaddress.ip_address(int(ip) & mask))


def make_balancer(spec: ServiceSpec, peers: list[Peer]) -> Balancer:
    params = {"sched_flags": tuple(spec.sched_flags)} if spec.sched_flags else {}
    try:
        return create(spec.scheduler, peers, **params)
    except ConfigurationError as e:
        code = errno.ENOENT if "unknown" in str(e) else errno.EINVAL
        raise DirectorError(code, str(e)) from None
    except TypeError as e:  # the scheduler takes no such flags
        raise DirectorError(errno.EINVAL, f"{spec.scheduler}: {e}") from None
