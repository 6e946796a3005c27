"""The director's table (PURE): virtual services, their real servers, persistence templates and
the connection table, with IPVS's semantics (reference l4-ipvs.md §2) and ipvsadm's commands.

* A real server wraps a balancing `Peer`: the scheduler reads `peer.weight`, `peer.active`,
  `peer.inactive` and `peer.overloaded`. Weight 0 quiesces it (no scheduler picks it; its
  connections go on). The -x/-y thresholds set and clear the overload flag when connections are
  bound and unbound, as ip_vs_bind_dest / ip_vs_unbind_dest do (§2.6); an edit clears it when
  the new upper threshold is 0 or higher than the old one (__ip_vs_update_dest).
* The real servers of a service are kept in the kernel's list order: `list_add_rcu` puts a new
  one at the head, so the newest comes first. Schedulers see the peers in that order (ties keep
  the earlier one, wrr scans from the head). An IPVS scheduler (balancing/ipvs_common) is told
  of each change through its kernel hooks (`add_dest`, `del_dest`, `edit_dest`), so it keeps
  its state as the kernel does (rr's cursor, mh's last_weight); another balancer (the nginx
  family, accepted when it needs no HTTP key) is built anew on add and delete.
* Persistence (§2.1, ip_vs_sched_persist): the template is keyed by <proto, client & netmask,
  vaddr, vport> (vport 0 for FTP and port-zero services; <IP, snet, fwmark, 0> for fwmark
  services), lives `-p` seconds from its last use, stays alive while it controls connections
  (its timer is re-armed, as ip_vs_conn_expire does), and is dropped when its real server is
  gone (or quiesced, with `expire_quiescent_template`, default off as in the kernel).
* Connections: TCP entries follow l4.conntrack's state table and timeouts; ESTABLISHED counts
  as active, every other state as inactive (a new entry starts inactive). UDP entries live
  `udp` seconds from the last datagram and count as inactive (ip_vs_proto_udp never changes
  them). An entry outlives its sockets until its state times out, as in IPVS.
* Stats: conns when an entry is scheduled; packets and bytes per direction (the user-space data
  plane counts each read() chunk as one packet and its length as bytes). Rates: l4.conntrack's
  copy of ip_vs_est.c, stepped every 2 s by `tick`.
* Real servers deleted (-d, -D, -C) take their entries with them and the data plane closes
  their connections: the behaviour of `expire_nodest_conn=1` (a proxy cannot silently drop).

Everything takes `now` (seconds, monotonic) and, when it schedules, `rng`.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from halb.balancing.base import (
    REGISTRY,
    Balancer,
    ConfigurationError,
    Needs,
    Peer,
    PickContext,
    create,
)
from halb.l4.conntrack import (
    EST_INTERVAL,
    PROXY_SEGMENTS,
    Counters,
    Direction,
    Flag,
    ProxyEvent,
    TcpState,
    TimeoutTable,
    next_state,
)
from halb.l4.model import (
    MAX_TIMEOUT,
    Command,
    ConnView,
    DestSpec,
    DestView,
    Op,
    Proto,
    ServiceKey,
    ServiceSpec,
    ServiceView,
    Stats,
    TableView,
    Timeouts,
)

if TYPE_CHECKING:
    from halb.l4.dataplane.base import Feedback

FTPPORT = 21
UDP_STATE = "UDP"


class DirectorError(Exception):
    """A command the table refuses, with the errno the kernel would return."""

    def __init__(self, code: int, message: str = "") -> None:
        self.errno = code
        super().__init__(message or os.strerror(code))


class ConnOwner(Protocol):
    """What a data plane hangs on an entry it carries: told when the entry goes away
    (timed out, or its real server deleted) so that it closes the sockets."""

    def expired(self, conn: Conn) -> None: ...


class RealServer:
    __slots__ = ("available", "counters", "peer", "persist", "service", "spec")

    def __init__(self, spec: DestSpec, service: VirtualService) -> None:
        self.spec = spec
        self.service = service
        self.peer = Peer(name=_hostport(spec.addr, spec.port), host=spec.addr, port=spec.port,
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
    __slots__ = ("_by_peer", "balancer", "counters", "dests", "mask", "spec")

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.dests: list[RealServer] = []  # kernel order: the newest first
        self.counters = Counters()
        self.mask = _netmask(spec)
        self._by_peer: dict[int, RealServer] = {}
        self.balancer: Balancer = _balancer(spec, [])

    @property
    def key(self) -> ServiceKey:
        return self.spec.key

    def find(self, addr: str, port: int) -> RealServer | None:
        for d in self.dests:
            if d.spec.addr == addr and d.spec.port == port:
                return d
        return None

    def rebuild(self) -> None:
        self.balancer = _balancer(self.spec, [d.peer for d in self.dests])
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

    __slots__ = ("active", "client", "control", "dest", "dport", "expires", "n_control",
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
        self.state: TcpState | None = TcpState.NONE if proto is Proto.TCP else None
        self.timeout = 0.0
        self.expires = 0.0
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


class ServiceTable:
    """The virtual services and the connection table of one director."""

    def __init__(self, *, expire_quiescent_template: bool = False, size: int = 4096) -> None:
        self.services: dict[ServiceKey, VirtualService] = {}
        self.timeouts = TimeoutTable()
        self.expire_quiescent_template = expire_quiescent_template
        self.size = size
        self.entries: dict[Conn, None] = {}  # every entry and template, in creation order
        self._conns: dict[tuple[object, ...], Conn] = {}  # <proto, caddr, cport, vaddr, vport>
        self._templates: dict[tuple[object, ...], Conn] = {}
        self._next_est: float | None = None
        self.kernel_connections: tuple[ConnView, ...] | None = None

    # -- commands (ipvsadm semantics, do_ip_vs_set_ctl) ---------------------------------------

    def apply(self, cmd: Command, now: float) -> None:
        """Execute one ipvsadm command; raises DirectorError(errno) as the kernel would."""
        op = cmd.op
        if op is Op.LIST:
            return
        if op is Op.CLEAR:
            for svc in list(self.services.values()):
                self._del_service(svc)
            return
        if op is Op.SET_TIMEOUTS:
            t = cmd.timeouts or Timeouts(0, 0, 0)
            for v in (t.tcp, t.tcpfin, t.udp):
                if not 0 <= v <= MAX_TIMEOUT:
                    raise DirectorError(errno.EINVAL, f"timeout {v} out of range")
            self.timeouts.set(t)
            return
        if op is Op.ZERO and cmd.service is None:
            for svc in self.services.values():
                _zero(svc)
            return
        if cmd.service is None:
            raise DirectorError(errno.EINVAL, f"{op.value} needs a virtual service")
        spec = cmd.service
        svc = self.services.get(spec.key)
        if op is Op.ADD_SERVICE:
            if svc is not None:
                raise DirectorError(errno.EEXIST, "Service already exists")
            self._check_service(spec)
            self.services[spec.key] = VirtualService(spec)
            return
        if svc is None:
            raise DirectorError(errno.ESRCH, "No such service")
        if op is Op.EDIT_SERVICE:
            self._check_service(spec)
            old = svc.spec
            svc.spec = spec
            svc.mask = _netmask(spec)
            if spec.scheduler != old.scheduler or spec.sched_flags != old.sched_flags:
                svc.rebuild()
        elif op is Op.DEL_SERVICE:
            self._del_service(svc)
        elif op is Op.ZERO:
            _zero(svc)
        elif op in (Op.ADD_DEST, Op.EDIT_DEST, Op.DEL_DEST):
            if cmd.dest is None:
                raise DirectorError(errno.EINVAL, f"{op.value} needs a real server")
            self._dest_command(svc, op, cmd.dest)
        else:  # pragma: no cover - every Op is handled above
            raise DirectorError(errno.EINVAL, f"unknown command {op}")

    def _check_service(self, spec: ServiceSpec) -> None:
        key = spec.key
        if key.proto is not Proto.FWM and key.port == 0 and not spec.persistent:
            raise DirectorError(errno.EINVAL, "Zero port specified for non-persistent service")
        if not 0 <= spec.persistent <= MAX_TIMEOUT:
            raise DirectorError(errno.EINVAL, "persistence timeout out of range")
        if spec.pe:
            raise DirectorError(errno.ENOENT, f"persistence engine {spec.pe} not found")
        cls = REGISTRY.get(spec.scheduler)  # importing halb.balancing registered them all
        if cls is None or cls.needs & (Needs.KEY | Needs.TIMING):
            raise DirectorError(errno.ENOENT, f"Scheduler module ip_vs_{spec.scheduler} not found")
        _netmask(spec)  # raises EINVAL
        _balancer(spec, [])  # the scheduler accepts its flags

    def _dest_command(self, svc: VirtualService, op: Op, spec: DestSpec) -> None:
        if op is not Op.DEL_DEST:
            if spec.weight < 0 or spec.weight > 65535:
                raise DirectorError(errno.ERANGE, "server weight out of range")
            if spec.l_threshold > spec.u_threshold:
                raise DirectorError(errno.ERANGE,
                                    "lower threshold is higher than upper threshold")
            if spec.tun_type == "gue" and spec.tun_port == 0:
                raise DirectorError(errno.EINVAL, "tunnel port is zero")
        dest = svc.find(spec.addr, spec.port)
        if op is Op.ADD_DEST:
            if dest is not None:
                raise DirectorError(errno.EEXIST, "Destination already exists")
            dest = RealServer(spec, svc)
            svc.dests.insert(0, dest)
            svc.added(dest)
            return
        if dest is None:
            raise DirectorError(errno.ENOENT, "No such destination")
        if op is Op.EDIT_DEST:
            old = dest.spec
            dest.spec = spec
            if spec.u_threshold == 0 or spec.u_threshold > old.u_threshold:
                dest.peer.overloaded = False
            if spec.weight != dest.peer.weight:
                svc.balancer.weight_changed(dest.peer, spec.weight)
            return
        svc.dests.remove(dest)
        svc.removed(dest)
        self._drop_dest(dest)

    def _del_service(self, svc: VirtualService) -> None:
        del self.services[svc.key]
        for d in svc.dests:
            self._drop_dest(d)
        svc.dests.clear()

    def _drop_dest(self, dest: RealServer) -> None:
        """The real server left its service: its entries and templates go, and the data plane
        closes what it carries for them."""
        dest.available = False
        gone = [c for c in self.entries if c.dest is dest]
        for c in sorted(gone, key=lambda c: c.template):  # entries before their templates
            self._remove(c)
            if c.owner is not None:
                c.owner.expired(c)

    # -- scheduling (ip_vs_schedule, ip_vs_sched_persist) -------------------------------------

    def find(self, proto: Proto, vaddr: str, vport: int) -> VirtualService | None:
        return self.services.get(ServiceKey(proto, vaddr, vport))

    def schedule(self, svc: VirtualService, client: tuple[str, int], now: float,
                 rng: random.Random, *, vaddr: str | None = None,
                 vport: int | None = None) -> Conn | None:
        """A new entry for a connection (or first datagram) from `client` to the service, or
        None when no real server is available ("no destination available")."""
        key = svc.spec.key
        vaddr = key.addr if vaddr is None else vaddr
        vport = key.port if vport is None else vport
        proto = Proto.TCP if key.proto is Proto.FWM else key.proto
        old = self._conns.get((proto, client[0], client[1], vaddr, vport))
        if old is not None:  # the client reuses the tuple: conn_reuse_mode drops the old entry
            self._remove(old)
            if old.owner is not None:
                old.owner.expired(old)
        ct: Conn | None = None
        if svc.spec.persistent:
            ct = self._persist(svc, client, vaddr, vport, now, rng)
            if ct is None:
                return None
            dest = ct.dest
        else:
            picked = svc.pick(self._ctx(client, vaddr, now, rng))
            if picked is None:
                return None
            dest = picked
        dport = dest.spec.port or vport
        cp = Conn(proto, client, vaddr, vport, dest, dport)
        if proto is Proto.UDP:
            cp.state = None
            cp.timeout = self.timeouts.udp
        else:
            cp.timeout = self.timeouts.tcp[TcpState.NONE]
        cp.expires = now + cp.timeout
        self._bind(cp)
        if ct is not None:
            cp.control = ct
            ct.n_control += 1
        if not (svc.spec.ops and proto is Proto.UDP):  # one-packet entries are not hashed
            self._conns[(proto, client[0], client[1], vaddr, vport)] = cp
        dest.counters.conns += 1
        svc.counters.conns += 1
        return cp

    def _ctx(self, client: tuple[str, int], vaddr: str, now: float,
             rng: random.Random) -> PickContext:
        return PickContext(now=now, rng=rng, client=_packed(client[0]), port=client[1],
                           daddr=_packed(vaddr))

    def _persist(self, svc: VirtualService, client: tuple[str, int], vaddr: str, vport: int,
                 now: float, rng: random.Random) -> Conn | None:
        key = svc.spec.key
        snet = _snet(client[0], svc.mask)
        if key.proto is Proto.FWM:
            tkey: tuple[object, ...] = ("IP", snet, f"fwmark:{key.fwmark}", 0)
            tvport, zero_dport = 0, True
        elif key.port == 0 or key.port == FTPPORT:
            tkey = (key.proto, snet, vaddr, 0)
            tvport, zero_dport = 0, True
        else:
            tkey = (key.proto, snet, vaddr, vport)
            tvport, zero_dport = vport, False
        ct = self._templates.get(tkey)
        if ct is not None and self._template_valid(ct):
            ct.expires = now + ct.timeout  # ip_vs_conn_put(ct) re-arms its timer
            return ct
        if ct is not None:  # invalidated: no longer found, lives on while it controls
            del self._templates[tkey]
            ct.tkey = None
        dest = svc.pick(self._ctx(client, vaddr, now, rng))
        if dest is None:
            return None
        tproto = Proto.FWM if key.proto is Proto.FWM else key.proto
        ct = Conn(tproto, (snet, 0), vaddr, tvport, dest, 0 if zero_dport else dest.spec.port,
                  template=True)
        ct.timeout = svc.spec.persistent
        ct.expires = now + ct.timeout
        ct.tkey = tkey
        self._templates[tkey] = ct
        self._bind(ct)
        return ct

    def _template_valid(self, ct: Conn) -> bool:
        """ip_vs_check_template()."""
        d = ct.dest
        return d.available and not (self.expire_quiescent_template and d.peer.weight == 0)

    def lookup(self, proto: Proto, client: tuple[str, int], vaddr: str,
               vport: int) -> Conn | None:
        """The live entry of a flow (UDP: the datagrams after the first)."""
        return self._conns.get((proto, client[0], client[1], vaddr, vport))

    def datagram(self, svc: VirtualService, client: tuple[str, int], nbytes: int, now: float,
                 rng: random.Random) -> Conn | None:
        """A datagram from a UDP client: its entry (scheduled when new), counted and refreshed.
        With -o (one-packet scheduling) every datagram is scheduled and its entry expires at
        once."""
        key = svc.spec.key
        cp = None if svc.spec.ops else self.lookup(Proto.UDP, client, key.addr, key.port)
        if cp is None:
            cp = self.schedule(svc, client, now, rng)
            if cp is None:
                return None
        self.inbound(cp, nbytes, now)
        if svc.spec.ops:
            cp.expires = now
        return cp

    # -- traffic on an entry ------------------------------------------------------------------

    def event(self, cp: Conn, ev: ProxyEvent, now: float) -> None:
        """A full proxy's socket event, as the TCP segments IPVS would have seen (conntrack)."""
        for direction, flag in PROXY_SEGMENTS[ev]:
            self.segment(cp, direction, flag, now)

    def segment(self, cp: Conn, direction: Direction, flag: Flag, now: float) -> None:
        """set_tcp_state(): move the entry, re-read its timeout, move it between the active
        and inactive counts, re-arm its timer."""
        if cp.state is None:  # UDP: every packet re-arms the udp timeout
            cp.timeout = self.timeouts.udp
            cp.expires = now + cp.timeout
            return
        new = next_state(cp.state, direction, flag)
        cp.timeout = self.timeouts.tcp[new]
        if new is not cp.state:
            peer = cp.dest.peer
            if cp.active and new is not TcpState.ESTABLISHED:
                peer.active -= 1
                peer.inactive += 1
                cp.active = False
            elif not cp.active and new is TcpState.ESTABLISHED:
                peer.inactive -= 1
                peer.active += 1
                cp.active = True
            cp.state = new
        cp.expires = now + cp.timeout

    def inbound(self, cp: Conn, nbytes: int, now: float) -> None:
        """Client → real server: one packet of `nbytes` (a read() chunk in user space)."""
        c = cp.dest.counters
        c.inpkts += 1
        c.inbytes += nbytes
        c = cp.service.counters
        c.inpkts += 1
        c.inbytes += nbytes
        self.segment(cp, Direction.INPUT, Flag.ACK, now)

    def outbound(self, cp: Conn, nbytes: int, now: float) -> None:
        """Real server → client."""
        c = cp.dest.counters
        c.outpkts += 1
        c.outbytes += nbytes
        c = cp.service.counters
        c.outpkts += 1
        c.outbytes += nbytes
        self.segment(cp, Direction.OUTPUT, Flag.ACK, now)

    # -- binding and expiry (ip_vs_bind_dest, ip_vs_unbind_dest, ip_vs_conn_expire) ------------

    def _bind(self, cp: Conn) -> None:
        d = cp.dest
        peer = d.peer
        if cp.template:
            d.persist += 1
        else:
            peer.inactive += 1  # IP_VS_CONN_F_INACTIVE until the state says ESTABLISHED
        if d.spec.u_threshold and peer.active + peer.inactive >= d.spec.u_threshold:
            peer.overloaded = True
        self.entries[cp] = None

    def _unbind(self, cp: Conn) -> None:
        d = cp.dest
        peer = d.peer
        if cp.template:
            d.persist -= 1
        elif cp.active:
            peer.active -= 1
        else:
            peer.inactive -= 1
        _update_overload_on_unbind(d)

    def _remove(self, cp: Conn) -> None:
        if cp not in self.entries:
            return
        del self.entries[cp]
        if cp.template:
            if cp.tkey is not None and self._templates.get(cp.tkey) is cp:
                del self._templates[cp.tkey]
        else:
            k = (cp.proto, cp.client[0], cp.client[1], cp.vaddr, cp.vport)
            if self._conns.get(k) is cp:
                del self._conns[k]
            if cp.control is not None:
                cp.control.n_control -= 1
                cp.control = None
        self._unbind(cp)

    def close(self, cp: Conn) -> None:
        """Drop an entry now (a data plane that cannot keep it, e.g. on shutdown)."""
        cp.owner = None
        self._remove(cp)

    def tick(self, now: float) -> list[Conn]:
        """Expire the entries whose timers ran out (in timer order; a template that still
        controls entries is re-armed) and run the estimator every 2 s. Returns what expired."""
        due = sorted((c for c in self.entries if c.expires <= now), key=lambda c: c.expires)
        gone = []
        for c in due:
            if c.template and c.n_control > 0:
                c.expires = now + c.timeout
                continue
            self._remove(c)
            gone.append(c)
            if c.owner is not None:
                c.owner.expired(c)
        if self._next_est is None:
            self._next_est = now + EST_INTERVAL
        steps = 0
        while now >= self._next_est:
            if steps < 3:  # a late timer: fire a few times, then resynchronise
                self.estimate()
                self._next_est += EST_INTERVAL
            else:
                self._next_est = now + EST_INTERVAL
            steps += 1
        return gone

    def estimate(self) -> None:
        """One estimator step over every service and real server (estimation_timer)."""
        for svc in self.services.values():
            svc.counters.estimate()
            for d in svc.dests:
                d.counters.estimate()

    def absorb(self, feedback: Feedback, now: float) -> None:
        """Fold a kernel data plane's reading into the table: its connection counts replace
        ours (and drive the thresholds), its counters add to ours."""
        for dc in feedback.dests:
            svc = self.services.get(dc.service)
            dest = svc.find(dc.addr, dc.port) if svc is not None else None
            if svc is None or dest is None:
                continue
            peer = dest.peer
            peer.active, peer.inactive = dc.active, dc.inactive
            u = dest.spec.u_threshold
            if u and peer.active + peer.inactive >= u:
                peer.overloaded = True
            else:
                _update_overload_on_unbind(dest)
            if dc.stats is not None:
                before = dest.counters.stats()
                dest.counters.absorb(dc.stats)
                after = dest.counters.stats()
                sc = svc.counters
                sc.conns += after.conns - before.conns
                sc.inpkts += after.inpkts - before.inpkts
                sc.outpkts += after.outpkts - before.outpkts
                sc.inbytes += after.inbytes - before.inbytes
                sc.outbytes += after.outbytes - before.outbytes
        self.kernel_connections = feedback.connections

    # -- the view ------------------------------------------------------------------------------

    def view(self, now: float = 0.0, *, connections: bool = False) -> TableView:
        services = tuple(
            ServiceView(
                spec=svc.spec,
                dests=tuple(DestView(spec=d.spec, active=d.peer.active,
                                     inactive=d.peer.inactive, persist=d.persist,
                                     stats=d.counters.stats(), rates=d.counters.rates(),
                                     overloaded=d.peer.overloaded) for d in svc.dests),
                stats=svc.counters.stats(), rates=svc.counters.rates())
            for svc in self.services.values())
        conns: tuple[ConnView, ...] = ()
        if connections:
            if self.kernel_connections is not None:
                conns = self.kernel_connections
            else:
                conns = tuple(_conn_view(c, now) for c in self.entries)
        return TableView(services=services, connections=conns, timeouts=self.timeouts.view(),
                         size=self.size)

    def dests(self) -> Iterable[RealServer]:
        for svc in self.services.values():
            yield from svc.dests


