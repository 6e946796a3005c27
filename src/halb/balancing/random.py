"""nginx's `random [two [least_conn]]` (PURE): ngx_http_upstream_random_module.c.

Every peer owns the range [sum of the weights before it, + its weight) in config order; a draw
is `x = rng.randrange(total_weight)` and a binary search finds the range holding x (`down`
peers keep their range). An unusable draw costs a try.

`two`: draws until two distinct usable peers are found and keeps the one with fewer connections
for its weight; as in nginx's code, the first draw is kept only when the second is strictly
more loaded, so a tie goes to the second draw. Every draw except the last counts as a try.

More than 20 tries (kept per request in ctx.state), or fewer than 2 peers, fall back to round
robin. No backup servers; `two least_time` is nginx Plus only and refused.
"""

from __future__ import annotations

import bisect
from typing import Any

from halb.balancing.base import ConfigurationError, Peer, PickContext, register
from halb.balancing.nginx_peers import NginxBalancer, seconds, take, total_weight, usable

TRIES = "random.tries"


@register
class Random(NginxBalancer):
    name = "random"
    allows_backup = False

    def __init__(self, peers: Any, backup: Any = (), *, two: bool = False,
                 method: str = "least_conn", **params: Any) -> None:
        if method != "least_conn":
            raise ConfigurationError(f'invalid parameter "{method}"')
        super().__init__(peers, backup, two=two, method=method, **params)
        self.two = two
        self._ranges: list[int] | None = None

    def ranges(self) -> list[int]:
        """The start of each peer's range (ngx_http_upstream_random_range_t.range)."""
        if self._ranges is None:
            starts, acc = [], 0
            for peer in self.peers:
                starts.append(acc)
                acc += peer.weight
            self._ranges = starts
        return self._ranges

    def weight_changed(self, peer: Peer, weight: int) -> None:
        super().weight_changed(peer, weight)
        self._ranges = None

    def peek(self, ctx: PickContext) -> Peer:
        x = ctx.rng.randrange(total_weight(self.peers))
        return self.peers[bisect.bisect_right(self.ranges(), x) - 1]

    def pick(self, ctx: PickContext) -> Peer | None:
        if ctx.state.get(TRIES, 0) > 20 or len(self.peers) < 2:
            return self.pick_round_robin(ctx)
        now = seconds(ctx.now)
        prev: Peer | None = None
        while True:
            peer = self.peek(ctx)
            if peer is not prev and usable(peer, ctx, now):
                if not self.two:
                    return take(peer, ctx, now)
                if prev is not None:
                    if peer.conns * prev.weight > prev.conns * peer.weight:
                        peer = prev
                    return take(peer, ctx, now)
                prev = peer
            ctx.state[TRIES] = ctx.state.get(TRIES, 0) + 1
            if ctx.state[TRIES] > 20:
                return self.pick_round_robin(ctx)
