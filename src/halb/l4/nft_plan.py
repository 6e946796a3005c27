"""How the kernel data plane spreads new flows (PURE): an IPVS scheduler turned into a `Pick`.

The kernel cannot run a Python scheduler per connection, so halb asks the scheduler ahead of
time and writes its answers into the ruleset (l4/nft_rules.py). Every question goes to a copy of
the service's balancer, so the table's own scheduler state is never disturbed. Three ways:

* **Sequences, exact** (rr, wrr): their picks do not depend on connection counts, so the pick
  sequence of one whole period (rr: one per available server; wrr: the interleaved sequence,
  e.g. A A B A B C A B C for weights 4, 3, 2) becomes a ``numgen inc`` map: the n-th new flow
  gets the n-th pick, as IPVS gives it. The period is found by running the scheduler (at most
  MAX_SLOTS picks; beyond that the first MAX_SLOTS picks are used, an approximation of weights
  whose sum/gcd exceeds it). The sequence starts again from its head whenever the ruleset
  changes; IPVS's wrr does the same on any change of its real servers, its rr keeps its cursor.
* **Bucket tables** (sh, mh): the scheduler's own table. sh: for each of the 256 buckets, the
  scheduler is asked with a made-up client address whose IPVS hash (`hash_32(addr, 8)`) is
  exactly that bucket, so availability (weight 0, overload) and sh-fallback come out as the
  scheduler decides them. mh: its 4093-entry Maglev table is
  read and each entry's server checked for availability; with mh-fallback an unavailable entry
  takes the next available entry of the table (IPVS probes in its hash order: approximate).
  The kernel indexes the table with ``jhash`` of the source (sh-port / mh-port: of source
  address and port); IPVS's multiplicative hash and hsiphash cannot be
  written in nft, so which client lands in which bucket differs, the share of each server does
  not.
* **dh, exact**: it hashes the destination address, which for a virtual service is always its
  VIP, so the scheduler is asked once and every new flow goes to its answer.
* **Simulated picks, approximate** (lc, wlc, sed, nq, ovf, fo, lblc, lblcr, twos): these read
  active/inactive counts. The data plane feeds the counts it reads from conntrack (NAT) or from
  its flow maps (DR) into the table every tick; the plan then asks a copy of the scheduler for
  the next `window` picks, counting each pick as a new active connection (and raising the
  overload flag at the -x threshold) as IPVS would, and those picks become a ``numgen inc`` map
  until the next tick. Between two ticks, new connections follow the simulated sequence, not the
  live counts; fo is exact whenever its overload flags are current.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from halb.balancing.base import Balancer, Peer, PickContext
from halb.l4.nft_rules import PICK_HASH, PICK_SEQUENCE, Pick

MAX_SLOTS = 16384
WINDOW = 64  # simulated picks per tick for the count-driven schedulers
GOLDEN_RATIO_32 = 0x61C88647
INV_GOLDEN = pow(GOLDEN_RATIO_32, -1, 1 << 32)

SEQUENCE = frozenset({"rr", "wrr"})
BUCKETS = frozenset({"sh", "mh"})
SIMULATED = frozenset({"lc", "wlc", "sed", "nq", "ovf", "fo", "lblc", "lblcr", "twos"})
EXACT = frozenset({"rr", "wrr", "dh", "fo"})


@dataclass(frozen=True, slots=True)
class Member:
    """A real server as the planner sees it: its peer in the table and its rule id."""

    peer: Peer
    id: int
    u_threshold: int = 0


def bucket_address(bucket: int, bits: int = 8) -> bytes:
    """An IPv4 address whose IPVS hash `hash_32(ntohl(addr), bits)` is `bucket`."""
    value = ((bucket << (32 - bits)) * INV_GOLDEN) & 0xFFFFFFFF
    return value.to_bytes(4, "big")


def smallest_period(seq: Sequence[int]) -> int:
    """The length of the shortest prefix that `seq` repeats (KMP prefix function)."""
    n = len(seq)
    if n == 0:
        return 0
    fail = [0] * n
    k = 0
    for i in range(1, n):
        while k and seq[i] != seq[k]:
            k = fail[k - 1]
        if seq[i] == seq[k]:
            k += 1
        fail[i] = k
    return n - fail[-1]


def clone(balancer: Balancer) -> tuple[Balancer, dict[int, Peer]]:
    """A deep copy of `balancer` to ask questions of, and {id(original peer): its copy}.

    The IPVS base class keys some state by id(peer) (the available set, last_weight): those
    keys are moved to the copies' ids, or the copy would find none of its peers available.
    """
    memo: dict[int, object] = {}
    twin = copy.deepcopy(balancer, memo)
    twins = {id(p): memo[id(p)] for p in balancer.all_peers() if id(p) in memo}
    ids = {old: id(new) for old, new in twins.items()}
    for name, value in list(vars(twin).items()):
        if isinstance(value, set) and value and all(isinstance(v, int) for v in value):
            setattr(twin, name, {ids.get(v, v) for v in value})
        elif isinstance(value, dict) and value and all(isinstance(k, int) for k in value):
            setattr(twin, name, {ids.get(k, k): v for k, v in value.items()})
    return twin, twins  # type: ignore[return-value]


class Planner:
    """Plans one service: `plan()` returns the `Pick` for its balancer and members."""

    def __init__(self, scheduler: str, balancer: Balancer, members: Sequence[Member], *,
                 vaddr: bytes | None, now: float = 0.0, rng: random.Random | None = None,
                 window: int = WINDOW) -> None:
        self.scheduler = scheduler
        self.members = list(members)
        self.vaddr = vaddr
        self.now = now
        self.rng = rng or random.Random(0)
        self.window = window
        self.clone, twins = clone(balancer)
        # the clone's peers back to rule ids
        self.ids: dict[int, int] = {}
        self.peers: dict[int, Peer] = {}
        for m in self.members:
            twin = twins.get(id(m.peer), m.peer)
            self.ids[id(twin)] = m.id
            self.peers[m.id] = twin

    def ctx(self, client: bytes | None = None, daddr: bytes | None = None) -> PickContext:
        return PickContext(now=self.now, rng=self.rng, client=client, port=0,
                           daddr=daddr if daddr is not None else self.vaddr)

    def _id(self, peer: Peer | None) -> int:
        return 0 if peer is None else self.ids.get(id(peer), 0)

    def plan(self) -> Pick:
        name = self.scheduler
        if name in SEQUENCE:
            return self.sequence()
        if name == "sh":
            key = "saddr.sport" if getattr(self.clone, "use_port", False) else "saddr"
            return Pick(PICK_HASH, self._asked(lambda b: self.ctx(client=b)), key=key)
        if name == "dh":  # the destination of a (non-fwmark) service is always its VIP
            return Pick(PICK_SEQUENCE, tuple(s for s in [self._id(self.clone.pick(self.ctx()))]
                                             if s))
        if name == "mh":
            return self.maglev()
        return self.simulate()

    # -- the three ways ----------------------------------------------------------------------

    def sequence(self) -> Pick:
        eligible = [p for p in self.peers.values() if p.weight > 0 and not p.overloaded]
        if not eligible:
            return Pick(PICK_SEQUENCE, ())
        total = sum(p.weight for p in eligible)
        g = 0
        for p in eligible:
            g = math.gcd(g, p.weight)
        length = min(2 * MAX_SLOTS, 2 * max(len(eligible), total // (g or 1)))
        picks = []
        for _ in range(length):
            got = self._id(self.clone.pick(self.ctx()))
            if not got:
                break
            picks.append(got)
        period = smallest_period(picks)
        if period * 2 > len(picks):
            period = min(len(picks), MAX_SLOTS)
        return Pick(PICK_SEQUENCE, tuple(picks[:period]))

    def _asked(self, ctx_for: Callable[[bytes], PickContext], bits: int = 8) -> tuple[int, ...]:
        return tuple(self._id(self.clone.pick(ctx_for(bucket_address(i, bits))))
                     for i in range(1 << bits))

    def maglev(self) -> Pick:
        table: list[Peer | None] = list(getattr(self.clone, "table", []))
        fallback = bool(getattr(self.clone, "fallback", False))

        def usable(p: Peer | None) -> bool:
            return p is not None and p.weight > 0 and not p.overloaded

        slots = []
        n = len(table)
        for i, p in enumerate(table):
            if not usable(p) and fallback:
                p = next((table[(i + k) % n] for k in range(1, n)
                          if usable(table[(i + k) % n])), None)
            slots.append(self._id(p) if usable(p) else 0)
        key = "saddr.sport" if getattr(self.clone, "use_port", False) else "saddr"
        return Pick(PICK_HASH, tuple(slots), key=key)

    def simulate(self) -> Pick:
        thresholds = {id(p): m.u_threshold for m in self.members
                      for p in [self.peers[m.id]]}
        picks = []
        for _ in range(self.window):
            peer = self.clone.pick(self.ctx())
            got = self._id(peer)
            if peer is None or not got:
                break
            picks.append(got)
            peer.active += 1  # the new connection, once established
            u = thresholds.get(id(peer), 0)
            if u and peer.active + peer.inactive >= u:
                peer.overloaded = True
        if picks and len(set(picks)) == 1:
            picks = picks[:1]
        return Pick(PICK_SEQUENCE, tuple(picks))


def plan(scheduler: str, balancer: Balancer, members: Sequence[Member], *,
         vaddr: bytes | None, now: float = 0.0, rng: random.Random | None = None,
         window: int = WINDOW) -> Pick:
    """The Pick for one service (see the module docstring)."""
    return Planner(scheduler, balancer, members, vaddr=vaddr, now=now, rng=rng,
                   window=window).plan()
