"""One vrrp_instance at work, and vrrp_sync_group: the machine driven by real time and packets.

`Instance` owns a machine.Machine and everything around it for one vrrp_instance:

* inputs: adverts from the daemon's socket (after packet.check against this instance: version,
  auth, v2 interval, address list, check_unicast_src), one asyncio timer armed at the machine's
  `next_deadline` (re-armed after every input), tracker changes (priority.evaluate over its
  track_script / track_interface entries, its own interface unless dont_track_primary, and its
  sync group's trackers) turned into set_priority / fault;
* actions, in the order the machine gives them: SendAdvert goes out at once (to the multicast
  group, or to every unicast_peer with unicast_ttl); AddVips / DelVips / SendGratuitous run on an
  ordered per-instance queue (netlink and ARP never reorder: VIPs are set before the GARPs that
  announce them). The queue runs an operation at once when nothing is ahead of it: netlink
  requests are answered synchronously and a burst with vrrp_garp_interval 0 is a few sendto()
  calls, so a takeover's advert, VIPs and first gratuitous ARPs leave within the same loop
  step, as keepalived's do; only bursts spaced by an interval run on as a task. StateChanged
  runs the notify scripts and tells the sync group; Log lines are written as keepalived writes
  them ("(VI_1) Entering MASTER STATE").
* v3 over IPv4: adverts are sent with the checksum form configured (v3_checksum_as_v2) until a
  peer's advert shows another, which is then answered in the peer's form.
* At start the instance's VIPs are removed if present (a previous run may have left them), and
  on stop (SIGTERM, or removed by a reload) a MASTER sends priority 0 and removes them.

`SyncGroup` makes the members of a vrrp_sync_group move together as keepalived does: a member
in FAULT puts every member in FAULT (until no member's own trackers fault), a member leaving
MASTER takes the other MASTER members to BACKUP (machine.sync_backup); the group's notify
scripts run when all members reach a common state.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

from halb.config.keepalived_model import (
    GlobalDefs,
    TrackInterface,
    TrackScript,
    VirtualIp,
    VrrpInstance,
    VrrpSyncGroup,
)
from halb.vrrp import packet
from halb.vrrp.machine import (
    Action,
    AddVips,
    DelVips,
    Log,
    Machine,
    Params,
    SendAdvert,
    SendGratuitous,
    State,
    StateChanged,
)
from halb.vrrp.notify_args import Scripts, deleted_state
from halb.vrrp.priority import Tracker, evaluate
from halb.vrrp.socket import Received, interface_ipv4, interface_ipv6_link_local
from halb.vrrp.stats import InstanceStats, InstanceView, count_drop

if TYPE_CHECKING:
    from halb.vrrp.addresses import Announcer, Netlink
    from halb.vrrp.notify import Notifier
    from halb.vrrp.socket import VrrpSocket

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Op = Callable[[], Awaitable[None] | None]  # a queued operation: done, or still to await


@dataclass
class Host:
    """What the daemon gives every instance: the shared system handles and the log."""

    g: GlobalDefs
    netlink: Netlink
    notifier: Notifier
    log: Callable[[str], None]
    socket: Callable[[str, int], VrrpSocket]  # (interface, family) -> the shared socket
    announcer: Callable[[str], Announcer]
    script_ok: Callable[[str], bool]  # vrrp_script name -> OK (True for disabled scripts)
    link_ok: Callable[[str], bool]
    detail: bool = False
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_event_loop)


def params_of(conf: VrrpInstance, address: Address) -> Params:
    return Params(
        address=address, vrid=conf.virtual_router_id, version=conf.version,
        priority=conf.priority, advert_int_cs=conf.advert_int_cs,
        initial_master=conf.state == "MASTER", nopreempt=conf.nopreempt,
        preempt_delay=conf.preempt_delay, down_timer_adverts=conf.down_timer_adverts,
        lower_prio_no_advert=conf.lower_prio_no_advert,
        higher_prio_send_advert=conf.higher_prio_send_advert,
        garp_master_repeat=conf.garp_master_repeat, garp_master_delay=conf.garp_master_delay,
        garp_master_refresh=conf.garp_master_refresh,
        garp_master_refresh_repeat=conf.garp_master_refresh_repeat,
        garp_lower_prio_repeat=conf.garp_lower_prio_repeat,
        garp_lower_prio_delay=conf.garp_lower_prio_delay)


def source_address(conf: VrrpInstance) -> Address | None:
    """unicast_src_ip / mcast_src_ip, else the interface's primary IPv4 or link-local IPv6."""
    if conf.unicast_src_ip is not None:
        return conf.unicast_src_ip
    if conf.interface is None:
        return None
    if conf.family == 4:
        return interface_ipv4(conf.interface)
    return interface_ipv6_link_local(conf.interface)


