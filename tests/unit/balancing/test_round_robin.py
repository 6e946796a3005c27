"""round_robin: nginx's smooth weighted round robin, as registered and seen from outside."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halb.balancing import REGISTRY, Needs, Outcome, Peer, PickContext, create
from halb.balancing.round_robin import RoundRobin


def sequence(weights: list[int], n: int) -> list[int]:
    ps = [Peer(str(i), weight=w) for i, w in enumerate(weights)]
    b = create("round_robin", ps)
    out = []
    for _ in range(n):
        p = b.pick(PickContext(now=0, rng=random.Random(0)))
        assert p is not None
        out.append(p.index)
        b.release(p, Outcome.SUCCESS, 0)
    return out


def test_registered() -> None:
    assert REGISTRY["round_robin"] is RoundRobin
    assert RoundRobin.needs is Needs.NOTHING and RoundRobin.allows_backup


@pytest.mark.parametrize("weights,want", [
    ([5, 1, 1], "0010200"),
    ([3, 2, 1], "010210"),
    ([1, 1], "01"),
    ([4, 2], "010010"),
    ([2, 3, 5], "2102122012"),
])
def test_smooth_sequences(weights: list[int], want: str) -> None:
    got = "".join(map(str, sequence(weights, len(want))))
    assert got == want


def test_5_1_1_repeats_the_smooth_cycle() -> None:
    """Smooth WRR interleaves (a a b a c a a), not a a a a a b c, cycle after cycle."""
    got = sequence([5, 1, 1], 70)
    assert Counter(got) == {0: 50, 1: 10, 2: 10}
    assert "".join(map(str, got)) == "0010200" * 10


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=6),
       st.integers(min_value=1, max_value=3))
def test_every_full_cycle_gives_exact_shares(weights: list[int], cycles: int) -> None:
    total = sum(weights)
    got = sequence(weights, total * cycles)
    for c in range(cycles):
        cycle = Counter(got[c * total:(c + 1) * total])
        assert cycle == {i: w for i, w in enumerate(weights)}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=5))
def test_current_weights_sum_to_zero_after_each_pick(weights: list[int]) -> None:
    ps = [Peer(str(i), weight=w) for i, w in enumerate(weights)]
    b = create("round_robin", ps)
    for _ in range(sum(weights) * 2):
        p = b.pick(PickContext(now=0, rng=random.Random(0)))
        b.release(p, Outcome.SUCCESS, 0)  # type: ignore[arg-type]
        if len(ps) > 1:
            assert sum(q.current_weight for q in ps) == 0
