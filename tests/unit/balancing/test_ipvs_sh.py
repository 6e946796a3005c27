"""IPVS sh (ip_vs_sh.c): the weighted 256-bucket table, hash_32 of the source address (+ port
with sh-port), and sh-fallback's deterministic probe."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ipvs_util import ctx, mk, name, peer, sched

from halb.balancing import ConfigurationError
from halb.balancing.ipvs_sh import IpvsSourceHash, fill_weighted, sh_hashkey

ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))


def sh(spec: str, **params: object) -> IpvsSourceHash:
    b = sched("sh", spec, **params)
    assert isinstance(b, IpvsSourceHash)
    return b


def test_weighted_fill() -> None:
    # the reference's vector: weights 2, 1 → A A B A A B ...
    assert "".join(p.name for p in fill_weighted(mk("A:2 B:1"))[:9]) == "AABAABAAB"  # type: ignore[union-attr]
    # weight 0 still takes one bucket per round
    assert "".join(p.name for p in fill_weighted(mk("A:0 B:2"))[:6]) == "ABBABB"  # type: ignore[union-attr]
    table = fill_weighted(mk("A:3 B:1"))
    assert len(table) == 256 and sum(p.name == "A" for p in table) == 192  # type: ignore[union-attr]
    assert fill_weighted([]) == [None] * 256


def test_bucket_is_hash_32_of_the_host_order_address() -> None:
    # 0.0.0.1 → hash_32(1, 8) = 0x61 = 97; with 3 dests of weight 1, bucket 97 holds 97 % 3 = B
    assert sh_hashkey(1, 0, 0) == 97
    b = sh("A B C")
    assert name(b.pick(ctx(client="0.0.0.1"))) == "B"
    # 0.0.0.2 → (2 * 0x61C88647 mod 2^32) >> 24 = 0xC3 = 195 → 195 % 3 = 0 → A
    assert name(b.pick(ctx(client="0.0.0.2"))) == "A"


def test_port_only_with_sh_port() -> None:
    b = sh("A B C D E")
    plain = [name(b.pick(ctx(client="198.18.1.1", port=p))) for p in range(1024, 1054)]
    assert len(set(plain)) == 1
    bp = sh("A B C D E", sched_flags=["sh-port"])
    assert bp.use_port and not bp.fallback
    ported = [name(bp.pick(ctx(client="198.18.1.1", port=p))) for p in range(1024, 1054)]
    assert len(set(ported)) > 1
    # the kernel adds ntohs(port) to ntohl(addr): 0.0.0.0 port 5 is 0.0.0.5 port 0
    for n in range(20):
        assert bp.pick(ctx(client="0.0.0.0", port=n)) is bp.pick(ctx(client=f"0.0.0.{n}",
                                                                      port=0))


def test_ipv6_is_folded() -> None:
    b = sh("A B C D E F G")
    for tail in range(1, 30):
        v6 = f"2001:db8::{tail:x}"
        v4 = str(ipaddress.IPv4Address(0x20010DB8 ^ tail))
        assert b.pick(ctx(client=v6)) is b.pick(ctx(client=v4))


@settings(max_examples=100, deadline=None)
@given(client=ipv4, spec=st.sampled_from(["A B C", "A:3 B:1 C:2", "A:5 B:0 C:1 D:1"]))
def test_same_client_same_server(client: str, spec: str) -> None:
    b1, b2 = sh(spec), sh(spec)
    first = b1.pick(ctx(client=client))
    assert all(b1.pick(ctx(client=client)) is first for _ in range(3))
    assert name(b2.pick(ctx(client=client))) == name(first)  # another director agrees


def test_unavailable_target_without_fallback_is_refused() -> None:
    b = sh("A B C")
    peer(b, "B").overloaded = True
    assert b.pick(ctx(client="0.0.0.1")) is None  # bucket 97 = B
    assert name(b.pick(ctx(client="0.0.0.2"))) == "A"
    peer(b, "B").overloaded = False
    b.edit_dest(peer(b, "B"), 0)  # quiesced: still in its buckets, refused
    assert b.pick(ctx(client="0.0.0.1")) is None


def test_fallback_moves_only_the_unavailable_servers_clients_and_back() -> None:
    b = sh("A B C D", sched_flags=["sh-fallback"])
    clients = [f"198.18.{i // 250}.{i % 250}" for i in range(1500)]
    before = {c: name(b.pick(ctx(client=c))) for c in clients}
    assert set(before.values()) == {"A", "B", "C", "D"}
    peer(b, "C").overloaded = True
    during = {c: name(b.pick(ctx(client=c))) for c in clients}
    for c in clients:
        if before[c] == "C":
            assert during[c] in {"A", "B", "D"}
        else:
            assert during[c] == before[c]
    assert all(b.pick(ctx(client=c)) is b.pick(ctx(client=c)) for c in clients[:50])  # stable
    peer(b, "C").overloaded = False
    assert {c: name(b.pick(ctx(client=c))) for c in clients} == before


def test_fallback_probe_is_the_kernels() -> None:
    # 0.0.0.1 hashes to bucket 97 (B of A B C); offsets probe (offset + 97) % 256 + 97:
    # offset 0 → bucket 194 (194 % 3 = 2 → C)
    b = sh("A B C", sched_flags=["flag-1"])
    peer(b, "B").overloaded = True
    assert name(b.pick(ctx(client="0.0.0.1"))) == "C"
    peer(b, "C").overloaded = True  # next probe: offset 1 → bucket 195 → A
    assert name(b.pick(ctx(client="0.0.0.1"))) == "A"
    peer(b, "A").overloaded = True
    assert b.pick(ctx(client="0.0.0.1")) is None


def test_table_follows_the_list() -> None:
    b = sh("A B C")
    b.del_dest(peer(b, "C"))
    assert "".join(name(p) for p in b.table[:4]) == "ABAB"
    b.edit_dest(peer(b, "A"), 2)
    assert "".join(name(p) for p in b.table[:6]) == "AABAAB"
    b.peer_down(peer(b, "A"))
    assert {name(p) for p in b.table} == {"B"}
    b.peer_down(peer(b, "B"))
    assert b.pick(ctx(client="0.0.0.1")) is None


def test_flags() -> None:
    assert sh("A", sched_flags=["sh-fallback", "sh-port"]).use_port
    assert sh("A", fallback=True).fallback
    with pytest.raises(ConfigurationError):
        sh("A", sched_flags=["mh-fallback"])
