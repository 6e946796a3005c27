"""IPVS `ovf`, overflow connection (PURE): net/netfilter/ipvs/ip_vs_ovf.c.

The dest with the highest weight among those not overloaded, with weight != 0 and no more
active connections than its weight (the first of equal weights wins). When it fills up
(active > weight) new connections overflow to the next. Only active connections count, so the
kernel warns it does not suit UDP.
"""

from __future__ import annotations

from halb.balancing.base import Peer, PickContext, register
from halb.balancing.ipvs_common import IpvsBalancer


@register
class IpvsOverflow(IpvsBalancer):
    name = "ovf"

    def pick(self, ctx: PickContext) -> Peer | None:
        best: Peer | None = None
        hw = 0
        for d in self.dests:
            w = d.weight
            if d.overloaded or d.active > w or w == 0:
                continue
            if best is None or w > hw:
                best, hw = d, w
        return best
