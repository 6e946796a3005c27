"""PURE. What a scenario's records say: who served each request, the figures, the timeline.

Inputs are plain data: the load driver's records (halb.lab.load: t, lat, status, backend,
peer, src, target), the controller's samples of which host held each VIP
([(t, {vip: [hosts]})], taken every ~50 ms), the fault events [(t, label)] and the run's
window. Times are CLOCK_MONOTONIC seconds; `t0` is the start of the load.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from halb.lab import plan

Record = dict[str, Any]
Samples = Sequence[tuple[float, dict[str, list[str]]]]


def ok(status: object) -> bool:
    return isinstance(status, int) and 200 <= status < 400


def attribute(records: list[Record], samples: Samples) -> None:
    """Add to each record the VRRP holder of its target address when it started ("holder":
    the director for the LVS VIP, the nginx node for chapter 3's VIPs) and the nginx node
    that proxied it ("nginx", from the backend's X-Backend-Peer)."""
    times = [s[0] for s in samples]
    for r in records:
        vip = str(r.get("target", "")).rsplit(":", 1)[0]
        i = bisect.bisect_right(times, r["t"]) - 1
        holders = samples[max(i, 0)][1].get(vip, []) if samples else []
        r["holder"] = holders[0] if len(holders) == 1 else ("+".join(holders) or None)
        r["nginx"] = plan.node_of(r["peer"]) if r.get("peer") else None


@dataclass
class Figures:
    requests: int = 0
    scheduled: int = 0
    ok: int = 0
    failed: int = 0
    lost: int = 0
    longest_gap: float = 0.0  # seconds without a successful response inside the window
    gap_at: float = 0.0  # when that gap started, relative to t0
    p50: float = 0.0
    p99: float = 0.0
    max_latency: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    holders: dict[str, int] = field(default_factory=dict)
    nginx: dict[str, int] = field(default_factory=dict)
    backends: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def longest_gap(records: list[Record], start: float, end: float) -> tuple[float, float]:
    """(longest time in [start, end] between successful responses, when it began)."""
    done = sorted(r["t"] + r["lat"] for r in records if ok(r["status"]))
    points = [start, *[d for d in done if start <= d <= end], end]
    best, at = 0.0, start
    for a, b in itertools.pairwise(points):
        if b - a > best:
            best, at = b - a, a
    return best, at


def figures(records: list[Record], scheduled: int, t0: float, t_end: float) -> Figures:
    f = Figures(requests=len(records), scheduled=scheduled)
    f.ok = sum(1 for r in records if ok(r["status"]))
    f.failed = f.requests - f.ok
    f.lost = max(0, scheduled - f.requests)
    gap, at = longest_gap(records, t0, t_end)
    f.longest_gap, f.gap_at = round(gap, 3), round(at - t0, 3)
    lat = [r["lat"] for r in records if ok(r["status"])]
    f.p50, f.p99 = round(_quantile(lat, 0.5), 4), round(_quantile(lat, 0.99), 4)
    f.max_latency = round(max(lat), 4) if lat else 0.0
    f.errors = dict(Counter(str(r["status"]) for r in records if not ok(r["status"])))
    f.holders = dict(Counter(str(r.get("holder")) for r in records if ok(r["status"])))
    f.nginx = dict(Counter(str(r.get("nginx")) for r in records if ok(r["status"])))
    f.backends = dict(Counter(str(r.get("backend")) for r in records if ok(r["status"])))
    return f


def series(records: list[Record], t0: float, t_end: float, step: float = 0.5
           ) -> list[tuple[float, float, float]]:
    """(time from t0, successful responses/s, failed requests/s) per `step` seconds, by the
    time each request ended."""
    n = max(1, int((t_end - t0) / step + 0.999))
    good, bad = [0] * n, [0] * n
    for r in records:
        i = int((r["t"] + r["lat"] - t0) / step)
        i = min(max(i, 0), n - 1)
        if ok(r["status"]):
            good[i] += 1
        else:
            bad[i] += 1
    return [(round(i * step, 3), good[i] / step, bad[i] / step) for i in range(n)]


def transitions(samples: Samples, vip: str, t0: float) -> list[tuple[float, str]]:
    """When the holder of `vip` changed: [(time from t0, "dir2"), ...] (first sample too)."""
    out: list[tuple[float, str]] = []
    last: str | None = None
    for t, held in samples:
        who = "+".join(held.get(vip, [])) or "-"
        if who != last:
            out.append((round(t - t0, 3), who))
            last = who
    return out


def held_by(samples: Samples, vip: str, since: float = float("-inf"),
            until: float = float("inf")) -> set[str]:
    """Every holder of `vip` seen in samples taken in [since, until]."""
    return {"+".join(h.get(vip, [])) or "-" for t, h in samples if since <= t <= until}


def last_holder(samples: Samples, vip: str) -> str:
    return "+".join(samples[-1][1].get(vip, [])) or "-" if samples else "-"


def sticky(records: list[Record]) -> dict[str, set[str]]:
    """Per client source address, the backends that served it."""
    out: dict[str, set[str]] = {}
    for r in records:
        if ok(r["status"]) and r.get("backend"):
            out.setdefault(str(r.get("src")), set()).add(str(r["backend"]))
    return out
