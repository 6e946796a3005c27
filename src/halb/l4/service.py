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

Expiry runs from a heap of timers checked lazily (traffic only moves an entry's expiry; the
heap sees it when the old deadline comes up), so a tick costs what expires, not the table size.
The objects held (VirtualService, RealServer, Conn) live in l4/entries.py and are re-exported.

Everything takes `now` (seconds, monotonic) and, when it schedules, `rng`.
"""

from __future__ import annotations

import errno
import heapq
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from halb.balancing.base import REGISTRY, Needs, PickContext
from halb.l4.conntrack import (
    EST_INTERVAL,
    PROXY_SEGMENTS,
    TCP_STATES,
    Direction,
    Flag,
    ProxyEvent,
    TcpState,
    TimeoutTable,
)
from halb.l4.entries import (
    FTPPORT,
    NEVER,
    UDP_STATE,
    Conn,
    ConnOwner,
    DirectorError,
    RealServer,
    VirtualService,
    conn_view,
    make_balancer,
    netmask,
    packed,
    snet,
    update_overload_on_unbind,
    zero,
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

__all__ = ["FTPPORT", "UDP_STATE", "Conn", "ConnOwner", "DirectorError", "RealServer",
           "ServiceTable", "Stats", "VirtualService"]


# Hot-path constants. An Enum class attribute (Proto.TCP) costs a lookup through the enum's
# metaclass, and a tuple or list indexed by an IntEnum member takes the slow __index__ path
# (~0.3 us each, measured): the per-packet code below uses these plain values instead.
_TCP, _UDP, _FWM = Proto.TCP, Proto.UDP, Proto.FWM
_ES = TcpState.ESTABLISHED
_NONE = int(TcpState.NONE)
_IN, _OUT, _ACK = int(Direction.INPUT), int(Direction.OUTPUT), int(Flag.ACK)
# PROXY_SEGMENTS by event, with int directions and flags (found by the member or its int)
_SEGMENTS: dict[int, tuple[tuple[int, int], ...]] = {
    ev: tuple((int(d), int(f)) for d, f in PROXY_SEGMENTS[ev]) for ev in ProxyEvent}

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
        # timers: (deadline, seq, entry), checked lazily: an entry whose traffic pushed its
        # expiry later is re-queued when its old deadline comes up; one moved earlier (a state
        # with a shorter timeout) is queued again at once and the stale timer skipped
        self._timers: list[tuple[float, int, Conn]] = []
        self._seq = 0
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
                zero(svc)
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
            svc.mask = netmask(spec)
            if spec.scheduler != old.scheduler or spec.sched_flags != old.sched_flags:
                svc.rebuild()
        elif op is Op.DEL_SERVICE:
            self._del_service(svc)
        elif op is Op.ZERO:
            zero(svc)
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
        netmask(spec)  # raises EINVAL
        make_balancer(spec, [])  # the scheduler accepts its flags

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
        proto = _TCP if key.proto is _FWM else key.proto
        ckey = (proto._value_, client[0], client[1], vaddr, vport)
        old = self._conns.get(ckey)
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
            picked = svc.pick(self._ctx(svc, client, vaddr, now, rng))
            if picked is None:
                return None
            dest = picked
        dport = dest.spec.port or vport
        cp = Conn(proto, client, vaddr, vport, dest, dport)
        if proto is _UDP:
            cp.state = None
            cp.timeout = self.timeouts.udp
        else:
            cp.timeout = self.timeouts.tcp[_NONE]
        cp.expires = now + cp.timeout
        self._arm(cp)
        self._bind(cp)
        if ct is not None:
            cp.control = ct
            ct.n_control += 1
        if not (svc.spec.ops and proto is _UDP):  # one-packet entries are not hashed
            self._conns[ckey] = cp
        dest.counters.conns += 1
        svc.counters.conns += 1
        return cp

    def _ctx(self, svc: VirtualService, client: tuple[str, int], vaddr: str, now: float,
             rng: random.Random) -> PickContext:
        return PickContext(now=now, rng=rng, port=client[1],
                           client=packed(client[0]) if svc.needs_client else None,
                           daddr=packed(vaddr) if svc.needs_daddr else None)

    def _arm(self, cp: Conn) -> None:
        """Queue the entry's timer when its expiry moved earlier than the queued one."""
        if cp.expires < cp.due:
            cp.due = cp.expires
            self._seq += 1
            heapq.heappush(self._timers, (cp.expires, self._seq, cp))

    def _persist(self, svc: VirtualService, client: tuple[str, int], vaddr: str, vport: int,
                 now: float, rng: random.Random) -> Conn | None:
        key = svc.spec.key
        net = snet(client[0], svc.mask)
        if key.proto is Proto.FWM:
            tkey: tuple[object, ...] = ("IP", net, f"fwmark:{key.fwmark}", 0)
            tvport, zero_dport = 0, True
        elif key.port == 0 or key.port == FTPPORT:
            tkey = (key.proto, net, vaddr, 0)
            tvport, zero_dport = 0, True
        else:
            tkey = (key.proto, net, vaddr, vport)
            tvport, zero_dport = vport, False
        ct = self._templates.get(tkey)
        if ct is not None and self._template_valid(ct):
            ct.expires = now + ct.timeout  # ip_vs_conn_put(ct) re-arms its timer
            return ct
        if ct is not None:  # invalidated: no longer found, lives on while it controls
            del self._templates[tkey]
            ct.tkey = None
        dest = svc.pick(self._ctx(svc, client, vaddr, now, rng))
        if dest is None:
            return None
        tproto = Proto.FWM if key.proto is Proto.FWM else key.proto
        ct = Conn(tproto, (net, 0), vaddr, tvport, dest, 0 if zero_dport else dest.spec.port,
                  template=True)
        ct.timeout = svc.spec.persistent
        ct.expires = now + ct.timeout
        self._arm(ct)
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
        return self._conns.get((proto._value_, client[0], client[1], vaddr, vport))

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
            self._arm(cp)
        return cp

    # -- traffic on an entry ------------------------------------------------------------------

    def event(self, cp: Conn, ev: ProxyEvent, now: float) -> None:
        """A full proxy's socket event, as the TCP segments IPVS would have seen (conntrack)."""
        for direction, flag in _SEGMENTS[ev]:
            self.segment(cp, direction, flag, now)

    def segment(self, cp: Conn, direction: int, flag: int, now: float) -> None:
        """set_tcp_state(): move the entry, re-read its timeout, move it between the active
        and inactive counts, re-arm its timer. `direction` and `flag`: a conntrack.Direction
        and Flag, or their int values (faster)."""
        if cp.state is None:  # UDP: every packet re-arms the udp timeout
            cp.timeout = self.timeouts.udp
            cp.expires = now + cp.timeout
            if cp.expires < cp.due:
                self._arm(cp)
            return
        new = TCP_STATES[direction][flag][cp.state._value_]  # conntrack.next_state, inlined
        cp.timeout = self.timeouts.tcp[new._value_]
        if new is not cp.state:
            peer = cp.dest.peer
            if cp.active and new is not _ES:
                peer.active -= 1
                peer.inactive += 1
                cp.active = False
            elif not cp.active and new is _ES:
                peer.inactive -= 1
                peer.active += 1
                cp.active = True
            cp.state = new
        cp.expires = now + cp.timeout
        if cp.expires < cp.due:  # a shorter timeout: queue it (a later one is found lazily)
            self._arm(cp)

    def inbound(self, cp: Conn, nbytes: int, now: float) -> None:
        """Client → real server: one packet of `nbytes` (a read() chunk in user space)."""
        c = cp.dest.counters
        c.inpkts += 1
        c.inbytes += nbytes
        c = cp.service.counters
        c.inpkts += 1
        c.inbytes += nbytes
        self.segment(cp, _IN, _ACK, now)

    def outbound(self, cp: Conn, nbytes: int, now: float) -> None:
        """Real server → client."""
        c = cp.dest.counters
        c.outpkts += 1
        c.outbytes += nbytes
        c = cp.service.counters
        c.outpkts += 1
        c.outbytes += nbytes
        self.segment(cp, _OUT, _ACK, now)

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
        update_overload_on_unbind(d)

    def _remove(self, cp: Conn) -> None:
        if cp not in self.entries:
            return
        del self.entries[cp]
        cp.due = NEVER  # its queued timers are stale now
        if cp.template:
            if cp.tkey is not None and self._templates.get(cp.tkey) is cp:
                del self._templates[cp.tkey]
        else:
            k = (cp.proto._value_, cp.client[0], cp.client[1], cp.vaddr, cp.vport)
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
        gone = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, _, c = heapq.heappop(timers)
            if deadline != c.due:
                continue  # stale: re-queued earlier, or removed
            c.due = NEVER
            if c.expires > now:  # traffic re-armed it meanwhile
                self._arm(c)
                continue
            if c.template and c.n_control > 0:
                c.expires = now + c.timeout
                self._arm(c)
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
                update_overload_on_unbind(dest)
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
                conns = tuple(conn_view(c, now) for c in self.entries)
        return TableView(services=services, connections=conns, timeouts=self.timeouts.view(),
                         size=self.size)

    def dests(self) -> Iterable[RealServer]:
        for svc in self.services.values():
            yield from svc.dests
