"""Peer state shared by every worker of a configuration generation (PURE): `zone NAME [SIZE]`.

Without a zone, nginx keeps each worker's peer state in that worker; with one
(ngx_http_upstream_zone_module) the whole peer array lives in shared memory and every selection
takes the group's lock, so fail counts, max_conns, least_conn's connection counts and the
smooth-WRR weights are global. halb does the same with three pieces:

- `Zone`: one upstream group's segment, an anonymous shared mmap (MAP_SHARED|MAP_ANONYMOUS,
  created BEFORE the workers are forked, so they all map the same pages) holding a header and
  one fixed-size slot per peer, plus a cross-process lock: a POSIX semaphore, the C SemLock
  behind multiprocessing.Lock (taken directly: the multiprocessing package would import socket
  and subprocess). An uncontended acquire + release costs ~0.1 µs where fcntl.lockf costs
  ~2 µs. As nginx's ngx_shmtx records the holder's pid, the header does too, and the master
  calls `force_unlock(pid)` for a worker that died, so a crash inside a pick cannot wedge the
  others (nginx's "shared memory zone ... was locked by PID").
  The segment-and-lock part is `Segment`, also the base of the proxy cache's keys zone
  (l7/cache_zone.py).
- `SharedPeer`: a Peer whose mutable counters are properties over its slot. Static fields
  (name, address, weight, max_fails, fail_timeout, max_conns, backup, down, index) stay plain
  per-process copies of the configuration, the same in every worker. The first SharedPeer built
  on a slot (under the lock) writes the initial state; later ones (other workers, a respawned
  worker) attach to what is there.
- `ZoneBalancer`: wraps an unchanged algorithm so that pick(), release() and the state hooks
  run under the zone's lock. The algorithms only read and write Peer attributes, so they need no
  change; groups without a zone never pay for any of this.

Shared per peer: effective_weight, current_weight, conns, fails, accessed, checked, healthy,
recovered (the start of a slow_start ramp), least_time's header/response averages and its
`inflight` counters (peer.extra["least_time"]).
The L4 counters (active / inactive) and `inflight_since` stay per process. Values are int64
(counters) and float64 (times); the time base is the monotonic clock every process shares.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from _multiprocessing import SemLock  # the primitive of multiprocessing.Lock
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, Self

from halb.balancing.base import Balancer, Outcome, Peer, PickContext

# header words
HOLDER = 0  # pid of the process holding the lock, 0 when free
SLOTS = 1
HEADER_WORDS = 8

# slot layout, in 8-byte words: INT_WORDS int64, then float64 up to STRIDE
STRIDE = 20
INT_WORDS = 12
INIT = 0  # 1 once a SharedPeer has written the initial state
INT_FIELDS = {"effective_weight": 1, "current_weight": 2, "conns": 3, "fails": 4}
BOOL_FIELDS = {"healthy": 5}
INFLIGHT_FIELDS = {"reqs": 6, "last": 7, "changed": 8, "time": 9}
FLOAT_FIELDS = {"accessed": 0, "checked": 1, "header_time": 2, "response_time": 3,
                "recovered": 4}
SHARED = frozenset({*INT_FIELDS, *BOOL_FIELDS, *FLOAT_FIELDS})

_SEMAPHORE = 1  # multiprocessing.synchronize.SEMAPHORE
_pid = os.getpid()


def _refresh_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_refresh_pid)


def _new_lock(kind: str) -> SemLock:
    for i in range(100):
        name = f"/halb-{kind}-{os.getpid()}-{os.urandom(6).hex()}-{i}"
        try:
            return SemLock(_SEMAPHORE, 1, 1, name, True)  # unlinked at once: nothing to leak
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a semaphore for a {kind} zone")


class Segment:
    """A shared-memory segment of `words` 8-byte words seen as int64 (`ints`) and float64
    (`floats`), with a cross-process lock whose holder's pid is in word HOLDER. Create it
    before forking; `kind` names the lock's semaphore (/halb-KIND-...)."""

    def __init__(self, words: int, kind: str) -> None:
        self.mm = mmap.mmap(-1, words * 8)
        self.ints = memoryview(self.mm).cast("q")
        self.floats = memoryview(self.mm).cast("d")
        self._lock = _new_lock(kind)
        self._acquire = self._lock.acquire
        self._release = self._lock.release

    def acquire(self) -> None:
        self._acquire()
        self.ints[HOLDER] = _pid

    def release(self) -> None:
        self.ints[HOLDER] = 0
        self._release()

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def holder(self) -> int:
        return self.ints[HOLDER]

    def force_unlock(self, pid: int) -> bool:
        """Free the lock if `pid` (a process that is gone) held it; True if it did."""
        if pid <= 0 or self.ints[HOLDER] != pid:
            return False
        self.ints[HOLDER] = 0
        with contextlib.suppress(ValueError):  # already free after all
            self._release()
        return True

    def close(self) -> None:
        """Drop this process's mapping (other processes keep theirs)."""
        with contextlib.suppress(BufferError):
            self.ints.release()
            self.floats.release()
            self.mm.close()


