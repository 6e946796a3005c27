"""IPVS `lblc`, locality-based least connection (PURE): net/netfilter/ipvs/ip_vs_lblc.c.

For cache clusters: each destination address (`ctx.daddr`, the packet's destination) keeps the
server it was last given. A pick looks the address up (and marks the entry used at `ctx.now`);
the cached server is kept while it is still in the service (`available`), has weight > 0 and is
not "overloaded" in lblc's own sense: more active connections than its weight while some server
m has `m.active * 2 < m.weight`. (lblc does not test the IP_VS_DEST_F_OVERLOAD flag for the
cached server, only in the fresh choice.) Otherwise the server is chosen afresh by weighted least
connection (wlc over the whole list) and the entry replaced. Entries expire as the kernel's timer
drops them (ipvs_locality.py): unused for `expiration` seconds (lblc_expiration, 24 h).
As in the kernel's ip_vs_lblc_new(), replacing an entry unlinks the old one without decrementing
the table's entry count, so `table.entries` (which gates new entries at max_size) can run ahead
of `len(table)`; halb keeps that behaviour rather than fix it silently.

Parameters: `expiration` (seconds), `max_size` (16384, the kernel's 1024 * 16; smaller for tests),
`start` (when the service was created: the GC timer's origin; default the first pick's now).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from halb.balancing.base import Needs, Peer, PickContext, register
from halb.balancing.ipvs_common import IpvsBalancer, wlc_pick
from halb.balancing.ipvs_locality import DEFAULT_EXPIRATION, MAX_SIZE, LocalityTable


@dataclass(slots=True)
class LblcEntry:
    dest: Peer
    lastuse: float


def lblc_overloaded(dest: Peer, dests: Sequence[Peer]) -> bool:
    """is_overloaded() of lblc/lblcr: busier than its weight while another server is half idle."""
    return dest.active > dest.weight and any(d.active * 2 < d.weight for d in dests)


@register
class IpvsLocalityLeastConn(IpvsBalancer):
    name = "lblc"
    needs = Needs.DESTINATION

    def __init__(self, peers: Sequence[Peer], backup: Sequence[Peer] = (), *,
                 expiration: float = DEFAULT_EXPIRATION, max_size: int = MAX_SIZE,
                 start: float | None = None, **params: Any) -> None:
        self.table: LocalityTable[LblcEntry] = LocalityTable(expiration, max_size, start)
        super().__init__(peers, backup, **params)

    def expire(self, now: float) -> None:
        """Let the GC timer catch up with `now` (also done by every pick)."""
        self.table.expire(now)

    def pick(self, ctx: PickContext) -> Peer | None:
        self.table.expire(ctx.now)
        daddr = ctx.daddr or b"\0\0\0\0"
        en = self.table.get(daddr)
        if en is not None:
            en.lastuse = ctx.now
            d = en.dest
            if self.available(d) and d.weight > 0 and not lblc_overloaded(d, self.dests):
                return d
        d = wlc_pick(self.dests)
        if d is None:
            return None
        if en is not None:
            if en.dest is d:
                return d
            # ip_vs_lblc_new() unlinks the stale entry without decrementing the count
            self.table.remove(daddr, count=False)
        self.table.add(daddr, LblcEntry(d, ctx.now))
        return d
