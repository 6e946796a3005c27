"""least_time: nginx's response-time averages, eta arithmetic, in-flight accounting.

Not in nginx 1.22 (OSS since 1.31.0), so there is no live oracle: the tables follow
ngx_http_upstream_least_time_module.c and the averaging macro of round_robin.h.
"""

from __future__ import annotations

import random

import pytest

from halb.balancing import ConfigurationError, Needs, Outcome, Peer, PickContext, create
from halb.balancing.least_time import LeastTime, inflight_of, time_avg


def balancer(weights: tuple[int, ...] = (1, 1), backup: tuple[int, ...] = (),
             **params: object) -> LeastTime:
    ps = [Peer("abcd"[i], weight=w, fail_timeout=10) for i, w in enumerate(weights)]
    bs = [Peer("wxyz"[i], weight=w) for i, w in enumerate(backup)]
    b = create("least_time", ps, bs, **params)
    assert isinstance(b, LeastTime)
    return b


def ctx(now: float = 1000.0) -> PickContext:
    return PickContext(now=now, rng=random.Random(0))


@pytest.mark.parametrize("avg,v,want", [
    (0, 250, 250),  # the first sample is taken as it is
    (100, 200, 105),  # int(0.5 + 10 + 95)
    (100, 100, 100),
    (105, 200, 110),
    (1, 0, 1),
    (20, 0, 19),
    (1000, 0, 950),
    (3, 3, 3),  # 3.4999999999999996 in doubles: truncated
])
def test_time_avg(avg: int, v: int, want: int) -> None:
    assert time_avg(avg, v) == want


@pytest.mark.parametrize("rt,conns,checked,now,inflight_time,want", [
    (0, 0, 1000, 1000, None, 20),  # rounded up to the next 20 ms bucket
    (1, 0, 1000, 1000, None, 20),
    (19, 0, 1000, 1000, None, 20),
    (20, 0, 1000, 1000, None, 40),  # rt += 20 - rt % 20: a multiple still moves up
    (4999, 0, 1000, 1000, None, 5000),
    (5000, 0, 1000, 1000, None, 5020),  # only rt > 5000 is capped
    (5001, 0, 1000, 1000, None, 5000),
    (90000, 2, 1000, 1000, None, 15000),  # capped, then times (1 + conns)
    (100, 1, 1000, 1000, None, 240),
    (100, 0, 1000, 1010, None, 120),  # now - checked == fail_timeout: no halving yet
    (100, 0, 1000, 1011, None, 60),  # 11 // 11 = 1 halving: 50 -> 60
    (100, 0, 1000, 1033, None, 20),  # 33 // 11 = 3 halvings: 100 >> 3 = 12 -> 20
    (100, 0, 0, 100000, None, 20),  # idle for ages: the shift empties it
    (100, 0, 1000, 1000, 300, 320),  # in flight for longer than the average
    (100, 0, 1000, 1000, 50, 120),
])
def test_eta(rt: int, conns: int, checked: int, now: int, inflight_time: int | None,
             want: int) -> None:
    b = balancer()
    p = b.peers[0]
    p.header_time, p.conns, p.checked = rt, conns, checked
    if inflight_time is not None:
        inf = inflight_of(p)
        inf.reqs, inf.time = 1, inflight_time
    assert b.eta(p, now) == want


def test_measure_picks_the_average() -> None:
    header = balancer(measure="header")
    last = balancer(measure="last_byte")
    for b in (header, last):
        b.peers[0].header_time, b.peers[0].response_time = 10, 500
    assert header.eta(header.peers[0], 0) == 20
    assert last.eta(last.peers[0], 0) == 520


def set_times(b: LeastTime, header: tuple[int, ...], now: int = 1000) -> None:
    for p, h in zip(b.peers, header, strict=True):
        p.header_time = h
        p.checked = now


@pytest.mark.parametrize("weights,header,want", [
    ((1, 1), (100, 50), "b"),
    ((1, 1), (50, 100), "a"),
    ((2, 1), (100, 50), "a"),  # 120 / 2 == 60 / 1: tie, WRR from a (weight 2)
    ((1, 1), (41, 59), "a"),  # 60 vs 60: tie, a first
    ((1, 3), (100, 200), "b"),  # 120 * 3 > 220 * 1
])
def test_least_eta_per_weight(weights: tuple[int, ...], header: tuple[int, ...],
                              want: str) -> None:
    b = balancer(weights)
    set_times(b, header)
    p = b.pick(ctx())
    assert p is not None and p.name == want


