"""nginx Plus's `slow_start=T` in the nginx balancers (nginx_peers.ramp), with a fake clock.

A recovering server's weight grows linearly from 0 to its weight over T after it recovered
(active health) or after its fail_timeout ran out (passive). Its share of the picks follows:
with two weight-1 servers, one halfway through its ramp gets 1/3 of the requests, at the start
none, after T half. Without a running ramp the choices are exactly nginx's. Only round robin,
least_conn and least_time ramp; the hash methods and a single server ignore slow_start.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from halb.balancing import Outcome, Peer, PickContext, create
from halb.balancing.nginx_peers import SCALE, ramp, wrr_step, wrr_step_ramped
from halb.balancing.shared import Zone, ZoneBalancer

T0 = 1000.0


def peers(*weights: int, slow: float = 10.0, **kw: float) -> list[Peer]:
    return [Peer(chr(ord("a") + i), "127.0.0.1", 8000 + i, weight=w,
                 slow_start=slow if i == 0 else 0.0, **kw)  # type: ignore[arg-type]
            for i, w in enumerate(weights)]


def shares(method: str, ps: list[Peer], now: float, n: int = 300,
           finish: bool = True) -> Counter[str]:
    bal = create(method, ps)
    rng = random.Random(1)
    out: Counter[str] = Counter()
    for _ in range(n):
        p = bal.pick(PickContext(now=now, rng=rng))
        assert p is not None
        out[p.name] += 1
        if finish:
            bal.release(p, Outcome.SUCCESS, now)
    return out


def test_ramp_is_linear_and_clears_when_done() -> None:
    p = Peer("a", weight=4, slow_start=10.0)
    assert ramp(p, T0) == 1.0  # no ramp running
    p.recovered = T0
    assert ramp(p, T0 - 1) == 0.0  # not started yet (passive: still failed)
    assert ramp(p, T0) == 0.0
    assert ramp(p, T0 + 2.5) == pytest.approx(0.25)
    assert ramp(p, T0 + 7.5) == pytest.approx(0.75)
    assert p.recovered == T0
    assert ramp(p, T0 + 10) == 1.0
    assert p.recovered == 0.0  # a finished ramp costs nothing afterwards


@pytest.mark.parametrize("method", ["round_robin", "least_conn"])
def test_share_follows_the_ramp(method: str) -> None:
    ps = peers(1, 1)
    ps[0].recovered = T0
    start = shares(method, ps, T0 + 0.001)
    assert start["a"] <= 1
    ps[0].recovered = T0
    half = shares(method, ps, T0 + 5)  # weight 0.5 against 1: a third
    assert half["a"] == pytest.approx(100, abs=2)
    ps[0].recovered = T0
    done = shares(method, ps, T0 + 10)
    assert done["a"] == 150


def test_least_time_weighs_the_ramp() -> None:
    """least_time compares time x load per weight: with equal times and no load, the lighter
    (ramping) server loses every time until its ramp is over, then they alternate."""
    ps = peers(1, 1)
    ps[0].recovered = T0
    assert shares("least_time", ps, T0 + 5)["a"] == 0
    ps[0].recovered = T0
    assert shares("least_time", ps, T0 + 10)["a"] == 150


def test_round_robin_without_a_ramp_is_nginx_sequence() -> None:
    ps = peers(5, 1, 1)  # `a` has slow_start but is not ramping
    bal = create("round_robin", ps)
    assert bal.slow_start  # type: ignore[attr-defined]
    rng = random.Random(0)
    seq = "".join(bal.pick(PickContext(now=T0, rng=rng)).name  # type: ignore[union-attr]
                  for _ in range(7))
    assert seq == "aabacaa"
    # and the ramped step picks as wrr_step over the same peers, weights in thousandths
    a, b = peers(3, 2, slow=0), peers(3, 2, slow=0)
    for _ in range(20):
        x, y = wrr_step(a), wrr_step_ramped(b, T0)
        assert x is not None and y is not None and x.name == y.name
        assert [p.current_weight * SCALE for p in a] == [p.current_weight for p in b]


def test_heavier_peer_ramps_in_proportion() -> None:
    ps = peers(3, 1)
    ps[0].recovered = T0
    got = shares("round_robin", ps, T0 + 5, n=250)  # 1.5 against 1
    assert got["a"] == pytest.approx(150, abs=2)


def test_passive_failure_ramps_after_fail_timeout() -> None:
    ps = peers(1, 1, max_fails=1, fail_timeout=10)
    bal = create("round_robin", ps)
    rng = random.Random(0)
    a = ps[0]
    bal.release(a, Outcome.FAILED, T0 + 0.3)  # failed at second 1000
    assert a.recovered == T0 + 11  # usable again from second 1011, weight 0 then
    for t in (T0 + 5, T0 + 11.01):
        names = {bal.pick(PickContext(now=t, rng=rng)).name for _ in range(20)}  # type: ignore
        assert names == {"b"}
    got = shares("round_robin", ps, T0 + 16)  # halfway: a third (the counters carry on)
    assert got["a"] == pytest.approx(100, abs=2)


def test_least_conn_compares_the_ramped_weight() -> None:
    ps = peers(1, 1)
    ps[0].recovered = T0
    ps[0].conns, ps[1].conns = 1, 2  # a: 1 conn at weight 0.25 is "4"; b: 2 at 1 is "2"
    bal = create("least_conn", ps)
    p = bal.pick(PickContext(now=T0 + 2.5, rng=random.Random(0)))
    assert p is not None and p.name == "b"
    ps[0].recovered = 0.0  # without the ramp a has fewer connections and wins
    p = bal.pick(PickContext(now=T0 + 2.5, rng=random.Random(0)))
    assert p is not None and p.name == "a"


@pytest.mark.parametrize("method,params", [("ip_hash", {}), ("hash", {}),
                                           ("random", {}), ("random", {"two": True})])
def test_hash_methods_ignore_slow_start(method: str, params: dict[str, bool]) -> None:
    ps = peers(1, 1)
    ps[0].recovered = T0
    bal = create(method, ps, **params)
    assert not bal.slow_start  # type: ignore[attr-defined]
    ctx = PickContext(now=T0, rng=random.Random(0), client=b"\x7f\0\0\1", key="k")
    assert bal.pick(ctx) is not None


def test_single_server_ignores_slow_start() -> None:
    ps = peers(1)
    ps[0].recovered = T0
    bal = create("round_robin", ps)
    assert not bal.slow_start  # type: ignore[attr-defined]
    assert bal.pick(PickContext(now=T0, rng=random.Random(0))) is ps[0]


def test_recovered_is_shared_through_a_zone() -> None:
    zone = Zone("z", 2)
    spec = [(("a", "127.0.0.1", 1), {"slow_start": 10.0}), (("b", "127.0.0.1", 2), {})]
    one, two = zone.peers(spec), zone.peers(spec)  # two workers attaching to one segment
    assert one[0].slow_start == 10.0 and two[0].recovered == 0.0
    one[0].recovered = T0
    assert two[0].recovered == T0
    assert zone.healthy(0) is True and Zone("y", 1).healthy(0) is None
    two[0].healthy = False
    assert zone.healthy(0) is False
    bal = ZoneBalancer(create("round_robin", two), zone)
    two[0].healthy = True
    got = Counter(bal.pick(PickContext(now=T0 + 5, rng=random.Random(0))).name  # type: ignore
                  for _ in range(30))
    assert got["a"] == 10
