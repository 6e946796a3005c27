"""IPVS rr (ip_vs_rr.c): the circular walk from the cursor, and how the cursor survives weight
changes, additions and deletions."""

from __future__ import annotations

import pytest
from ipvs_util import mk, peer, sched, seq


@pytest.mark.parametrize("spec,want", [
    ("A B C", "ABCABC"),
    ("A:5 B:1", "ABABAB"),        # weights only matter as zero / non-zero
    ("A B:0 C", "ACACAC"),        # quiesced
    ("A B! C", "ACACAC"),         # overloaded
    ("A:0 B! C:0", "------"),
    ("", "------"),
    ("A@100/9 B", "ABABAB"),      # connections do not matter
])
def test_rr_sequences(spec: str, want: str) -> None:
    assert seq(sched("rr", spec), 6) == want


def test_no_destination_keeps_the_cursor() -> None:
    b = sched("rr", "A B C")
    assert seq(b, 2) == "AB"
    for p in b.dests:
        p.overloaded = True
    assert seq(b, 2) == "--"
    peer(b, "A").overloaded = peer(b, "C").overloaded = False
    assert seq(b, 3) == "CAC"  # resumes after B


def test_weight_change_keeps_the_cursor() -> None:
    b = sched("rr", "A B C D")
    assert seq(b, 2) == "AB"
    b.edit_dest(peer(b, "C"), 0)
    assert seq(b, 2) == "DA"
    b.edit_dest(peer(b, "C"), 3)
    assert seq(b, 4) == "BCDA"


def test_deleting_the_cursor_moves_it_back_one() -> None:
    # ip_vs_rr_del_dest: the cursor goes to the previous dest, so the walk goes on with C
    b = sched("rr", "A B C D")
    assert seq(b, 2) == "AB"
    b.del_dest(peer(b, "B"))
    assert b.cursor is peer(b, "A")
    assert seq(b, 4) == "CDAC"


def test_deleting_the_first_dest_under_the_cursor_goes_back_to_the_head() -> None:
    b = sched("rr", "A B C")
    assert seq(b, 1) == "A"
    b.del_dest(peer(b, "A"))
    assert b.cursor is None and seq(b, 3) == "BCB"


def test_deleting_another_dest_keeps_the_cursor() -> None:
    b = sched("rr", "A B C D")
    assert seq(b, 2) == "AB"
    b.del_dest(peer(b, "D"))
    assert seq(b, 3) == "CAB"


def test_new_dest_joins_at_the_head_and_is_reached_on_the_wrap() -> None:
    b = sched("rr", "A B C")
    assert seq(b, 2) == "AB"
    (d,) = mk("D")
    b.add_dest(d)  # list: D A B C, cursor still on B
    assert seq(b, 5) == "CDABC"


def test_health_down_and_up() -> None:
    b = sched("rr", "A B C")
    assert seq(b, 1) == "A"
    b.peer_down(peer(b, "A"))  # the cursor's dest leaves: back to the head
    assert seq(b, 3) == "BCB"
    b.peer_up(peer(b, "A"))  # re-added at the head: A B C, cursor on B
    assert seq(b, 4) == "CABC"
