"""IPVS dh (ip_vs_dh.c): 256 buckets round robin over the list, keyed by hash_32 of the
packet's destination address; no fallback."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st
from ipvs_util import ctx, name, peer, sched

from halb.balancing.ipvs_dh import IpvsDestinationHash


def dh(spec: str) -> IpvsDestinationHash:
    b = sched("dh", spec)
    assert isinstance(b, IpvsDestinationHash)
    return b


def test_table_ignores_weights() -> None:
    b = dh("A:5 B:1 C:0")
    assert "".join(name(p) for p in b.table[:6]) == "ABCABC"


def test_key_is_the_destination_address() -> None:
    b = dh("A B C")
    # 0.0.0.1 → bucket 97 → 97 % 3 = B; 0.0.0.2 → bucket 195 → A
    assert name(b.pick(ctx(daddr="0.0.0.1"))) == "B"
    assert name(b.pick(ctx(daddr="0.0.0.2"))) == "A"
    # the client does not matter
    for c in ("198.18.0.1", "198.18.7.7", "10.0.0.1"):
        assert name(b.pick(ctx(client=c, daddr="0.0.0.1"))) == "B"


def test_unavailable_means_none() -> None:
    b = dh("A B C")
    peer(b, "B").overloaded = True
    assert b.pick(ctx(daddr="0.0.0.1")) is None
    peer(b, "B").overloaded = False
    b.edit_dest(peer(b, "B"), 0)  # no upd hook: B keeps its buckets, quiesced
    assert b.table[97] is peer(b, "B") and b.pick(ctx(daddr="0.0.0.1")) is None


def test_removal_rebuilds() -> None:
    b = dh("A B C")
    b.del_dest(peer(b, "B"))
    assert "".join(name(p) for p in b.table[:4]) == "ACAC"
    assert name(b.pick(ctx(daddr="0.0.0.1"))) == "C"  # 97 % 2 = 1
    b.peer_down(peer(b, "A"))
    b.peer_down(peer(b, "C"))
    assert b.pick(ctx(daddr="0.0.0.1")) is None


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_same_destination_same_server(n: int) -> None:
    daddr = str(ipaddress.IPv4Address(n))
    b1, b2 = dh("A B C D E"), dh("A B C D E")
    got = b1.pick(ctx(daddr=daddr))
    assert got is not None and b1.pick(ctx(daddr=daddr)) is got
    assert name(b2.pick(ctx(daddr=daddr))) == name(got)
