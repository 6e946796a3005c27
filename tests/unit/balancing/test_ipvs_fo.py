"""IPVS fo (ip_vs_fo.c): the highest weight not overloaded; the first of equals."""

from __future__ import annotations

import pytest
from ipvs_util import ctx, name, peer, sched, seq


@pytest.mark.parametrize("spec,want", [
    ("A:1 B:3 C:3", "B"),
    ("A:1 B:3! C:3", "C"),
    ("A:1 B:0 C:0", "A"),
    ("A:1 B:3@1000", "B"),          # connections do not matter
    ("A:0 B:0", "-"),
    ("A! B!", "-"),
])
def test_fo_choice(spec: str, want: str) -> None:
    assert name(sched("fo", spec).pick(ctx())) == want


def test_fail_over_and_back_by_weight() -> None:
    b = sched("fo", "A:10 B:5 C:1")
    assert seq(b, 3) == "AAA"
    b.edit_dest(peer(b, "A"), 0)  # quiesce the primary
    assert seq(b, 2) == "BB"
    peer(b, "B").overloaded = True
    assert seq(b, 2) == "CC"
    b.edit_dest(peer(b, "A"), 10)
    assert seq(b, 2) == "AA"
