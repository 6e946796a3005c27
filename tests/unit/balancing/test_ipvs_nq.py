"""IPVS nq (ip_vs_nq.c): the first idle server at once, else sed."""

from __future__ import annotations

import pytest
from ipvs_util import ctx, name, sched


@pytest.mark.parametrize("spec,want", [
    ("A@3 B@0 C@0", "B"),           # first idle
    ("A:9@1 B:1@0/500", "B"),       # idle beats a much heavier busy server; inactive ignored
    ("A:1@2 B:3@4", "B"),           # nobody idle: sed, 3 * 3 > 5 * 1
    ("A:1@2 B:3@8", "A"),           # 3 * 3 > 9 * 1 false: the earlier
    ("A:0 B@1", "B"),               # idle but quiesced
    ("A! B@1", "B"),                # idle but overloaded
    ("A:0 B!", "-"),
])
def test_nq_choice(spec: str, want: str) -> None:
    assert name(sched("nq", spec).pick(ctx())) == want
