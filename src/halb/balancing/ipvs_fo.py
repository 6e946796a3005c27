"""IPVS `fo`, weighted fail-over (PURE): net/netfilter/ipvs/ip_vs_fo.c.

All new connections go to the dest with the highest weight among those not overloaded (strict
`>` from 0: the first of equal weights wins, weight 0 never). Lowering the active server's
weight, or its overload, fails over to the next highest.
"""

from __future__ import annotations

from halb.balancing.base import Peer, PickContext, register
from halb.balancing.ipvs_common import IpvsBalancer


@register
class IpvsFailOver(IpvsBalancer):
    name = "fo"

    def pick(self, ctx: PickContext) -> Peer | None:
        best: Peer | None = None
        hw = 0
        for d in self.dests:
            if not d.overloaded and d.weight > hw:
                best, hw = d, d.weight
        return best