class Instance:
    def __init__(self, conf: VrrpInstance, host: Host) -> None:
        self.host = host
        self.conf = conf
        self.sync: SyncGroup | None = None
        self.drops: Counter[str] = Counter()
        self.stats = InstanceStats()
        self.own_fault = False
        self.holds_vips = False
        self._timer: asyncio.TimerHandle | None = None
        self._ops: deque[Op] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._logged: set[str] = set()
        self._setup(conf)
        self.machine = Machine(self.params)

    def _setup(self, conf: VrrpInstance) -> None:
        self.conf = conf
        if conf.interface is None:
            raise ValueError(f"({conf.name}) Unknown interface!")
        src = source_address(conf)
        if src is None:
            raise ValueError(f"({conf.name}) Cannot find an IP address to use for interface "
                             f"{conf.interface}")
        self.src: Address = src
        self.params = params_of(conf, src)
        self.checksum = (packet.Checksum.PLAIN if conf.v3_checksum_as_v2
                         else packet.Checksum.PSEUDO)
        self.sock = self.host.socket(conf.interface, conf.family)
        if conf.unicast_peers:
            self.destinations: list[tuple[Address, int]] = [
                (p.address, conf.unicast_ttl) for p in conf.unicast_peers]
        else:
            group = conf.mcast_dst_ip or (self.host.g.vrrp_mcast_group4 if conf.family == 4
                                          else self.host.g.vrrp_mcast_group6)
            self.sock.join(group)
            self.destinations = [(group, packet.TTL)]
        self.advertised = tuple(v.ip for v in conf.vips if v.ip.version == conf.family)
        if conf.version == 2 and conf.auth_type == "PASS":
            self.auth = (packet.AUTH_PASS, packet.password(conf.auth_pass or ""))
        else:
            self.auth = (packet.AUTH_NONE, bytes(packet.AUTH_LEN))

    # -- identity -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.conf.name

    @property
    def key(self) -> tuple[str, int, str | None]:
        """What a reload compares: same name, VRID and interface keep their state."""
        return (self.conf.name, self.conf.virtual_router_id, self.conf.interface)

    @property
    def state(self) -> State:
        return self.machine.state

    def log(self, message: str) -> None:
        self.host.log(f"({self.name}) {message}")

    # -- trackers -----------------------------------------------------------------------------

    def tracked(self) -> tuple[list[TrackScript], list[TrackInterface]]:
        scripts = list(self.conf.track_scripts)
        links = list(self.conf.track_interfaces)
        if not self.conf.dont_track_primary and self.conf.interface:
            links.append(TrackInterface(self.conf.interface))
        if self.sync is not None:  # group trackers are unweighted
            scripts += [TrackScript(t.name) for t in self.sync.conf.track_scripts]
            links += [TrackInterface(t.name) for t in self.sync.conf.track_interfaces]
        return scripts, links

    def trackers(self) -> list[Tracker]:
        scripts, links = self.tracked()
        out = [Tracker(t.name, t.weight, t.reverse, self.host.script_ok(t.name))
               for t in scripts]
        out += [Tracker(t.name, t.weight, t.reverse, self.host.link_ok(t.name)) for t in links]
        return out

    def refresh(self, propagate: bool = True) -> None:
        """Re-read the trackers: the effective priority and the fault state."""
        priority, fault = evaluate(self.machine.base_priority, self.trackers())
        now = self.host.loop.time()
        actions: list[Action] = []
        if priority != self.machine.priority:
            actions += self.machine.set_priority(priority, now)
        was = self.own_fault
        self.own_fault = fault
        group_fault = self.sync.faulted() if self.sync is not None else False
        actions += self.machine.fault(fault or group_fault, now)
        self.apply(actions)
        if propagate and was != fault and self.sync is not None:
            self.sync.refresh(self)

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        present = await self.host.netlink.present(self.conf.interface or "")
        stale = [v for v in self.all_vips() if v.ip in present]
        if stale:
            self.log("removing VIPs.")
            for vip in stale:
                await self.host.netlink.delete(vip, self.conf.interface or "")
        priority, fault = evaluate(self.machine.base_priority, self.trackers())
        now = self.host.loop.time()
        if priority != self.machine.priority:
            self.machine.priority = priority
        self.own_fault = fault
        group_fault = self.sync.faulted() if self.sync is not None else False
        self.machine.faulted = fault or group_fault
        self.apply(self.machine.start(now))

    async def stop(self, state: str = "STOP") -> None:
        """Shutdown: a MASTER sends priority 0 and removes its VIPs; notify STOP/DELETED."""
        self._cancel_timer()
        self._stop_state = state
        self.apply(self.machine.shutdown(self.host.loop.time()))
        self._cancel_timer()
        await self.flush()

    async def flush(self) -> None:
        while self._worker is not None and not self._worker.done():
            await asyncio.shield(self._worker)

    def update(self, conf: VrrpInstance) -> None:
        """A reload with the same name/VRID/interface: new settings, same state."""
        old_vips = self.all_vips()
        self._setup(conf)
        self.machine.params = self.params
        self.machine.base_priority = conf.priority
        if self.state is State.MASTER:
            new = self.all_vips()
            gone = [v for v in old_vips if v.ip not in {n.ip for n in new}]
            added = [v for v in new if v.ip not in {o.ip for o in old_vips}]
            if gone:
                self._queue(lambda: self._del(gone))
            if added:
                self._queue(lambda: self._add(added))
        self.refresh()

    # -- inputs -------------------------------------------------------------------------------

    def receive(self, rx: Received) -> None:
        conf = self.conf
        try:
            if conf.check_unicast_src and conf.unicast_peers and rx.src not in {
                    p.address for p in conf.unicast_peers}:
                raise packet.PacketError(f"Received advert from {rx.src} which is not a "
                                         f"unicast peer")
            skip = conf.skip_check_adv_addr and rx.src == self.machine.master
            packet.check(rx.advert, packet.Expect(conf.version, *self.auth, conf.advert_int_cs,
                                                  None if skip else self.advertised))
        except packet.PacketError as err:
            self.reject(err.reason, str(err))
            return
        self.stats.advert_rcvd += 1
        if rx.advert.priority == 0:
            self.stats.pri_zero_rcvd += 1
        if (conf.version == 3 and conf.family == 4 and rx.advert.checksum is not None
                and rx.advert.checksum is not self.checksum and rx.advert.priority):
            self.checksum = rx.advert.checksum
            if self.checksum is packet.Checksum.PSEUDO_MCAST:
                self.log("Setting unicast VRRPv3 checksum to old version")
        self.apply(self.machine.receive(rx.advert, rx.src, self.host.loop.time()))

    def reject(self, reason: str, message: str) -> None:
        """A dropped advert of this VRID (here or, before dispatch, in the socket): counted, and
        logged the first time per reason (every time with -D)."""
        self.drops[reason] += 1
        count_drop(self.stats, reason)
        if self.host.detail or reason not in self._logged:
            self._logged.add(reason)
            self.log(message)

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self.machine.next_deadline
        now = self.host.loop.time()
        if deadline is not None:
            now = max(now, deadline)
        self.apply(self.machine.tick(now))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _reschedule(self) -> None:
        deadline = self.machine.next_deadline
        if self._timer is not None:
            if deadline is not None and self._timer.when() == deadline:
                return
            self._cancel_timer()
        if deadline is not None and self.machine.state not in (State.STOP, State.INIT):
            self._timer = self.host.loop.call_at(deadline, self._on_timer)

    # -- actions ------------------------------------------------------------------------------

    def apply(self, actions: list[Action]) -> None:
        for act in actions:
            if isinstance(act, SendAdvert):
                self.send(act.priority)
            elif isinstance(act, AddVips):
                vips = self.all_vips()
                self.holds_vips = True
                self._queue(lambda vips=vips: self._add(vips))  # type: ignore[misc]
            elif isinstance(act, DelVips):
                vips = self.all_vips()
                self.holds_vips = False
                self._queue(lambda vips=vips: self._del(vips))  # type: ignore[misc]
            elif isinstance(act, SendGratuitous):
                self._queue(lambda n=act.repeat: self._announce(n))  # type: ignore[misc]
            elif isinstance(act, StateChanged):
                self._state_changed(act)
            elif isinstance(act, Log):
                self.log(act.message)
        self._reschedule()

    def send(self, priority: int) -> None:
        c = self.conf
        if c.version == 3 and not self.advertised:
            return
        advert = packet.Advert(c.version, c.virtual_router_id, priority, self.advertised,
                               c.advert_int_cs, *(self.auth if c.version == 2
                                                  else (packet.AUTH_NONE, b"")))
        self.stats.advert_sent += 1
        if priority == 0:
            self.stats.pri_zero_sent += 1
        for dst, ttl in self.destinations:
            try:
                self.sock.send(advert, self.src, dst, ttl, self.checksum)
            except OSError as e:
                if "send" not in self._logged or self.host.detail:
                    self._logged.add("send")
                    self.log(f"Cant send advert to {dst} ({e.strerror})")

    def _state_changed(self, act: StateChanged) -> None:
        c = self.conf
        name = act.new.value
        deleted = act.new is State.STOP and getattr(self, "_stop_state", "STOP") == "DELETED"
        if deleted:
            name = deleted_state("notify_deleted" in c.other)
        if act.new is State.MASTER:
            self.stats.become_master += 1
        if act.old is State.MASTER:
            self.stats.release_master += 1
        scripts = Scripts(c.notify_master, c.notify_backup, c.notify_fault, c.notify_stop,
                          c.notify)
        self.host.notifier.state_changed("INSTANCE", c.name, name, act.priority, scripts,
                                         deleted)
        if self.sync is not None:
            self.sync.member_changed(self, act.old, act.new)

    def view(self) -> InstanceView:
        """What keepalived.data shows of this instance."""
        c, m = self.conf, self.machine
        master = m.master if m.state is not State.MASTER else self.src
        vips = tuple(f"{v.address.ip if v.address.network.prefixlen in (32, 128) else v.address}"
                     f" dev {v.dev or c.interface} scope {v.scope or 'global'}"
                     + (f" label {v.label}" if v.label else "") for v in self.conf.vips)
        scripts, links = self.tracked()
        return InstanceView(
            name=c.name, version=c.version, state=m.state.value, wantstate=c.state,
            master_router=master, master_priority=m.priority if m.state is State.MASTER else 0,
            interface=c.interface or "", src_ip=self.src,
            destinations=tuple(d for d, _ in self.destinations),
            unicast=bool(c.unicast_peers), vrid=c.virtual_router_id,
            base_priority=m.base_priority, effective_priority=m.priority,
            advert_int=c.advert_int, master_down_us=m.down_us, nopreempt=c.nopreempt,
            auth=c.auth_type if c.version == 2 else None, auth_pass=c.auth_pass, vips=vips,
            track_scripts=tuple((t.name, t.weight) for t in scripts),
            track_interfaces=tuple((t.name, t.weight) for t in links))

    def all_vips(self) -> list[VirtualIp]:
        return list(self.conf.vips) + list(self.conf.evips)

    def _queue(self, op: Op) -> None:
        if self._ops or (self._worker is not None and not self._worker.done()):
            self._ops.append(op)
            return
        pending = self._run_op(op)  # nothing ahead of it: now
        if pending is not None:
            self._worker = asyncio.ensure_future(self._work(pending))

    def _run_op(self, op: Op) -> Awaitable[None] | None:
        try:
            result = op()
        except Exception as e:  # netlink refused: say so, keep the instance running
            self.log(f"Netlink error: {e}")
            return None
        return result if isawaitable(result) else None

    async def _work(self, pending: Awaitable[None] | None) -> None:
        while True:
            if pending is not None:
                try:
                    await pending
                except Exception as e:
                    self.log(f"Netlink error: {e}")
            if not self._ops:
                return
            pending = self._run_op(self._ops.popleft())

    def _add(self, vips: list[VirtualIp]) -> None:
        self.log("setting VIPs.")
        for vip in vips:
            self.host.netlink.add_now(vip, self.conf.interface or "")

    def _del(self, vips: list[VirtualIp]) -> None:
        self.log("removing VIPs.")
        for vip in vips:
            self.host.netlink.delete_now(vip, self.conf.interface or "")

    def _announce(self, repeat: int) -> Awaitable[None] | None:
        """Send the burst now when no interval spaces it, else return the task's work."""
        if repeat <= 0 or not self.holds_vips:
            return None
        by_dev: dict[str, list[Any]] = {}
        for vip in self.all_vips():
            by_dev.setdefault(vip.dev or self.conf.interface or "", []).append(vip.ip)
        g = self.host.g
        spaced: list[tuple[Announcer, list[Any], float]] = []
        for dev, ips in by_dev.items():
            for ip in ips:
                what = "gratuitous ARPs" if ip.version == 4 else "unsolicited neighbour adverts"
                self.log(f"Sending/queueing {what} on {dev} for {ip}")
            with contextlib.suppress(OSError):
                announcer = self.host.announcer(dev)
                interval = g.vrrp_garp_interval if ips[0].version == 4 else g.vrrp_gna_interval
                if interval > 0:
                    spaced.append((announcer, ips, interval))
                else:
                    for _ in range(repeat):
                        announcer.send_once(ips)
        if not spaced:
            return None

        async def rest() -> None:
            for announcer, ips, interval in spaced:
                with contextlib.suppress(OSError):
                    await announcer.announce(ips, repeat, interval)

        return rest()


