"""nginx's `least_conn` (PURE): ngx_http_upstream_least_conn_module.c.

The usable peer with the fewest connections for its weight wins, compared by
cross-multiplication (`peer.conns * best.weight < best.conns * peer.weight`, so no division).
When several share the minimum, a smooth-WRR step over those tied peers, starting from the
first of them, chooses (with all conns equal it is exactly round robin). When no primary peer
is usable the request switches to the backup group; a single peer without backup is plain
round robin.

nginx Plus's slow_start: a ramping peer's weight in the comparison is its weight times its ramp
(nginx_peers.ramp), and the tie-break is the ramped smooth-WRR step.
"""

from __future__ import annotations

from collections.abc import Sequence

from halb.balancing.base import Peer, PickContext, register
from halb.balancing.nginx_peers import (
    NginxBalancer,
    ramped_weight,
    seconds,
    take,
    usable,
    wrr_step,
    wrr_step_ramped,
)


def least_loaded(candidates: Sequence[Peer]) -> tuple[Peer, int, bool]:
    """(first best, its index in candidates, whether others tie with it)."""
    best, p, many = candidates[0], 0, False
    for i in range(1, len(candidates)):
        peer = candidates[i]
        if peer.conns * best.weight < best.conns * peer.weight:
            best, p, many = peer, i, False
        elif peer.conns * best.weight == best.conns * peer.weight:
            many = True
    return best, p, many


@register
class LeastConn(NginxBalancer):
    name = "least_conn"
    supports_slow_start = True

    def pick(self, ctx: PickContext) -> Peer | None:
        if self.single:
            return self.pick_round_robin(ctx)
        now = seconds(ctx.now)
        return self.with_backup(ctx, lambda group: self._least_conn(group, ctx, now))

    def _least_conn(self, group: Sequence[Peer], ctx: PickContext, now: int) -> Peer | None:
        candidates = [p for p in group if usable(p, ctx, now)]
        if not candidates:
            return None
        if self.slow_start:
            return self._least_conn_ramped(candidates, ctx, now)
        best, p, many = least_loaded(candidates)
        if many:
            tied = [q for q in candidates[p:]
                    if q.conns * best.weight == best.conns * q.weight]
            best = wrr_step(tied) or best
        return take(best, ctx, now)

    def _least_conn_ramped(self, candidates: Sequence[Peer], ctx: PickContext,
                           now: int) -> Peer:
        ws = [ramped_weight(q, ctx.now) for q in candidates]
        b, many = 0, False
        for i in range(1, len(candidates)):
            lhs = candidates[i].conns * ws[b]
            rhs = candidates[b].conns * ws[i]
            if lhs < rhs:
                b, many = i, False
            elif lhs == rhs:
                many = True
        best = candidates[b]
        if many:
            tied = [q for q, w in zip(candidates[b:], ws[b:], strict=True)
                    if q.conns * ws[b] == best.conns * w]
            best = wrr_step_ramped(tied, ctx.now) or best
        return take(best, ctx, now)
