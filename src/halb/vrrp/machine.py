"""The VRRP state machine of RFC 3768 / RFC 5798 §6 as keepalived runs it (PURE).

Owns the states (Initialize, Backup, Master, keepalived's FAULT, and STOP after shutdown), the
timers (Adver_Timer, Master_Down_Timer, the delayed and periodic gratuitous ARP bursts) and every
decision taken on an advert. Inputs: `start`, `receive(advert, src, now)`, `tick(now)`,
`set_priority(p, now)` (tracking), `fault(on, now)`, `shutdown(now)`; each returns the Actions
to carry out, in order, and `next_deadline` says when `tick` is due. Time is passed in (seconds,
any monotonic origin); nothing here sleeps or does I/O.

The transitions are data (TRANSITIONS, h11 style): an input is first classified into an Event
(the comparisons of keepalived's vrrp_state_backup / vrrp_state_master_rx live in `_classify`),
then `(state, event)` names the next state and the steps to run. keepalived's behaviour where the
RFC leaves room (reference vrrp-keepalived.md §1.8, §1.9, §2.4, keepalived vrrp.c):

* Timers in integer microseconds like keepalived: v2 Skew_Time = (256-prio)/256 s (not scaled by
  the interval), v3 Skew_Time = (256-prio) * Master_Adver_Interval / 256; Master_Down_Interval =
  down_timer_adverts (3) * Master_Adver_Interval + Skew_Time, with the *effective* priority.
* Start: straight to MASTER only for `state MASTER` with priority 255; every other instance (also
  `state MASTER` below 255, also priority 255 with `state BACKUP`) starts BACKUP and waits MDI.
* Backup: priority 0 -> Master_Down_Timer = Skew_Time; an advert is accepted (timer re-armed,
  v3 interval adopted) when nopreempt, or its priority >= ours, or a preempt_delay is running
  (started at startup and by the first lower-priority advert); otherwise it is discarded and
  the running timer takes over (preemption). Equal priority in BACKUP stays BACKUP.
* Master: priority 0 -> advert at once; a lower priority (or equal from a lower address) ->
  "forcing new election" advert unless lower_prio_no_advert; higher (or equal from a higher
  address) -> BACKUP, VIPs removed. Two address owners: the receiver drops itself to 254.
* Priority changes (tracking) move a BACKUP's running deadline by the change in MDI, as
  vrrp_set_effective_priority does; an owner's (255) priority never changes.
* FAULT: leaving MASTER for FAULT sends priority 0 and removes the VIPs; adverts are ignored in
  FAULT; leaving FAULT goes BACKUP (MDI) or, for the owner configured MASTER, MASTER.
* Shutdown: a MASTER sends priority 0 and removes its VIPs (RFC "Shutdown" event).
* Sync groups: `sync_backup` moves a MASTER to BACKUP (VIPs removed, down timer armed) when
  another member of its vrrp_sync_group left MASTER.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from halb.vrrp.packet import Advert

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
OWNER = 255


class State(Enum):
    INIT = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"
    STOP = "STOP"


class Event(Enum):
    START = "start"
    START_OWNER = "start as owner"
    DOWN_TIMER = "master down timer"
    ADVER_TIMER = "adver timer"
    GARP_TIMER = "delayed garp timer"
    RX_ZERO = "advert, priority 0"
    RX_ACCEPT = "advert accepted"  # backup: re-arm the down timer
    RX_DISCARD = "advert discarded"  # backup: lower priority, we will preempt
    RX_LOWER = "advert, we win"  # master: lower priority, or equal from a lower address
    RX_HIGHER = "advert, they win"  # master: higher priority, or equal from a higher address
    RX_SAME = "advert, equal priority from our own address"
    FAULT_ON = "fault"
    FAULT_OFF = "fault cleared"
    FAULT_OFF_OWNER = "fault cleared, owner"
    SYNC_BACKUP = "sync group member left MASTER"
    SHUTDOWN = "shutdown"


# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendAdvert:
    priority: int


@dataclass(frozen=True, slots=True)
class AddVips:
    pass


@dataclass(frozen=True, slots=True)
class DelVips:
    pass


@dataclass(frozen=True, slots=True)
class SendGratuitous:
    """Gratuitous ARPs / unsolicited NAs for every VIP, `repeat` times."""

    repeat: int


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: State
    new: State
    priority: int


@dataclass(frozen=True, slots=True)
class Log:
    """A log line in keepalived's wording, to be prefixed with "(INSTANCE) "."""

    message: str


