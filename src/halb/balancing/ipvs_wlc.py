"""IPVS `wlc`, weighted least connection, the default scheduler (PURE): ip_vs_wlc.c.

The dest with the smallest overhead / weight, compared without division: the first dest not
overloaded with weight > 0 starts, a later one wins only when `loh * d.weight > doh *
least.weight` (strict, so ties keep the earlier dest; weight 0 never wins), overhead =
(active << 8) + inactive. `ipvsadm -A` without -s means wlc (DEF_SCHED in ipvsadm.c).
"""

from __future__ import annotations

from halb.balancing.base import Peer, PickContext, register
from halb.balancing.ipvs_common import IpvsBalancer, wlc_pick


@register
class IpvsWeightedLeastConn(IpvsBalancer):
    name = "wlc"

    def pick(self, ctx: PickContext) -> Peer | None:
        return wlc_pick(self.dests)
