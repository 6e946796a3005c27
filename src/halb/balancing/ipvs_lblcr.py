"""IPVS `lblcr`, locality-based least connection with replication (PURE): ip_vs_lblcr.c.

Like lblc, but each destination address (`ctx.daddr`) keeps a *set* of servers. A pick on a
known address (marking it used at `ctx.now`):

1. takes the set's weighted least-connection member (not overloaded, weight > 0, still in the
   service; ties keep the member added last, as the set is a head-inserted list);
2. if the set has more than one member and was not modified for `expiration` seconds
   (`now > lastmod + expiration`, the lblcr_expiration sysctl, 24 h), drops its weighted
   most-loaded member (`moh * dw < doh * mw`, weight > 0): the replication shrinks back;
3. returns the member from 1 unless it is missing or overloaded in lblc's sense (more active
   connections than its weight while some server m has m.active * 2 < m.weight); then a fresh
   wlc pick over the whole list joins the set (lastmod = now) and is returned.

An unknown address gets a new entry holding the wlc pick. Entries expire as in lblc
(ipvs_locality.py). Parameters as lblc: `expiration`, `max_size`, `start`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from halb.balancing.base import Needs, Peer, PickContext, register
from halb.balancing.ipvs_common import IpvsBalancer, overhead, wlc_pick
from halb.balancing.ipvs_lblc import lblc_overloaded
from halb.balancing.ipvs_locality import DEFAULT_EXPIRATION, MAX_SIZE, LocalityTable


@dataclass(slots=True)
class LblcrEntry:
    lastuse: float
    lastmod: float
    members: list[Peer] = field(default_factory=list)  # head first (list_add_rcu)

    def insert(self, dest: Peer, now: float) -> None:
        """ip_vs_dest_set_insert(..., check=True)."""
        if any(m is dest for m in self.members):
            return
        self.members.insert(0, dest)
        self.lastmod = now

    def erase(self, dest: Peer, now: float) -> None:
        for i, m in enumerate(self.members):
            if m is dest:
                del self.members[i]
                self.lastmod = now
                return


@register
class IpvsLocalityLeastConnReplicated(IpvsBalancer):
    name = "lblcr"
    needs = Needs.DESTINATION

    def __init__(self, peers: Sequence[Peer], backup: Sequence[Peer] = (), *,
                 expiration: float = DEFAULT_EXPIRATION, max_size: int = MAX_SIZE,
                 start: float | None = None, **params: Any) -> None:
        self.table: LocalityTable[LblcrEntry] = LocalityTable(expiration, max_size, start)
        super().__init__(peers, backup, **params)

    def expire(self, now: float) -> None:
        """Let the GC timer catch up with `now` (also done by every pick)."""
        self.table.expire(now)

    def set_min(self, members: Sequence[Peer]) -> Peer | None:
        """ip_vs_dest_set_min(): weighted least-connection among the usable members."""
        least: Peer | None = None
        loh = 0
        for d in members:
            if d.overloaded:
                continue
            if least is None:
                if d.weight > 0 and self.available(d):
                    least, loh = d, overhead(d)
                continue
            doh = overhead(d)
            if loh * d.weight > doh * least.weight and self.available(d):
                least, loh = d, doh
        return least

    @staticmethod
    def set_max(members: Sequence[Peer]) -> Peer | None:
        """ip_vs_dest_set_max(): weighted most-connection among the members with weight > 0."""
        most: Peer | None = None
        moh = 0
        for d in members:
            if most is None:
                if d.weight > 0:
                    most, moh = d, overhead(d)
                continue
            doh = overhead(d)
            if moh * d.weight < doh * most.weight and d.weight > 0:
                most, moh = d, doh
        return most

    def pick(self, ctx: PickContext) -> Peer | None:
        now = ctx.now
        self.table.expire(now)
        daddr = ctx.daddr or b"\0\0\0\0"
        en = self.table.get(daddr)
        if en is not None:
            en.lastuse = now
            d = self.set_min(en.members)
            if len(en.members) > 1 and now > en.lastmod + self.table.expiration:
                m = self.set_max(en.members)
                if m is not None:
                    en.erase(m, now)
            if d is not None and not lblc_overloaded(d, self.dests):
                return d
            d = wlc_pick(self.dests)
            if d is None:
                return None
            en.insert(d, now)
            return d
        d = wlc_pick(self.dests)
        if d is None:
            return None
        self.table.add(daddr, LblcrEntry(lastuse=now, lastmod=now, members=[d]))
        return d