def test_ties_rotate_by_wrr_and_conns_count() -> None:
    b = balancer((1, 1, 1))
    set_times(b, (30, 35, 500))  # a and b in the same 40 ms bucket, c far behind
    seq = []
    for _ in range(4):
        p = b.pick(ctx())
        assert p is not None
        seq.append(p.name)
        b.release(p, Outcome.NEXT, 1000, header_time=0.001)  # only successes feed them
    assert "".join(seq) == "abab"
    assert [p.header_time for p in b.peers] == [30, 35, 500]
    b.peers[1].conns = 1  # b now at 80 ms
    assert b.pick(ctx()).name == "a"  # type: ignore[union-attr]


@pytest.mark.parametrize("outcome,header,response,want_header,want_response", [
    (Outcome.SUCCESS, 0.2, 0.5, 105, 310),
    (Outcome.SUCCESS, 0.2004, 0.4996, 105, 310),  # whole ms, rounded: 200, 500
    (Outcome.SUCCESS, 0.1, 0.3, 100, 300),
    (Outcome.FAILED, 0.2, 0.5, 100, 300),
    (Outcome.NEXT, 0.2, 0.5, 100, 300),
    (Outcome.SUCCESS, None, 0.5, 100, 300),  # no header: nothing learned
])
def test_release_feeds_the_averages(outcome: Outcome, header: float | None,
                                    response: float | None, want_header: int,
                                    want_response: int) -> None:
    b = balancer()
    p = b.peers[0]
    p.header_time, p.response_time, p.conns = 100, 300, 1
    b.release(p, outcome, 1000, header_time=header, response_time=response)
    assert (p.header_time, p.response_time, p.conns) == (want_header, want_response, 0)


def test_first_sample_is_taken_as_is() -> None:
    b = balancer()
    p = b.peers[0]
    b.release(p, Outcome.SUCCESS, 1000, header_time=0.042, response_time=0.25)
    assert (p.header_time, p.response_time) == (42, 250)


def test_inflight_accounting() -> None:
    b = balancer((1, 1), inflight=True)
    set_times(b, (100, 100))
    p = b.pick(ctx(1000.0))  # a, one request in flight since 1000.000
    assert p is b.peers[0]
    inf = inflight_of(p)
    assert (inf.reqs, inf.last, inf.changed) == (1, 0, 1_000_000)
    # 0.5 s later a is considered again: in flight for 500 ms > its 100 ms average
    q = b.pick(ctx(1000.5))
    assert inf.time == 500
    assert q is b.peers[1]  # a: max(100, 500) -> 520 * 2 conns; b: 120
    b.peers[1].conns = 5  # make a the least loaded again: 120 * 6 > 1040
    r = b.pick(ctx(1001.0))
    assert r is p
    assert inf.time == time_avg(500, 0 // 1 + 1000) == 525
    assert (inf.reqs, inf.last, inf.changed) == (2, 1000, 1_001_000)
    b.release(p, Outcome.SUCCESS, 1001.2, header_time=0.9, response_time=1.2)
    assert inf.reqs == 1
    assert inf.last == 1000 + 200 * 2 - 900  # header mode: the header time closes it
    b.release(p, Outcome.SUCCESS, 1001.4, header_time=0.1, response_time=0.2)
    assert (inf.reqs, inf.last) == (0, 0)


def test_inflight_last_byte_closes_with_the_response_time() -> None:
    b = balancer((1, 1), inflight=True, measure="last_byte")
    b.peers[1].response_time = 5000  # b is slow: a gets both requests
    p = b.pick(ctx(10.0))
    p2 = b.pick(ctx(10.1))  # a: in flight 100 ms -> 120 * 2 conns = 240 < b's 5020
    assert p is b.peers[0] and p2 is p
    inf = inflight_of(p)
    assert (inf.reqs, inf.last, inf.changed) == (2, 100, 10_100)
    b.release(p, Outcome.SUCCESS, 10.3, header_time=0.1, response_time=0.3)
    assert (inf.reqs, inf.last, inf.changed) == (1, 100 + 200 * 2 - 300, 10_300)
    assert p.response_time == 300 and p.header_time == 100


def test_backup_and_single() -> None:
    b = balancer((1,), backup=(1,))
    b.peers[0].down = True
    p = b.pick(ctx())
    assert p is not None and p.name == "w"
    single = balancer((1,))
    assert single.single and single.pick(ctx()) is single.peers[0]


def test_configuration() -> None:
    assert LeastTime.needs is Needs.TIMING
    with pytest.raises(ConfigurationError):
        balancer(measure="first_byte")
