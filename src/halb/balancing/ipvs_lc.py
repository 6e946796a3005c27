"""IPVS `lc`, least connection (PURE): net/netfilter/ipvs/ip_vs_lc.c.

The dest with the smallest overhead = (active << 8) + inactive, among those not overloaded and
with weight != 0; strict `<`, so a tie keeps the earlier dest. Weights do not scale the load
(that is wlc). The C file's comment still says `activeconns << 5`; its code uses the shared
ip_vs_dest_conn_overhead (`<< 8`), and so does halb.
"""

from __future__ import annotations

from halb.balancing.base import Peer, PickContext, register
from halb.balancing.ipvs_common import IpvsBalancer, overhead


@register
class IpvsLeastConn(IpvsBalancer):
    name = "lc"

    def pick(self, ctx: PickContext) -> Peer | None:
        least: Peer | None = None
        loh = 0
        for d in self.dests:
            if d.overloaded or d.weight == 0:
                continue
            doh = overhead(d)
            if least is None or doh < loh:
                least, loh = d, doh
        return least