Action = SendAdvert | AddVips | DelVips | SendGratuitous | StateChanged | Log


# -- parameters and timers -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Params:
    """An instance's settings, as config/keepalived.py resolves them (intervals in cs)."""

    address: Address  # the primary (source) address, for the equal-priority tie
    vrid: int = 1
    version: int = 2
    priority: int = 100
    advert_int_cs: int = 100
    initial_master: bool = False  # `state MASTER`
    nopreempt: bool = False
    preempt_delay: float = 0.0
    down_timer_adverts: int = 3
    lower_prio_no_advert: bool = False
    higher_prio_send_advert: bool = False
    garp_master_repeat: int = 5
    garp_master_delay: float = 5.0
    garp_master_refresh: float = 0.0
    garp_master_refresh_repeat: int = 1
    garp_lower_prio_repeat: int = 0
    garp_lower_prio_delay: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.priority <= OWNER:
            raise ValueError(f"priority {self.priority} not in 1..255")
        if self.version == 2 and self.advert_int_cs % 100:
            raise ValueError("a VRRPv2 advert interval is whole seconds")


def skew_us(version: int, priority: int, master_adver_int_cs: int) -> int:
    """Skew_Time in microseconds, as keepalived's VRRP_TIMER_SKEW computes it."""
    if version == 2:
        return (256 - priority) * 1_000_000 // 256
    return (256 - priority) * master_adver_int_cs * 625 // 16


def down_interval_us(version: int, priority: int, master_adver_int_cs: int,
                     adverts: int = 3) -> int:
    """Master_Down_Interval in microseconds."""
    return adverts * master_adver_int_cs * 10_000 + skew_us(version, priority,
                                                               master_adver_int_cs)


# -- the table -------------------------------------------------------------------------------

# (state, event) -> (next state, steps). A missing pair means the input is ignored there.
TRANSITIONS: dict[tuple[State, Event], tuple[State, tuple[str, ...]]] = {
    (State.INIT, Event.START): (State.BACKUP, ("log_backup_init", "arm_down", "notify")),
    (State.INIT, Event.START_OWNER): (State.MASTER, ("become_master",)),
    (State.BACKUP, Event.DOWN_TIMER): (State.MASTER, ("log_timeout", "become_master")),
    (State.BACKUP, Event.RX_ZERO): (State.BACKUP, ("arm_skew",)),
    (State.BACKUP, Event.RX_ACCEPT): (State.BACKUP, ("adopt_interval", "arm_down",
                                                     "preempt_delay")),
    (State.BACKUP, Event.RX_DISCARD): (State.BACKUP, ("log_discard", "keep_timer")),
    (State.MASTER, Event.ADVER_TIMER): (State.MASTER, ("send_advert", "garp_refresh",
                                                       "arm_adver")),
    (State.MASTER, Event.GARP_TIMER): (State.MASTER, ("garp_delayed",)),
    (State.MASTER, Event.RX_ZERO): (State.MASTER, ("send_advert",)),
    (State.MASTER, Event.RX_LOWER): (State.MASTER, ("log_lower", "force_election",
                                                    "garp_lower_prio")),
    (State.MASTER, Event.RX_SAME): (State.MASTER, ("log_same_address",)),
    (State.MASTER, Event.RX_HIGHER): (State.BACKUP, ("log_higher", "adopt_interval",
                                                     "leave_master", "log_backup", "arm_down",
                                                     "notify")),
    (State.INIT, Event.FAULT_ON): (State.FAULT, ("log_fault", "notify")),
    (State.BACKUP, Event.FAULT_ON): (State.FAULT, ("log_fault", "notify")),
    (State.MASTER, Event.FAULT_ON): (State.FAULT, ("log_fault", "send_zero", "leave_master",
                                                   "notify")),
    (State.FAULT, Event.FAULT_OFF): (State.BACKUP, ("log_backup", "reset_interval", "arm_down",
                                                    "notify")),
    (State.FAULT, Event.FAULT_OFF_OWNER): (State.MASTER, ("become_master",)),
    (State.MASTER, Event.SYNC_BACKUP): (State.BACKUP, ("leave_master", "log_backup",
                                                       "reset_interval", "arm_down", "notify")),
    (State.INIT, Event.SHUTDOWN): (State.STOP, ("notify",)),
    (State.BACKUP, Event.SHUTDOWN): (State.STOP, ("notify",)),
    (State.FAULT, Event.SHUTDOWN): (State.STOP, ("notify",)),
    (State.MASTER, Event.SHUTDOWN): (State.STOP, ("send_zero", "leave_master", "notify")),
}


