"""IPVS sed (ip_vs_sed.c): least (active + 1) / weight; inactive connections ignored."""

from __future__ import annotations

import pytest
from ipvs_util import ctx, name, sched


@pytest.mark.parametrize("spec,want", [
    ("A:1 B:2", "B"),               # idle: 1 * 2 > 1 * 1, the heavier wins (wlc would take A)
    ("A:2 B:2", "A"),               # tie keeps the earlier
    ("A@0/1000 B", "A"),            # inactive connections do not count
    ("A:1@1 B:3@5", "A"),           # 2 * 3 > 6 * 1 is false: tie
    ("A:1@1 B:3@4", "B"),           # 2 * 3 > 5 * 1
    ("A:0 B@7", "B"),
    ("A:5! B@7", "B"),
    ("A:0 B!", "-"),
])
def test_sed_choice(spec: str, want: str) -> None:
    assert name(sched("sed", spec).pick(ctx())) == want


def test_sed_sequence() -> None:
    b = sched("sed", "A:3 B:1")
    got = ""
    for _ in range(8):
        p = b.pick(ctx())
        assert p is not None
        p.active += 1
        got += p.name
    assert got == "AAABAAAB"
