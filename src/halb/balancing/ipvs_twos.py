"""IPVS `twos`, power of two choices (PURE): net/netfilter/ipvs/ip_vs_twos.c (Linux 5.12+).

total = the sum of the weights of the dests not overloaded with weight > 0, plus 1; two random
numbers r1, r2 in [0, total) (`get_random_u32_below`, here `ctx.rng.randrange`, drawn in that
order). Walking the list (overloaded and weight <= 0 skipped), each weight is subtracted from both;
the first dest where r1 <= 0 is choice 1, the first where r2 <= 0 choice 2. Choice 2 wins only
when `w2 * overhead1 > w1 * overhead2` (fewer connections for its weight); else choice 1.
Since r < total, both are always found by the last eligible dest. Dest i is drawn with
probability w_i / total, except that the first one also takes r = 0 ((w_1 + 1) / total).
"""

from __future__ import annotations

from halb.balancing.base import Peer, PickContext, register
from halb.balancing.ipvs_common import IpvsBalancer, overhead


@register
class IpvsTwoChoices(IpvsBalancer):
    name = "twos"

    def pick(self, ctx: PickContext) -> Peer | None:
        eligible = [d for d in self.dests if not d.overloaded and d.weight > 0]
        if not eligible:
            return None
        choice1 = choice2 = eligible[-1]
        total = sum(d.weight for d in eligible) + 1
        r1 = ctx.rng.randrange(total)
        r2 = ctx.rng.randrange(total)
        w1 = w2 = -1
        oh1 = oh2 = 0
        for d in eligible:
            r1 -= d.weight
            r2 -= d.weight
            if r1 <= 0 and w1 == -1:
                choice1, w1, oh1 = d, d.weight, overhead(d)
            if r2 <= 0 and w2 == -1:
                choice2, w2, oh2 = d, d.weight, overhead(d)
            if w1 != -1 and w2 != -1:
                break
        if w2 * oh1 > w1 * oh2:
            choice1 = choice2
        return choice1
