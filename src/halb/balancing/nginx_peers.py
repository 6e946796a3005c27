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
  with its own tried set) and nginx's `free` as `release()`;
- nginx Plus's `slow_start=T`: `ramp(peer, now)` is the share of its weight a recovering peer
  has, growing linearly from 0 to 1 over T seconds after `peer.recovered` (set when an active
  health check finds it healthy again, or, here in `release()`, to the second a passive failure
  lets it be tried again: `checked + fail_timeout + 1`). Only groups whose method supports it
  (round robin, least_conn, least_time; `supports_slow_start`), with more than one server and a
  slow_start server, run the ramped selection (`wrr_step_ramped`: the same smooth WRR in
  thousandths of a weight, which picks exactly as `wrr_step` once no ramp is running); every
  other group keeps the plain path, decided once when the balancer is built.

Time is nginx's `ngx_time()`: whole seconds, so `now` is floored (`fail_timeout` is whole
seconds in nginx too). The tried sets hold `id(peer)`; `ctx.tried` is the primary group's,
`ctx.backup_tried` the backup group's. Per-request state lives in `ctx.state`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

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


SCALE = 1000  # wrr_step_ramped counts weights in thousandths


def ramp(peer: Peer, now: float) -> float:
    """The share of its weight `peer` has now: 1.0 unless a slow_start ramp is running, then
    (now - recovered) / slow_start, 0 before the ramp starts. A finished ramp is cleared."""
    since = peer.recovered
    if not since:
        return 1.0
    elapsed = now - since
    if elapsed >= peer.slow_start:
        peer.recovered = 0.0
        return 1.0
    return elapsed / peer.slow_start if elapsed > 0 else 0.0


def wrr_step_ramped(peers: Iterable[Peer], now: float) -> Peer | None:
    """wrr_step with slow_start: each peer adds its effective weight times its ramp, counted
    in thousandths (current_weight is in the same unit, so with no ramp running the choices
    are exactly wrr_step's). The effective_weight recovery stays +1 per round."""
    best: Peer | None = None
    total = 0
    for peer in peers:
        ew = peer.effective_weight * SCALE
        if peer.recovered:
            ew = int(ew * ramp(peer, now))
        peer.current_weight += ew
        total += ew
        if peer.effective_weight < peer.weight:
            peer.effective_weight += 1
        if best is None or peer.current_weight > best.current_weight:
            best = peer
    if best is not None:
        best.current_weight -= total
    return best


def ramped_weight(peer: Peer, now: float) -> float:
    """The weight least_conn / least_time compare with during a slow_start ramp."""
    return peer.weight * ramp(peer, now) if peer.recovered else float(peer.weight)


def take(peer: Peer, ctx: PickContext, now: int) -> Peer:
    """Mark the chosen peer as nginx does: tried for this request, `checked`, one more conn."""
    tried_set(peer, ctx).add(id(peer))
    if now - peer.checked > peer.fail_timeout:
        peer.checked = now
    peer.conns += 1
    return peer


def _wrr_take(group: Sequence[Peer], tried: set[int], now: int) -> Peer | None:
    """take(wrr_step(usable peers of group)), in one loop: the round-robin path of every
    request (`tried` is the group's tried set)."""
    best: Peer | None = None
    best_weight = 0
    total = 0
    for peer in group:
        if peer.down or not peer.healthy or (tried and id(peer) in tried):
            continue
        fails = peer.fails  # (no fails: not failed, whatever max_fails says)
        if fails and peer.max_fails and fails >= peer.max_fails and \
                now - peer.checked <= peer.fail_timeout:  # failed()
            continue
        if peer.max_conns and peer.conns >= peer.max_conns:  # at_max_conns()
            continue
        ew = peer.effective_weight
        peer.current_weight = cw = peer.current_weight + ew
        total += ew
        if ew < peer.weight:
            peer.effective_weight = ew + 1
        if best is None or cw > best_weight:
            best = peer
            best_weight = cw
    if best is None:
        return None
    best.current_weight -= total
    tried.add(id(best))
    if now - best.checked > best.fail_timeout:
        best.checked = now
    best.conns += 1
    return best


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

    supports_slow_start: ClassVar[bool] = False

    def __init__(self, peers: Sequence[Peer], backup: Sequence[Peer] = (),
                 **params: Any) -> None:
        super().__init__(peers, backup, **params)
        # nginx Plus: slow_start is ignored for a single server and by the hash methods
        self.slow_start = self.supports_slow_start and not self.single and \
            any(p.slow_start > 0 for p in self.all_peers())

    @property
    def single(self) -> bool:
        """peers->single: one primary peer and no backup group."""
        return len(self.peers) == 1 and not self.backup

    def pick(self, ctx: PickContext) -> Peer | None:
        return self.pick_round_robin(ctx)

    def pick_round_robin(self, ctx: PickContext) -> Peer | None:
        """ngx_http_upstream_get_round_robin_peer (the fallback of every other method)."""
        now = math.floor(ctx.now)  # seconds()
        peers = self.peers
        backup = self.backup
        if len(peers) == 1 and not backup:  # self.single
            # never marked failed: only `down` (or unhealthy) and max_conns keep it out
            peer = peers[0]
            if peer.down or not peer.healthy or at_max_conns(peer) or id(peer) in ctx.tried:
                return None
            ctx.tried.add(id(peer))
            peer.conns += 1
            return peer
        if self.slow_start:
            return self.with_backup(ctx, lambda group: self._round_robin(group, ctx, now))
        # with_backup and _round_robin without slow_start, in one pass per group
        if not ctx.state.get(BACKUP):
            peer = _wrr_take(peers, ctx.tried, now)
            if peer is not None or not backup:
                return peer
            ctx.state[BACKUP] = True
            ctx.backup_tried.clear()
        return _wrr_take(backup, ctx.backup_tried, now)

    def _round_robin(self, group: Sequence[Peer], ctx: PickContext, now: int) -> Peer | None:
        if self.slow_start:
            best = wrr_step_ramped((p for p in group if usable(p, ctx, now)), ctx.now)
            return None if best is None else take(best, ctx, now)
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
        if len(self.peers) == 1 and not self.backup:  # self.single
            peer.fails = 0
            peer.conns = max(0, peer.conns - 1)
            return
        t = math.floor(now)  # seconds()
        if outcome is Outcome.FAILED:
            peer.fails += 1
            peer.accessed = peer.checked = t
            if peer.max_fails:
                peer.effective_weight -= peer.weight // peer.max_fails
                if self.slow_start and peer.fails >= peer.max_fails and peer.slow_start:
                    # failed: usable again once fail_timeout has passed, then ramping up
                    peer.recovered = t + peer.fail_timeout + 1
            if peer.effective_weight < 0:
                peer.effective_weight = 0
        elif peer.accessed < peer.checked:
            peer.fails = 0  # the first success after fail_timeout marks it live again
        conns = peer.conns
        peer.conns = conns - 1 if conns > 0 else 0