class SyncGroup:
    def __init__(self, conf: VrrpSyncGroup, members: list[Instance], host: Host) -> None:
        self.conf = conf
        self.members = members
        self.host = host
        self.state: State | None = None
        self._syncing = False
        for m in members:
            m.sync = self

    @property
    def name(self) -> str:
        return self.conf.name

    def faulted(self) -> bool:
        return any(m.own_fault for m in self.members)

    def refresh(self, origin: Instance) -> None:
        for m in self.members:
            if m is not origin:
                m.refresh(propagate=False)

    def member_changed(self, inst: Instance, old: State, new: State) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            if old is State.MASTER and new in (State.BACKUP, State.FAULT):
                others = [m for m in self.members if m is not inst and m.state is State.MASTER]
                if others:
                    self.host.log(f"VRRP_Group({self.name}) Syncing instances to BACKUP state")
                now = self.host.loop.time()
                for m in others:
                    m.apply(m.machine.sync_backup(now))
            if new is State.FAULT:
                for m in self.members:
                    if m is not inst:
                        m.refresh(propagate=False)
        finally:
            self._syncing = False
        states = {m.state for m in self.members}
        if len(states) == 1:
            common = states.pop()
            if common is not self.state and common in (State.MASTER, State.BACKUP,
                                                       State.FAULT, State.STOP):
                self.state = common
                c = self.conf
                scripts = Scripts(c.notify_master, c.notify_backup, c.notify_fault,
                                  c.notify_stop, c.notify)
                self.host.notifier.state_changed("GROUP", c.name, common.value, 0, scripts)
