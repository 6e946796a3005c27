"""IPVS wlc, the default (ip_vs_wlc.c): least overhead / weight by cross-multiplication."""

from __future__ import annotations

import pytest
from ipvs_util import ctx, name, sched


@pytest.mark.parametrize("spec,want", [
    ("A:3@1 B:1@0/100", "A"),       # 256 * 1 > 100 * 3 is false
    ("A:1@1 B:2@1/100", "B"),       # 256 * 2 > 356 * 1
    ("A:2@2 B:1@1", "A"),           # 512 == 512: ties keep the earlier
    ("A:1@0/10 B:1@0/10 C:1@0/9", "C"),
    ("A:0 B@5", "B"),               # weight 0 cannot start
    ("A@9 B:0", "A"),               # nor win
    ("A! B:1@3", "B"),              # overloaded first dest skipped
    ("A@3 B!", "A"),                # overloaded later dest skipped
    ("A:0 B! C:0", "-"),
    ("", "-"),
])
def test_wlc_choice(spec: str, want: str) -> None:
    assert name(sched("wlc", spec).pick(ctx())) == want


def test_wlc_sequence_with_growing_counts() -> None:
    # every pick opens one active connection: weights 3:1 settle at three A's per B
    b = sched("wlc", "A:3 B:1")
    got = ""
    for _ in range(10):
        p = b.pick(ctx())
        assert p is not None
        p.active += 1
        got += p.name
    assert got == "ABAAABAAAB"


def test_inactive_connections_count_one_256th() -> None:
    b = sched("wlc", "A@1 B@0/255")
    assert name(b.pick(ctx())) == "B"
    b.dests[1].inactive = 257
    assert name(b.pick(ctx())) == "A"
