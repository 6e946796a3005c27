"""IPVS ovf (ip_vs_ovf.c): the highest weight whose active connections do not exceed it."""

from __future__ import annotations

import pytest
from ipvs_util import ctx, name, sched


@pytest.mark.parametrize("spec,want", [
    ("A:2 B:3 C:1", "B"),
    ("A:2 B:3@3 C:1", "B"),         # 3 is not more than 3
    ("A:2 B:3@4 C:1", "A"),         # B full: overflow to the next highest
    ("A:2@3 B:3@4 C:1", "C"),
    ("A:2@3 B:3@4 C:1@2", "-"),
    ("A:2 B:2", "A"),               # first of equals
    ("A:2@0/99 B:1", "A"),          # inactive connections do not count
    ("A:0 B:1", "B"),
    ("A:5! B:1", "B"),
])
def test_ovf_choice(spec: str, want: str) -> None:
    assert name(sched("ovf", spec).pick(ctx())) == want


def test_overflow_fills_in_weight_order() -> None:
    b = sched("ovf", "A:1 B:3 C:2")
    got = ""
    for _ in range(9):
        p = b.pick(ctx())
        got += "-" if p is None else p.name
        if p is not None:
            p.active += 1
    # B takes 4 (active may reach weight + 1), then C 3, then A 2
    assert got == "BBBBCCCAA"
