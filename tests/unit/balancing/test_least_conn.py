"""least_conn: fewest connections per weight, ties by smooth WRR (as nginx 1.22 on live traffic,
see tests/conformance/nginx/test_balancing_vs_nginx.py)."""

from __future__ import annotations

import random

import pytest

from halb.balancing import Outcome, Peer, PickContext, create
from halb.balancing.least_conn import LeastConn, least_loaded


def balancer(spec: str, backup: str = "") -> LeastConn:
    def mk(s: str) -> list[Peer]:
        out = []
        for item in s.split():
            name, *rest = item.split(":")
            out.append(Peer(name, weight=int(next((r for r in rest if r.isdigit()), 1)),
                            down="down" in rest))
        return out

    b = create("least_conn", mk(spec), mk(backup))
    assert isinstance(b, LeastConn)
    return b


def ctx() -> PickContext:
    return PickContext(now=1000, rng=random.Random(0))


def conns(b: LeastConn, values: str) -> None:
    for p, v in zip(b.peers, values.split(), strict=True):
        p.conns = int(v)


@pytest.mark.parametrize("spec,conns_,want", [
    ("a b c", "2 1 3", "b"),
    ("a b c", "1 1 3", "a"),  # tie a/b: WRR from the first best
    ("a:3 b", "3 2", "a"),  # 3/3 < 2/1
    ("a:3 b", "4 1", "b"),  # 4/3 > 1/1
    ("a:2 b", "2 1", "a"),  # 2/2 == 1/1: tie, WRR gives the heavier a
    ("a b:down c", "1 0 2", "a"),
    ("a:down b:down", "0 0", "-"),
])
def test_least_conn_choice(spec: str, conns_: str, want: str) -> None:
    b = balancer(spec)
    conns(b, conns_)
    p = b.pick(ctx())
    assert (p.name if p else "-") == want


def test_cross_multiplication_ties() -> None:
    ps = [Peer("a", weight=2), Peer("b", weight=3), Peer("c", weight=1)]
    ps[0].conns, ps[1].conns, ps[2].conns = 4, 6, 3
    best, i, many = least_loaded(ps)
    assert (best.name, i, many) == ("a", 0, True)
    ps[2].conns = 1
    assert least_loaded(ps)[:2] == (ps[2], 2)


@pytest.mark.parametrize("spec,n,want", [
    ("a:3 b:2 c", 12, "abacba" * 2),  # all idle: exactly round robin
    ("a:5 b c", 7, "aabacaa"),
    ("a b c", 6, "abcabc"),
])
def test_sequential_requests_are_round_robin(spec: str, n: int, want: str) -> None:
    b = balancer(spec)
    out = []
    for _ in range(n):
        p = b.pick(ctx())
        assert p is not None
        out.append(p.name)
        b.release(p, Outcome.SUCCESS, 1000)
    assert "".join(out) == want


def test_ties_start_wrr_from_the_first_best() -> None:
    b = balancer("a b c")
    conns(b, "5 1 1")
    seq = []
    for _ in range(4):
        p = b.pick(ctx())
        assert p is not None
        seq.append(p.name)
        b.release(p, Outcome.SUCCESS, 1000)
    assert "".join(seq) == "bcbc"
    assert b.peers[0].current_weight == 0  # a never took part in a WRR round


def test_held_connections_steer_new_ones() -> None:
    b = balancer("a b c:2")
    held = [b.pick(ctx()) for _ in range(4)]
    assert [p.name for p in held if p] == ["c", "a", "b", "c"]
    assert [p.conns for p in b.peers] == [1, 1, 2]


@pytest.mark.parametrize("spec,backup,n,want", [
    ("a:down b:down", "c d:3", 8, "dcdd" * 2),
    ("a:down", "c", 3, "ccc"),
])
def test_backup(spec: str, backup: str, n: int, want: str) -> None:
    b = balancer(spec, backup)
    out = []
    for _ in range(n):
        p = b.pick(ctx())
        out.append(p.name if p else "-")
        if p:
            b.release(p, Outcome.SUCCESS, 1000)
    assert "".join(out) == want


def test_single_peer_is_round_robin() -> None:
    b = balancer("a")
    assert b.single
    p = b.pick(ctx())
    assert p is b.peers[0]
    b.release(p, Outcome.FAILED, 1000)
    assert b.peers[0].fails == 0


def test_tried_peers_are_skipped_within_a_request() -> None:
    b = balancer("a b c")
    c = ctx()
    got = [b.pick(c) for _ in range(4)]
    assert [p.name if p else None for p in got] == ["a", "b", "c", None]
