"""IPVS `sed`, shortest expected delay (PURE): net/netfilter/ipvs/ip_vs_sed.c.

wlc's comparison with the expected delay (active + 1) / weight: inactive connections do not
count, and the `+ 1` (the new job) makes a heavier server win at equal active counts. The first
dest not overloaded with weight > 0 starts; a later one (overloaded skipped) wins only when
`loh * d.weight > doh * least.weight`, so ties keep the earlier dest and weight 0 never wins.
"""

from __future__ import annotations

from halb.balancing.base import Peer, PickContext, register
from halb.balancing.ipvs_common import IpvsBalancer


def sed_overhead(d: Peer) -> int:
    return d.active + 1


@register
class IpvsShortestExpectedDelay(IpvsBalancer):
    name = "sed"

    def pick(self, ctx: PickContext) -> Peer | None:
        least: Peer | None = None
        loh = 0
        for d in self.dests:
            if d.overloaded:
                continue
            if least is None:
                if d.weight > 0:
                    least, loh = d, sed_overhead(d)
                continue
            doh = sed_overhead(d)
            if loh * d.weight > doh * least.weight:
                least, loh = d, doh
        return least
