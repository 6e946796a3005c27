"""IPVS wrr (ip_vs_wrr.c): the gcd-stepped interleaved sequence, overload passes, and the
cw/position kept across dest changes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ipvs_util import ctx, mk, peer, sched, seq

from halb.balancing import create
from halb.balancing.ipvs_wrr import IpvsWeightedRoundRobin


@pytest.mark.parametrize("spec,period", [
    ("A:4 B:3 C:2", "AABABCABC"),   # the and the reference's sequence
    ("A:4 B:2", "AAB"),             # di = 2
    ("A:5 B:1 C:1", "AAAAABC"),
    ("A B C", "ABC"),
    ("A:2 B:2", "AB"),
    ("A:3 B:0 C:1", "AAAC"),        # weight 0 never
    ("A:4 B:3! C:2", "AAACAC"),     # overloaded skipped, the passes go on
    ("A:6 B:4 C:2", "AABABC"),      # di = 2: mw = 5, cw 5, 3, 1
])
def test_wrr_periods(spec: str, period: str) -> None:
    b = sched("wrr", spec)
    assert seq(b, 3 * len(period)) == period * 3


def test_all_zero_or_empty() -> None:
    assert seq(sched("wrr", "A:0 B:0"), 3) == "---"
    assert seq(sched("wrr", ""), 3) == "---"


def test_all_overloaded_then_recovered() -> None:
    b = sched("wrr", "A:4 B:3 C:2")
    assert seq(b, 3) == "AAB"
    for p in b.dests:
        p.overloaded = True
    assert seq(b, 2) == "--"
    for p in b.dests:
        p.overloaded = False
    assert len(seq(b, 9)) == 9 and "-" not in seq(b, 9)


def test_change_resets_position_and_keeps_cw() -> None:
    b = sched("wrr", "A:4 B:3 C:2")
    assert seq(b, 3) == "AAB"  # cw is 3 now, position on B
    assert isinstance(b, IpvsWeightedRoundRobin) and b.cw == 3
    b.edit_dest(peer(b, "C"), 1)  # di 1, mw 4: cw stays 3, position back to the head
    assert (b.cw, b.cl, b.mw) == (3, -1, 4)
    assert seq(b, 8) == "ABABABCA"


def test_change_with_gcd_rounds_cw() -> None:
    b = sched("wrr", "A:6 B:4")
    assert seq(b, 3) == "AAB"  # di 2, mw 5: cw 5 (A), 3 (A B)
    b.edit_dest(peer(b, "A"), 8)  # di 4, mw 5: cw (3 // 4) * 4 + 1 = 1
    assert (b.di, b.mw, b.cw) == (4, 5, 1)
    assert seq(b, 8) == "ABAABAAB"


def test_change_with_cw_above_the_new_max() -> None:
    b = sched("wrr", "A:4 B:1")
    assert seq(b, 1) == "A"  # cw 4
    b.edit_dest(peer(b, "A"), 2)  # mw 2 < cw: cw = mw
    assert b.cw == 2
    assert seq(b, 6) == "AABAAB"


def test_removal_and_addition_restart_from_the_head() -> None:
    b = sched("wrr", "A:2 B:1 C:1")
    assert seq(b, 2) == "AA"
    b.del_dest(peer(b, "A"))  # di 1, mw 1, cw 1 (was 1), from the head
    assert seq(b, 4) == "BCBC"
    (d,) = mk("D:2")
    b.add_dest(d)  # D B C, mw 2
    assert seq(b, 8) == "DBCDDBCD"


def classic_wrr(weights: list[int]) -> list[int]:
    """The LVS documentation's interleaved WRR: for cw = max, max - g, ..., g, every server
    whose weight >= cw, in list order."""
    g = 0
    for w in weights:
        g = math.gcd(g, w)
    out: list[int] = []
    for cw in range(max(weights), 0, -g):
        out += [i for i, w in enumerate(weights) if w >= cw]
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=6).filter(any))
def test_period_matches_the_documented_interleaving(weights: list[int]) -> None:
    ps = mk(" ".join(f"P{i}:{w}" for i, w in enumerate(weights)))
    b = create("wrr", ps)
    period = classic_wrr(weights)
    got = []
    for _ in range(2 * len(period)):
        p = b.pick(ctx())
        assert p is not None
        got.append(ps.index(p))
    assert got == period * 2
    g = math.gcd(*weights)
    assert all(period.count(i) == w // g for i, w in enumerate(weights))
