"""nginx's shared round-robin peer machinery (PURE): ngx_http_upstream_round_robin.c.

Every nginx balancing method is built on this module, as every nginx method is built on the
round-robin module in C:

- `usable(peer, ctx)`: the eligibility test each method repeats (not tried for this request,
  not `down`, healthy, not failed `max_fails` times within `fail_timeout`, below `max_conns`);
- `wrr_step(peers)`: one smooth weighted round-robin step over a set of peers (with the
  `effective_weight` recovery of +1 per selection round, the first peer winning ties);
- `take(peer, ctx, now)`: what nginx does to the chosen peer (tried, `checked`, `conns++`);
- `weighted_bucket(peers, w)`: the weighted bucket walk of ip_hash and hash;
- `NginxBalancer`: the round-robin `get` (single-peer special case, switch to the backup group
  with its own tried set) and nginx's `free` as `release()`.

Time is nginx's `ngx_time()`: whole seconds, so `now` is floored (`fail_timeout` is whole
seconds in nginx too). The tried sets hold `id(peer)`; `ctx.tried` is the primary group's,
`ctx.backup_tried` the backup group's. Per-request state lives in `ctx.state`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

from halb.balancing.base import Balancer, Outcome, Peer, PickContext

BACKUP = "nginx.backup"  # ctx.state: this request has switched to the backup group


def seconds(now: float) -> int:
    """nginx's ngx_time(): the current time in whole seconds."""
    return math.floor(now)


def tried_set(peer: Peer, ctx: PickContext) -> set[int]:
    return ctx.backup_tried if peer.backup else ctx.tried


def failed(peer: Peer, now: int) -> bool:
    """Failed `max_fails` times and `fail_timeout` has not passed since the last check."""
    return bool(peer.max_fails) and peer.fails >= peer.max_fails \
        and now - peer.checked <= peer.fail_timeout


def at_max_conns(peer: Peer) -> bool:
    return bool(peer.max_conns) and peer.conns >= peer.max_conns


def usable(peer: Peer, ctx: PickContext, now: int | None = None) -> bool:
    """May `peer` be chosen for this attempt (the checks every nginx method makes)."""
    if now is None:
        now = seconds(ctx.now)
    return (id(peer) not in tried_set(peer, ctx) and not peer.down and peer.healthy
            and not failed(peer, now) and not at_max_conns(peer))


def wrr_step(peers: Iterable[Peer]) -> Peer | None:
    """One smooth weighted round-robin step (ngx_http_upstream_get_peer) over `peers`,
    which the caller has already filtered with `usable`. Returns the best peer or None."""
    best: Peer | None = None
    total = 0
    for peer in peers:
        peer.current_weight += peer.effective_weight
        total += peer.effective_weight
        if peer.effective_weight < peer.weight:
            peer.effective_weight += 1
        if best is None or peer.current_weight > best.current_weight:
            best = peer
    if best is not None:
        best.current_weight -= total
    return best


def take(peer: Peer, ctx: PickContext, now: int) -> Peer:
    """Mark the chosen peer as nginx does: tried for this request, `checked`, one more conn."""
    tried_set(peer, ctx).add(id(peer))
    if now - peer.checked > peer.fail_timeout:
        peer.checked = now
    peer.conns += 1
    return peer


def weighted_bucket(peers: Sequence[Peer], w: int) -> Peer:
    """The peer whose weight range holds `w` (0 <= w < total weight), in config order."""
    for peer in peers:
        if w < peer.weight:
            return peer
        w -= peer.weight
    raise ValueError("w is not below the total weight")


def total_weight(peers: Iterable[Peer]) -> int:
    """peers->total_weight: every configured peer counts, `down` ones included."""
    return sum(p.weight for p in peers)


class NginxBalancer(Balancer):
    """The nginx round-robin base: `pick` is plain smooth WRR, `release` is nginx's free."""

    @property
    def single(self) -> bool:
        """peers->single: one primary peer and no backup group."""
        return len(self.peers) == 1 and not self.backup

    def pick(self, ctx: PickContext) -> Peer | None:
        return self.pick_round_robin(ctx)

    def pick_round_robin(self, ctx: PickContext) -> Peer | None:
        """ngx_http_upstream_get_round_robin_peer (the fallback of every other method)."""
        now = seconds(ctx.now)
        if self.single:
            # never marked failed: only `down` (or unhealthy) and max_conns keep it out
            peer = self.peers[0]
            if peer.down or not peer.healthy or at_max_conns(peer) or id(peer) in ctx.tried:
                return None
            ctx.tried.add(id(peer))
            peer.conns += 1
            return peer
        return self.with_backup(ctx, lambda group: self._round_robin(group, ctx, now))

    def _round_robin(self, group: Sequence[Peer], ctx: PickContext, now: int) -> Peer | None:
        best = wrr_step(p for p in group if usable(p, ctx, now))
        return None if best is None else take(best, ctx, now)

    def with_backup(self, ctx: PickContext,
                    pick_group: Callable[[Sequence[Peer]], Peer | None]) -> Peer | None:
        """Pick from the primary group; when none is usable, switch this request to the backup
        group for good (nginx sets rrp->peers = peers->next and clears tried)."""
        if not ctx.state.get(BACKUP):
            peer = pick_group(self.peers)
            if peer is not None or not self.backup:
                return peer
            ctx.state[BACKUP] = True
            ctx.backup_tried.clear()
        return pick_group(self.backup)

    def release(self, peer: Peer, outcome: Outcome, now: float, *,
                header_time: float | None = None, response_time: float | None = None) -> None:
        """ngx_http_upstream_free_round_robin_peer. NEXT (403/404) is not a failure and takes
        the same branch as a success in nginx (`state & NGX_PEER_FAILED` is false)."""
        if self.single:
            peer.fails = 0
            peer.conns = max(0, peer.conns - 1)
            return
        t = seconds(now)
        if outcome is Outcome.FAILED:
            peer.fails += 1
            peer.accessed = peer.checked = t
            if peer.max_fails:
                peer.effective_weight -= peer.weight // peer.max_fails
            if peer.effective_weight < 0:
                peer.effective_weight = 0
        elif peer.accessed < peer.checked:
            peer.fails = 0  # the first success after fail_timeout marks it live again
        peer.conns = max(0, peer.conns - 1)
