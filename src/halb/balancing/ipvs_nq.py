"""IPVS `nq`, never queue (PURE): net/netfilter/ipvs/ip_vs_nq.c.

The first idle dest (no active connection) in list order wins at once; with none idle it is
sed: the smallest (active + 1) / weight by cross-multiplication, ties keeping the earlier dest.
Overloaded dests and weight-0 dests are skipped throughout.
"""

from __future__ import annotations

from halb.balancing.base import Peer, PickContext, register
from halb.balancing.ipvs_common import IpvsBalancer
from halb.balancing.ipvs_sed import sed_overhead


@register
class IpvsNeverQueue(IpvsBalancer):
    name = "nq"

    def pick(self, ctx: PickContext) -> Peer | None:
        least: Peer | None = None
        loh = 0
        for d in self.dests:
            if d.overloaded or d.weight == 0:
                continue
            doh = sed_overhead(d)
            if d.active == 0:
                return d
            if least is None or loh * d.weight > doh * least.weight:
                least, loh = d, doh
        return least
