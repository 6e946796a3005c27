"""random [two [least_conn]]: weighted ranges + binary search, and the power of two choices.

nginx draws with its own random(); here ctx.rng is a seeded random.Random, so sequences are
exact. The shares (and which draw `two` keeps on a tie) were checked against nginx 1.22.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from halb.balancing import ConfigurationError, Outcome, Peer, PickContext, create
from halb.balancing.random import TRIES, Random


class Scripted(random.Random):
    """An rng whose randrange returns the scripted values in turn."""

    def __init__(self, values: list[int]) -> None:
        super().__init__(0)
        self.values = list(values)

    def randrange(self, n: int, *args: object, **kw: object) -> int:  # type: ignore[override]
        v = self.values.pop(0)
        assert 0 <= v < n
        return v


def balancer(weights: tuple[int, ...], two: bool = False, down: tuple[int, ...] = ()) -> Random:
    ps = [Peer("abcd"[i], weight=w, down=i in down) for i, w in enumerate(weights)]
    b = create("random", ps, two=two)
    assert isinstance(b, Random)
    return b


def ctx(rng: random.Random) -> PickContext:
    return PickContext(now=1000, rng=rng)


@pytest.mark.parametrize("weights,x,want", [
    ((1, 1, 1), 0, "a"), ((1, 1, 1), 2, "c"),
    ((3, 1, 2), 0, "a"), ((3, 1, 2), 2, "a"), ((3, 1, 2), 3, "b"), ((3, 1, 2), 4, "c"),
    ((3, 1, 2), 5, "c"),
])
def test_ranges(weights: tuple[int, ...], x: int, want: str) -> None:
    b = balancer(weights)
    assert b.ranges() == [sum(weights[:i]) for i in range(len(weights))]
    assert b.peek(ctx(Scripted([x]))).name == want


def test_seeded_sequence() -> None:
    b = balancer((3, 1, 2))
    rng = random.Random(42)
    got = []
    for _ in range(12):
        p = b.pick(ctx(rng))
        assert p is not None
        got.append(p.name)
        b.release(p, Outcome.SUCCESS, 1000)
    ref = random.Random(42)
    want = "".join("aaabcc"[ref.randrange(6)] for _ in range(12))
    assert "".join(got) == want


def test_shares_follow_weights() -> None:
    b = balancer((3, 1))
    rng = random.Random(7)
    counts = Counter()
    for _ in range(4000):
        p = b.pick(ctx(rng))
        counts[p.name] += 1  # type: ignore[union-attr]
        b.release(p, Outcome.SUCCESS, 1000)  # type: ignore[arg-type]
    assert abs(counts["a"] / 4000 - 0.75) < 0.03


def test_unusable_draws_cost_tries_then_round_robin() -> None:
    b = balancer((1, 1, 1), down=(0, 1))
    c = ctx(Scripted([0, 1, 0, 2]))
    p = b.pick(c)
    assert p is not None and p.name == "c" and c.state[TRIES] == 3
    c = ctx(Scripted([0] * 21))
    p = b.pick(c)  # 21 unusable draws: round robin finds c
    assert p is not None and p.name == "c" and c.state[TRIES] == 21


@pytest.mark.parametrize("weights,draws,conns,want", [
    ((1, 1), [0, 1], (0, 0), "b"),  # tie: nginx keeps the second draw
    ((1, 1), [1, 0], (0, 0), "a"),
    ((1, 1), [0, 1], (0, 1), "a"),  # second strictly more loaded: the first
    ((1, 1), [0, 1], (1, 0), "b"),
    ((1, 1), [0, 0, 0, 1], (0, 0), "b"),  # the same peer twice is not two choices
    ((1, 3), [0, 1], (2, 3), "b"),  # b's 3/3 beats a's 2/1
    ((1, 3), [1, 0], (1, 3), "a"),  # a's 1/1 vs b's 3/3: tie, the second draw (a)
])
def test_two_choices(weights: tuple[int, ...], draws: list[int], conns: tuple[int, int],
                     want: str) -> None:
    b = balancer(weights, two=True)
    for p, n in zip(b.peers, conns, strict=True):
        p.conns = n
    p = b.pick(ctx(Scripted(draws)))
    assert p is not None and p.name == want


def test_two_counts_every_draw_but_the_last() -> None:
    b = balancer((1, 1), two=True)
    c = ctx(Scripted([0, 0, 1]))
    b.pick(c)
    assert c.state[TRIES] == 2


def test_two_share_with_ties_goes_to_the_second_draw() -> None:
    """Weights 3:1, all idle: the second draw is b whenever the first was a, so a gets 1/4."""
    b = balancer((3, 1), two=True)
    rng = random.Random(3)
    counts = Counter()
    for _ in range(4000):
        p = b.pick(ctx(rng))
        counts[p.name] += 1  # type: ignore[union-attr]
        b.release(p, Outcome.SUCCESS, 1000)  # type: ignore[arg-type]
    assert abs(counts["a"] / 4000 - 0.25) < 0.03


def test_fewer_than_two_peers_is_round_robin() -> None:
    b = create("random", [Peer("a")])
    assert b.pick(ctx(Scripted([]))) is b.peers[0]


def test_tried_is_respected() -> None:
    b = balancer((1, 1))
    c = ctx(random.Random(1))
    first, second = b.pick(c), b.pick(c)
    assert {first.name, second.name} == {"a", "b"}  # type: ignore[union-attr]
    assert b.pick(c) is None


def test_configuration() -> None:
    with pytest.raises(ConfigurationError):
        create("random", [Peer("a"), Peer("b")], two=True, method="least_time")
    with pytest.raises(ConfigurationError):
        create("random", [Peer("a"), Peer("b")], [Peer("z")])