# -- helpers -----------------------------------------------------------------------------------


def _update_overload_on_unbind(d: RealServer) -> None:
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


def _zero(svc: VirtualService) -> None:
    svc.counters.zero()
    for d in svc.dests:
        d.counters.zero()


def _conn_view(c: Conn, now: float) -> ConnView:
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


def _hostport(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _packed(addr: str) -> bytes | None:
    try:
        return ipaddress.ip_address(addr).packed
    except ValueError:
        return None


def _netmask(spec: ServiceSpec) -> int:
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


def _snet(addr: str, plen: int) -> str:
    """The client address masked by the service's netmask (the template's client)."""
    ip = ipaddress.ip_address(addr)
    bits = ip.max_prefixlen
    plen = min(plen, bits)
    mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
    return str(ipaddress.ip_address(int(ip) & mask))


def _balancer(spec: ServiceSpec, peers: list[Peer]) -> Balancer:
    params = {"sched_flags": tuple(spec.sched_flags)} if spec.sched_flags else {}
    try:
        return create(spec.scheduler, peers, **params)
    except ConfigurationError as e:
        code = errno.ENOENT if "unknown" in str(e) else errno.EINVAL
        raise DirectorError(code, str(e)) from None
    except TypeError as e:  # the scheduler takes no such flags
        raise DirectorError(errno.EINVAL, f"{spec.scheduler}: {e}") from None


__all__ = ["Conn", "ConnOwner", "DirectorError", "RealServer", "ServiceTable", "Stats",
           "VirtualService"]