class Machine:
    """One VRRP instance's protocol state. Feed it inputs; carry out the Actions it returns."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.state = State.INIT
        self.base_priority = params.priority
        self.priority = params.priority  # effective priority
        self.master_adver_int_cs = params.advert_int_cs
        self.master: Address | None = None  # the master we last accepted adverts from
        self.faulted = False
        self._down_us = 0  # keepalived's ms_down_timer: what the down timer was last armed with
        self._down_at: float | None = None  # Master_Down_Timer
        self._adver_at: float | None = None  # Adver_Timer
        self._garp_at: float | None = None  # the delayed second GARP burst
        self._garp_repeat = 0
        self._refresh_at: float | None = None
        self._preempt_until: float | None = None
        self._rx: tuple[Advert, Address] | None = None  # the advert being handled

    # -- inputs -------------------------------------------------------------------------------

    @property
    def down_us(self) -> int:
        """What the Master_Down_Timer was last armed with, in microseconds (keepalived's
        ms_down_timer, shown in keepalived.data)."""
        return self._down_us

    @property
    def next_deadline(self) -> float | None:
        times = [t for t in (self._down_at, self._adver_at, self._garp_at) if t is not None]
        return min(times) if times else None

    def start(self, now: float) -> list[Action]:
        if self.params.preempt_delay:
            self._preempt_until = now + self.params.preempt_delay
        if self.faulted:
            return self._run(Event.FAULT_ON, now)
        owner = self.params.initial_master and self.base_priority == OWNER
        return self._run(Event.START_OWNER if owner else Event.START, now)

    def tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        if self._down_at is not None and now >= self._down_at:
            actions += self._run(Event.DOWN_TIMER, now)
        if self._adver_at is not None and now >= self._adver_at:
            actions += self._run(Event.ADVER_TIMER, now)
        if self._garp_at is not None and now >= self._garp_at:
            actions += self._run(Event.GARP_TIMER, now)
        return actions

    def receive(self, advert: Advert, src: Address, now: float) -> list[Action]:
        """An advert that passed packet.decode and packet.check, from `src` (its IP source)."""
        if advert.vrid != self.params.vrid or self.state not in (State.BACKUP, State.MASTER):
            return []
        self._rx = (advert, src)
        try:
            actions: list[Action] = []
            if (self.state is State.MASTER and self.params.higher_prio_send_advert
                    and advert.priority and self._they_win(advert.priority, src)):
                actions.append(SendAdvert(self.priority))
            if (self.state is State.MASTER and advert.priority == self.priority == OWNER
                    and src != self.params.address):
                actions.append(Log("CONFIGURATION ERROR: local instance and a remote instance "
                                   "are both configured as address owner, please fix - "
                                   "reducing local priority"))
                self.base_priority = self.priority = OWNER - 1
            return actions + self._run(self._classify(advert, src, now), now)
        finally:
            self._rx = None

    def set_priority(self, priority: int, now: float) -> list[Action]:
        """The effective priority from tracking (already clamped to 1..254 by the caller)."""
        if self.base_priority == OWNER or priority == self.priority:
            return []
        if not 1 <= priority < OWNER:
            raise ValueError(f"effective priority {priority} not in 1..254")
        old = self.priority
        self.priority = priority
        old_down, self._down_us = self._down_us, self._mdi_us()
        if self.state is State.BACKUP and self._down_at is not None:
            self._down_at += (self._down_us - old_down) / 1e6
        return [Log(f"Changing effective priority from {old} to {priority}")]

    def fault(self, on: bool, now: float) -> list[Action]:
        if on == self.faulted:
            return []
        self.faulted = on
        if self.state is State.INIT:
            return []  # start() enters FAULT
        if on:
            return self._run(Event.FAULT_ON, now)
        owner = self.params.initial_master and self.base_priority == OWNER
        return self._run(Event.FAULT_OFF_OWNER if owner else Event.FAULT_OFF, now)

    def shutdown(self, now: float) -> list[Action]:
        return self._run(Event.SHUTDOWN, now)

    def sync_backup(self, now: float) -> list[Action]:
        """A vrrp_sync_group member went BACKUP or FAULT: a MASTER follows it to BACKUP
        (keepalived's vrrp_sync_backup); any other state ignores this."""
        return self._run(Event.SYNC_BACKUP, now)

    # -- classification and the table ---------------------------------------------------------

    def _they_win(self, priority: int, src: Address) -> bool:
        return priority > self.priority or (priority == self.priority and
                                            _addr_key(src) > _addr_key(self.params.address))

    def _classify(self, advert: Advert, src: Address, now: float) -> Event:
        prio = advert.priority
        if prio == 0:
            return Event.RX_ZERO
        if self.state is State.BACKUP:
            delaying = (self.params.preempt_delay > 0 and
                        (self._preempt_until is None or self._preempt_until > now))
            if self.params.nopreempt or prio >= self.priority or delaying:
                return Event.RX_ACCEPT
            return Event.RX_DISCARD
        if prio == self.priority and src == self.params.address:
            return Event.RX_SAME
        return Event.RX_HIGHER if self._they_win(prio, src) else Event.RX_LOWER

    def _run(self, event: Event, now: float) -> list[Action]:
        entry = TRANSITIONS.get((self.state, event))
        if entry is None:
            return []
        new_state, steps = entry
        old, self.state = self.state, new_state
        actions: list[Action] = []
        for step in steps:
            actions += _STEPS[step](self, now, old)
        return actions

    def _mdi_us(self) -> int:
        return down_interval_us(self.params.version, self.priority, self.master_adver_int_cs,
                                self.params.down_timer_adverts)

    # -- steps ----------------------------------------------------------------------------------

    def _notify(self, now: float, old: State) -> list[Action]:
        return [StateChanged(old, self.state, self.priority)]

    def _arm_down(self, now: float, old: State) -> list[Action]:
        self._adver_at = self._garp_at = self._refresh_at = None
        self._down_us = self._mdi_us()
        self._down_at = now + self._down_us / 1e6
        return []

    def _arm_skew(self, now: float, old: State) -> list[Action]:
        self._down_us = skew_us(self.params.version, self.priority, self.master_adver_int_cs)
        self._down_at = now + self._down_us / 1e6
        return []

    def _keep_timer(self, now: float, old: State) -> list[Action]:
        # keepalived: the down timer keeps running; what is left of it becomes ms_down_timer
        if self._down_at is not None:
            self._down_us = max(0, round((self._down_at - now) * 1e6))
        return []

    def _adopt_interval(self, now: float, old: State) -> list[Action]:
        assert self._rx is not None
        advert, src = self._rx
        self.master = src
        if self.params.version != 3 or advert.interval_cs == self.master_adver_int_cs:
            return []
        was, self.master_adver_int_cs = self.master_adver_int_cs, advert.interval_cs
        return [Log(f"advertisement interval updated from {was * 10}ms to "
                    f"{advert.interval_cs * 10}ms by master")]

    def _reset_interval(self, now: float, old: State) -> list[Action]:
        self.master_adver_int_cs = self.params.advert_int_cs
        if self.params.preempt_delay:
            self._preempt_until = None
        return []

    def _preempt_delay(self, now: float, old: State) -> list[Action]:
        assert self._rx is not None
        if not self.params.preempt_delay:
            return []
        if self._rx[0].priority >= self.priority:
            self._preempt_until = None
        elif self._preempt_until is None:
            self._preempt_until = now + self.params.preempt_delay
        return []

    def _become_master(self, now: float, old: State) -> list[Action]:
        # keepalived's vrrp_state_master_tx: the advert first, so that the old master drops the
        # VIPs before our gratuitous ARPs go out
        self._down_at = None
        self.master = self.params.address
        self.master_adver_int_cs = self.params.advert_int_cs
        self._adver_at = now + self.params.advert_int_cs / 100
        self._garp_at = now + self.params.garp_master_delay if self.params.garp_master_delay \
            else None
        self._garp_repeat = self.params.garp_master_repeat
        self._refresh_at = (now + self.params.garp_master_refresh
                            if self.params.garp_master_refresh else None)
        return [SendAdvert(self.priority), Log("Entering MASTER STATE"), AddVips(),
                SendGratuitous(self.params.garp_master_repeat),
                StateChanged(old, State.MASTER, self.priority)]

    def _leave_master(self, now: float, old: State) -> list[Action]:
        self._adver_at = self._garp_at = self._refresh_at = None
        if self.state is State.BACKUP:
            self._preempt_until = None
        return [DelVips()]

    def _send_advert(self, now: float, old: State) -> list[Action]:
        return [SendAdvert(self.priority)]

    def _send_zero(self, now: float, old: State) -> list[Action]:
        return [SendAdvert(0)]

    def _arm_adver(self, now: float, old: State) -> list[Action]:
        self._adver_at = now + self.params.advert_int_cs / 100
        return []

    def _garp_refresh(self, now: float, old: State) -> list[Action]:
        if self._refresh_at is None or now < self._refresh_at:
            return []
        self._refresh_at = now + self.params.garp_master_refresh
        return [SendGratuitous(self.params.garp_master_refresh_repeat)]

    def _garp_delayed(self, now: float, old: State) -> list[Action]:
        self._garp_at = None
        return [SendGratuitous(self._garp_repeat)] if self._garp_repeat else []

    def _force_election(self, now: float, old: State) -> list[Action]:
        return [] if self.params.lower_prio_no_advert else [SendAdvert(self.priority)]

    def _garp_lower_prio(self, now: float, old: State) -> list[Action]:
        repeat = self.params.garp_lower_prio_repeat
        if not repeat:
            return []
        if self.params.garp_lower_prio_delay:
            self._garp_at = now + self.params.garp_lower_prio_delay
            self._garp_repeat = repeat
        return [SendGratuitous(repeat)]

    def _rx_log(self, text: Callable[[Advert, Address], str]) -> list[Action]:
        assert self._rx is not None
        return [Log(text(*self._rx))]

    def _log_lower(self, now: float, old: State) -> list[Action]:
        tail = "" if self.params.lower_prio_no_advert else ", forcing new election"
        return self._rx_log(lambda a, s: f"Received advert from {s} with lower priority "
                                         f"{a.priority}, ours {self.priority}{tail}")

    def _log_higher(self, now: float, old: State) -> list[Action]:
        def text(a: Advert, s: Address) -> str:
            if a.priority > self.priority:
                return (f"Master received advert from {s} with higher priority {a.priority}, "
                        f"ours {self.priority}")
            return (f"Master received advert from {s} with same priority {a.priority} but "
                    f"higher IP address than ours")
        return self._rx_log(text)

    def _log_discard(self, now: float, old: State) -> list[Action]:
        return self._rx_log(lambda a, s: f"received lower priority ({a.priority}) advert from "
                                         f"{s} - discarding")

    def _log_same_address(self, now: float, old: State) -> list[Action]:
        return [Log("WARNING - equal priority advert received from remote host with our IP "
                    "address.")]

    def _log_timeout(self, now: float, old: State) -> list[Action]:
        return [Log("Receive advertisement timeout")]

    def _log_backup_init(self, now: float, old: State) -> list[Action]:
        return [Log("Entering BACKUP STATE (init)")]

    def _log_backup(self, now: float, old: State) -> list[Action]:
        return [Log("Entering BACKUP STATE")]

    def _log_fault(self, now: float, old: State) -> list[Action]:
        self._down_at = self._adver_at = self._garp_at = self._refresh_at = None
        return [Log("Entering FAULT STATE")]


def diagram() -> str:
    """TRANSITIONS as Graphviz dot, for the docs (h11 draws its state diagrams the same way)."""
    out = ["digraph vrrp {", "  rankdir=LR;"]
    for (state, event), (new, steps) in TRANSITIONS.items():
        label = event.value + ("\\n" + ", ".join(steps) if steps else "")
        out.append(f'  {state.value} -> {new.value} [label="{label}"];')
    return "\n".join([*out, "}"]) + "\n"


def _addr_key(addr: Address) -> tuple[int, int]:
    """Addresses compare unsigned in network byte order (keepalived's inet_sockaddrcmp)."""
    return (addr.version, int(addr))


Step = Callable[[Machine, float, State], list[Action]]
_STEPS: dict[str, Step] = {
    name[1:]: fn for name, fn in vars(Machine).items()
    if name.startswith("_") and not name.startswith("__") and callable(fn)
    and name not in ("_run", "_classify", "_they_win", "_mdi_us", "_rx_log")
}

for _state_event, (_next, _steps) in TRANSITIONS.items():  # the table names only real steps
    for _step in _steps:
        assert _step in _STEPS, _step
