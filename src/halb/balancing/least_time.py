"""nginx's `least_time header|last_byte [inflight]` (PURE): ngx_http_upstream_least_time_module.c
(nginx OSS since 1.31.0).

Per peer, nginx keeps moving averages in whole milliseconds of the time to the response header
(`peer.header_time`) and to the last byte (`peer.response_time`):
`avg = avg ? (msec) (0.5 + 0.05 * v + 0.95 * avg) : v`, fed by successful attempts only
(release() with outcome SUCCESS and a header_time; times are given in seconds).

eta(peer): rt = the chosen average; once `now - checked > fail_timeout` it is halved per
`fail_timeout + 1` seconds idle (`rt >>= (now - checked) / (fail_timeout + 1)`), so slow peers
get another chance; with requests in flight `rt = max(rt, inflight average)`; rt above 5000 is
5000, anything else is rounded up to the next 20 ms bucket (`rt += 20 - rt % 20`);
`eta = rt * (1 + conns)`. The usable peer with the least eta for its weight wins (compared by
cross-multiplication), ties by a smooth-WRR step from the first of them. Backup group and
single-peer round robin as in least_conn. nginx Plus's slow_start: a ramping peer compares
with its ramped weight (nginx_peers.ramp) and ties go to the ramped smooth-WRR step.

`inflight` also accounts requests still in flight: nginx sums their elapsed time
(inflight_last / inflight_reqs / inflight_reqs_changed, in ms) and averages the per-request
mean into `inflight_time` each time the peer is considered. nginx closes an attempt's in-flight
accounting when the header arrives (mode header) or at the end (last_byte); halb has one
release() call, so with `header` the header is accounted at release time (same arithmetic,
later clock). The in-flight counters live in `peer.extra["least_time"]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from halb.balancing.base import ConfigurationError, Needs, Outcome, Peer, PickContext, register
from halb.balancing.nginx_peers import (
    NginxBalancer,
    ramped_weight,
    seconds,
    take,
    usable,
    wrr_step,
    wrr_step_ramped,
)

MAX_RT = 5000
BUCKET = 20


@dataclass(slots=True)
class Inflight:
    reqs: int = 0  # inflight_reqs
    last: int = 0  # inflight_last: summed elapsed ms of the requests in flight
    changed: int = 0  # inflight_reqs_changed (ms)
    time: int = 0  # inflight_time: moving average (ms)


def inflight_of(peer: Peer) -> Inflight:
    state = peer.extra.get("least_time")
    if state is None:
        state = peer.extra["least_time"] = Inflight()
    return state


def time_avg(avg: int, v: int) -> int:
    """ngx_http_upstream_response_time_avg: integer ms, rounded."""
    return int(0.5 + 0.05 * v + 0.95 * avg) if avg else v


def msec(t: float) -> int:
    """Seconds (float) to nginx's ngx_msec_t."""
    return int(t * 1000)


def duration_ms(t: float) -> int:
    return max(0, int(t * 1000 + 0.5))


@register
class LeastTime(NginxBalancer):
    name = "least_time"
    needs = Needs.TIMING
    supports_slow_start = True

    def __init__(self, peers: Any, backup: Any = (), *, measure: str = "header",
                 inflight: bool = False, **params: Any) -> None:
        if measure not in ("header", "last_byte"):
            raise ConfigurationError(f'invalid value "{measure}"')
        super().__init__(peers, backup, measure=measure, inflight=inflight, **params)
        self.measure = measure
        self.inflight = inflight

    def eta(self, peer: Peer, now: int) -> int:
        rt = int(peer.header_time if self.measure == "header" else peer.response_time)
        if now - peer.checked > peer.fail_timeout:
            shift = int((now - peer.checked) // (peer.fail_timeout + 1))
            rt = rt >> shift if shift < 64 else 0
        inf = inflight_of(peer)
        if inf.reqs > 0:
            rt = max(rt, inf.time)
        if rt > MAX_RT:
            rt = MAX_RT
        else:
            rt += BUCKET - rt % BUCKET
        return rt * (1 + peer.conns)

    def pick(self, ctx: PickContext) -> Peer | None:
        if self.single:
            return self.pick_round_robin(ctx)
        now = seconds(ctx.now)
        now_ms = msec(ctx.now)
        return self.with_backup(ctx, lambda group: self._least_time(group, ctx, now, now_ms))

    def _least_time(self, group: Sequence[Peer], ctx: PickContext, now: int,
                    now_ms: int) -> Peer | None:
        candidates = [p for p in group if usable(p, ctx, now)]
        ramped = self.slow_start
        best: Peer | None = None
        best_eta, best_w, p, many = 0, 0.0, 0, False
        for i, peer in enumerate(candidates):
            inf = inflight_of(peer)
            if inf.reqs > 0:
                inf.time = time_avg(inf.time, inf.last // inf.reqs + (now_ms - inf.changed))
            eta = self.eta(peer, now)
            w = ramped_weight(peer, ctx.now) if ramped else peer.weight
            if best is None or eta * best_w < best_eta * w:
                best, best_eta, best_w, p, many = peer, eta, w, i, False
            elif eta * best_w == best_eta * w:
                many = True
        if best is None:
            return None
        if many:
            first = best
            if ramped:
                tied = [q for q in candidates[p:] if self.eta(q, now) * best_w
                        == best_eta * ramped_weight(q, ctx.now)]
                best = wrr_step_ramped(tied, ctx.now) or first
            else:
                tied = [q for q in candidates[p:]
                        if self.eta(q, now) * first.weight == best_eta * q.weight]
                best = wrr_step(tied) or first
        if self.inflight:
            inf = inflight_of(best)
            if inf.reqs > 0:
                inf.last += (now_ms - inf.changed) * inf.reqs
            inf.changed = now_ms
            inf.reqs += 1
        return take(best, ctx, now)

    def release(self, peer: Peer, outcome: Outcome, now: float, *,
                header_time: float | None = None, response_time: float | None = None) -> None:
        header = None if header_time is None else duration_ms(header_time)
        response = None if response_time is None else duration_ms(response_time)
        # nginx's notify(HEADER) with `inflight` and mode header: header average, in-flight done
        notified = self.inflight and self.measure == "header" and header is not None
        if notified:
            peer.header_time = time_avg(int(peer.header_time), header)
        inf = inflight_of(peer)
        if self.inflight and not self.single and inf.reqs > 0:
            last = header if notified else (response or 0)
            if inf.reqs == 1:
                inf.last = 0
            else:
                inf.last = max(0, inf.last + (msec(now) - inf.changed) * inf.reqs - last)
                inf.changed = msec(now)
            inf.reqs -= 1
        # only successful attempts feed the averages, and only when a header came
        if outcome is Outcome.SUCCESS and header is not None:
            if response is not None:
                peer.response_time = time_avg(int(peer.response_time), response)
            if not (self.inflight and self.measure == "header"):
                peer.header_time = time_avg(int(peer.header_time), header)
        super().release(peer, outcome, now)
