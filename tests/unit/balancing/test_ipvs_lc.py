"""IPVS lc (ip_vs_lc.c): least (active << 8) + inactive, weights only as zero / non-zero."""

from __future__ import annotations

import pytest
from ipvs_util import ctx, name, sched


@pytest.mark.parametrize("spec,want", [
    ("A@1 B@0/200 C@0/300", "B"),   # 256 > 200 < 300
    ("A@1 B@0/256", "A"),           # 256 == 256: the earlier one
    ("A@0/255 B@1", "A"),
    ("A:5@2 B:1@1", "B"),           # no weighting
    ("A:0 B@3", "B"),               # quiesced
    ("A! B@3", "B"),                # overloaded
    ("A:0 B!", "-"),
    ("A@2 B@2 C@1", "C"),
])
def test_lc_choice(spec: str, want: str) -> None:
    assert name(sched("lc", spec).pick(ctx())) == want


def test_lc_spreads_new_connections() -> None:
    b = sched("lc", "A:3 B C")
    got = ""
    for _ in range(9):
        p = b.pick(ctx())
        assert p is not None
        p.active += 1
        got += p.name
    assert got == "ABCABCABC"