class Zone(Segment):
    """One upstream group's shared segment and its lock. Create it before forking."""

    def __init__(self, name: str, slots: int, upstream: str = "", size: int = 0) -> None:
        self.name = name  # the zone's name, as configured
        self.upstream = upstream
        self.size = size  # as configured (informative: the segment is sized for the peers)
        self.slots = slots
        super().__init__(HEADER_WORDS + slots * STRIDE, "zone")
        self.ints[SLOTS] = slots

    def __repr__(self) -> str:
        return f"Zone({self.name!r}, upstream={self.upstream!r}, slots={self.slots})"

    # -- slots --------------------------------------------------------------------------------

    def views(self, slot: int) -> tuple[memoryview, memoryview]:
        if not 0 <= slot < self.slots:
            raise IndexError(f"zone {self.name!r} has {self.slots} slots, not {slot + 1}")
        base = HEADER_WORDS + slot * STRIDE
        return (self.ints[base:base + INT_WORDS],
                self.floats[base + INT_WORDS:base + STRIDE])

    def healthy(self, slot: int) -> bool | None:
        """A slot's active-health flag; None when no peer was ever built on it. One aligned
        word, read without the lock (a reload carrying `health_check ... persistent` state)."""
        ints, _ = self.views(slot)
        if ints[INIT] == 0:
            return None
        return ints[BOOL_FIELDS["healthy"]] != 0

    def peers(self, specs: Sequence[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[SharedPeer]:
        """SharedPeers for slots 0..n-1 from (args, kwargs) of Peer, built under the lock."""
        with self:
            return [SharedPeer(self, i, *args, **kwargs)
                    for i, (args, kwargs) in enumerate(specs)]


def _int_property(k: int) -> property:
    def get(self: SharedPeer) -> int:
        return self._i[k]

    def put(self: SharedPeer, v: int) -> None:
        self._i[k] = v

    return property(get, put)


def _bool_property(k: int) -> property:
    def get(self: SharedPeer) -> bool:
        return self._i[k] != 0

    def put(self: SharedPeer, v: bool) -> None:
        self._i[k] = 1 if v else 0

    return property(get, put)


def _float_property(k: int) -> property:
    def get(self: SharedPeer) -> float:
        return self._f[k]

    def put(self: SharedPeer, v: float) -> None:
        self._f[k] = v

    return property(get, put)


_PEER_FIELDS = tuple(f.name for f in fields(Peer))


class SharedPeer(Peer):
    """A Peer whose dynamic state lives in a zone slot (see the module docstring)."""

    __slots__ = ("_f", "_i", "slot", "zone")

    def __init__(self, zone: Zone, slot: int, *args: Any, **kwargs: Any) -> None:
        # no super().__init__(): the dataclass __init__ would reset the shared state
        self.zone = zone
        self.slot = slot
        self._i, self._f = zone.views(slot)
        fresh = self._i[INIT] == 0
        local = Peer(*args, **kwargs)  # defaults and __post_init__, exactly as a Peer
        for name in _PEER_FIELDS:
            if fresh or name not in SHARED:
                setattr(self, name, getattr(local, name))
        self.extra["least_time"] = SharedInflight(self._i)
        if fresh:
            self._i[INIT] = 1

    effective_weight = _int_property(INT_FIELDS["effective_weight"])
    current_weight = _int_property(INT_FIELDS["current_weight"])
    conns = _int_property(INT_FIELDS["conns"])
    fails = _int_property(INT_FIELDS["fails"])
    healthy = _bool_property(BOOL_FIELDS["healthy"])
    accessed = _float_property(FLOAT_FIELDS["accessed"])
    checked = _float_property(FLOAT_FIELDS["checked"])
    header_time = _float_property(FLOAT_FIELDS["header_time"])
    response_time = _float_property(FLOAT_FIELDS["response_time"])
    recovered = _float_property(FLOAT_FIELDS["recovered"])

    def __repr__(self) -> str:
        return (f"SharedPeer({self.name!r}, {self.address}, w={self.weight}, "
                f"zone={self.zone.name!r})")


class SharedInflight:
    """least_time's in-flight counters (balancing.least_time.Inflight) in a zone slot."""

    __slots__ = ("_i",)

    def __init__(self, ints: memoryview) -> None:
        self._i = ints

    reqs = _int_property(INFLIGHT_FIELDS["reqs"])
    last = _int_property(INFLIGHT_FIELDS["last"])
    changed = _int_property(INFLIGHT_FIELDS["changed"])
    time = _int_property(INFLIGHT_FIELDS["time"])


class ZoneBalancer(Balancer):
    """Runs an algorithm under its zone's lock (nginx: ngx_http_upstream_rr_peers_wlock)."""

    def __init__(self, inner: Balancer, zone: Zone) -> None:
        # not Balancer.__init__: the inner balancer owns the peers and their indexes
        self.inner = inner
        self.zone = zone
        self.peers = inner.peers
        self.backup = inner.backup
        self.params = inner.params
        self.name = inner.name  # type: ignore[misc]
        self.needs = inner.needs  # type: ignore[misc]
        self.allows_backup = inner.allows_backup  # type: ignore[misc]
        self._pick = inner.pick
        self._free = inner.release

    def pick(self, ctx: PickContext) -> Peer | None:
        zone = self.zone
        zone.acquire()
        try:
            return self._pick(ctx)
        finally:
            zone.release()

    def release(self, peer: Peer, outcome: Outcome, now: float, *,
                header_time: float | None = None, response_time: float | None = None) -> None:
        zone = self.zone
        zone.acquire()
        try:
            self._free(peer, outcome, now, header_time=header_time,
                       response_time=response_time)
        finally:
            zone.release()

    def peer_up(self, peer: Peer) -> None:
        with self.zone:
            self.inner.peer_up(peer)

    def peer_down(self, peer: Peer) -> None:
        with self.zone:
            self.inner.peer_down(peer)

    def weight_changed(self, peer: Peer, weight: int) -> None:
        with self.zone:
            self.inner.weight_changed(peer, weight)

    def conn_started(self, peer: Peer) -> None:
        with self.zone:
            self.inner.conn_started(peer)

    def conn_finished(self, peer: Peer, was_active: bool = True) -> None:
        with self.zone:
            self.inner.conn_finished(peer, was_active)

    def tries(self) -> int:
        return self.inner.tries()

    def all_peers(self) -> list[Peer]:
        return self.inner.all_peers()

    def __getattr__(self, name: str) -> Any:  # algorithm extras (ring(), ranges(), ...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


__all__ = ["SHARED", "SharedInflight", "SharedPeer", "Zone", "ZoneBalancer"]
