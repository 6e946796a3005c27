"""IPVS twos (ip_vs_twos.c): two weighted random draws, the less loaded for its weight wins."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from ipvs_util import mk, name

from halb.balancing import PickContext, create


class Scripted(random.Random):
    """randrange() answers from a script and records the bounds it was asked for."""

    def __init__(self, values: list[int]) -> None:
        super().__init__(0)
        self.values = list(values)
        self.bounds: list[int] = []

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:  # type: ignore[override]
        assert stop is None and step == 1
        self.bounds.append(start)
        v = self.values.pop(0)
        assert 0 <= v < start
        return v


@pytest.mark.parametrize("spec,draws,want", [
    # weights 1 2 3: total 7; r1 = 0 → A, r2 = 6 → C (6-1-2-3 = 0)
    ("A:1@1 B:2 C:3", (0, 6), "C"),         # 3 * 256 > 1 * 0
    ("A:1@1 B:2 C:3@2", (0, 6), "C"),       # 3 * 256 > 1 * 512
    ("A:1@1 B:2 C:3@3", (0, 6), "A"),       # 768 > 768 is false: choice 1
    ("A:1 B:2 C:3", (3, 1), "B"),           # both idle: choice 1 (r1 = 3 → B)
    ("A:1@1 B:2 C:3", (1, 1), "A"),         # same dest twice (r = 1 → A)
    ("A:1 B:2 C:3@1", (6, 2), "B"),         # r1 → C, r2 → B: 2 * 256 > 3 * 0
])
def test_twos_choice(spec: str, draws: tuple[int, int], want: str) -> None:
    b = create("twos", mk(spec))
    rng = Scripted(list(draws))
    assert name(b.pick(PickContext(now=0, rng=rng))) == want
    assert rng.bounds == [7, 7]


def test_overloaded_and_quiesced_are_not_drawn() -> None:
    b = create("twos", mk("A:0 B:2 C:5! D:1"))
    rng = Scripted([3, 0])
    assert name(b.pick(PickContext(now=0, rng=rng))) == "D"  # r1 = 3: B (2) → 1, D (1) → 0
    assert rng.bounds == [4, 4]  # 2 + 1 + 1
    assert create("twos", mk("A:0 B!")).pick(PickContext(now=0, rng=Scripted([]))) is None


def test_idle_distribution_follows_the_weights() -> None:
    b = create("twos", mk("A:1 B:2 C:3"))
    ctx = PickContext(now=0, rng=random.Random(7))
    n = 14000
    got = Counter(name(b.pick(ctx)) for _ in range(n))
    # all idle: choice 1 always; P(A) = (1 + 1) / 7, P(B) = 2 / 7, P(C) = 3 / 7
    for k, share in {"A": 2 / 7, "B": 2 / 7, "C": 3 / 7}.items():
        assert abs(got[k] / n - share) < 0.03, got


def test_loaded_server_gets_less() -> None:
    ps = mk("A B")
    b = create("twos", ps)
    ps[0].active = 50
    ctx = PickContext(now=0, rng=random.Random(3))
    got = Counter(name(b.pick(ctx)) for _ in range(3000))
    # B wins whenever it is one of the two draws: P(A, A) = (2/3)^2 only
    assert 0.35 < got["A"] / 3000 < 0.55 and got["B"] > got["A"]
