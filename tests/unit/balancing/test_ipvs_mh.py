"""IPVS mh (ip_vs_mh.c): Maglev population (the paper's Table 1), the kernel's weights in turns,
hsiphash keys, minimal disruption, quiescing without reshuffle, mh-fallback and mh-port."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ipvs_util import ctx, name, peer, sched

from halb.balancing import ConfigurationError, Peer, create
from halb.balancing.ipvs_common import addr_key, hsiphash
from halb.balancing.ipvs_mh import (
    DEFAULT_TABLE_SIZE,
    K1,
    K2,
    IpvsMaglevHash,
    mh_hashkey,
    populate,
)

ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))


def mh(spec: str, **params: object) -> IpvsMaglevHash:
    b = sched("mh", spec, **params)
    assert isinstance(b, IpvsMaglevHash)
    return b


def servers(n: int) -> list[Peer]:
    return [Peer(f"s{i}", host=f"198.18.{i // 200}.{10 + i % 200}", port=80) for i in range(n)]


def test_maglev_paper_table_1() -> None:
    # NSDI'16 Table 1: M = 7, (offset, skip) B0 (3, 4), B1 (0, 2), B2 (3, 1)
    setup = [(3, 4, 1), (0, 2, 1), (3, 1, 1)]
    assert populate(setup, 7) == [1, 0, 1, 0, 2, 2, 0]  # B1 B0 B1 B0 B2 B2 B0
    # B1 removed: only row 6 changes besides B1's own rows
    assert populate([setup[0], setup[2]], 7) == [0, 0, 0, 0, 1, 1, 1]


def test_turns_place_entries_in_a_row() -> None:
    # B0 with 2 turns places 3 then 0 before B1 takes 2; round 2: B0 4, 1 then B1 6; B0 5
    assert populate([(3, 4, 2), (0, 2, 1)], 7) == [0, 0, 1, 0, 0, 0, 1]
    assert populate([(3, 4, 0), (0, 2, 1)], 7) == [1] * 7  # no turns: not in the table
    assert populate([(3, 4, 0)], 7) == [None] * 7


def test_default_size_is_the_kernels() -> None:
    assert DEFAULT_TABLE_SIZE == 4093  # CONFIG_IP_VS_MH_TAB_INDEX 12
    b = mh("A B C")
    assert b.m == 4093 and b.tab_bits == 6 and len(b.table) == 4093


def test_permutation_uses_the_dests_address_and_port_with_fixed_keys() -> None:
    b = mh("A")
    a = b.dests[0]
    key = addr_key(ipaddress.ip_address(a.host).packed)
    v = ((key + a.port) & 0xFFFFFFFF).to_bytes(4, "little")
    offset = hsiphash(*K1, v) % 4093
    assert mh_hashkey(key, 80, K1) == hsiphash(*K1, v)
    assert mh_hashkey(key, 80, K2) == hsiphash(*K2, v)
    assert b.table[offset] is a


@pytest.mark.parametrize("weights,turns", [
    ([1, 1, 1], [1, 1, 1]),
    ([100, 200], [1, 2]),           # gcd 100
    ([1, 1000], [1, 62]),           # fls(1000) = 10, shift 10 - 6 = 4: 1 >> 4 = 0 → 1
    ([0, 3], [0, 1]),
    ([0, 0], [0, 0]),
])
def test_turns(weights: list[int], turns: list[int]) -> None:
    b = mh(" ".join(f"P{i}:{w}" for i, w in enumerate(weights)))
    assert b.turns() == turns


def test_equal_weights_share_the_table_evenly() -> None:
    b = create("mh", servers(3))
    assert isinstance(b, IpvsMaglevHash)
    counts = Counter(p.name for p in b.table if p is not None)
    assert sorted(counts.values()) == [1364, 1364, 1365]  # ⌊M/N⌋ or ⌈M/N⌉


def test_weights_share_the_table_in_proportion() -> None:
    b = mh("A:1 B:2 C:1")
    counts = Counter(name(p) for p in b.table)
    assert abs(counts["B"] - 4093 / 2) <= 2 and abs(counts["A"] - 4093 / 4) <= 2


def test_removing_one_of_n_moves_about_one_nth() -> None:
    for n in (5, 10, 20):
        ps = servers(n)
        b = create("mh", ps)
        assert isinstance(b, IpvsMaglevHash)
        before = [name(p) for p in b.table]
        gone = ps[n // 2]
        b.del_dest(gone)
        after = [name(p) for p in b.table]
        own = sum(x == gone.name for x in before) / b.m
        others = sum(x != y and x != gone.name for x, y in zip(before, after, strict=True)) / b.m
        assert abs(own - 1 / n) < 0.01
        # a few other entries move too (Maglev is near-minimal, not minimal); mod-N
        # rehashing would move ~(n-1)/n of them
        assert others < 0.4 * own
        clients = [f"198.19.{i // 250}.{i % 250}" for i in range(2000)]
        b2 = create("mh", servers(n))
        moved = sum(name(b2.pick(ctx(client=c))) != name(b.pick(ctx(client=c)))
                    for c in clients) / len(clients)
        assert moved < 1.6 / n


def test_larger_table_is_more_resilient() -> None:
    ps = servers(10)
    b = create("mh", ps, table_size=65537)
    assert isinstance(b, IpvsMaglevHash) and b.tab_bits == 8
    before = [name(p) for p in b.table]
    b.del_dest(ps[3])
    others = sum(x != y and x != "s3" for x, y in zip(before, [name(p) for p in b.table],
                                                       strict=True))
    assert others / b.m < 0.01
    with pytest.raises(ConfigurationError):
        create("mh", servers(2), table_size=4096)


def test_quiescing_keeps_the_table() -> None:
    b = mh("A B C D")
    before = list(b.table)
    b.edit_dest(peer(b, "B"), 0)
    assert b.table == before  # last_weight kept: no reshuffle
    clients = [f"198.18.9.{i}" for i in range(200)]
    on_b = [c for c in clients if before[mh_hashkey(addr_key(ctx(client=c).client), 0, K1)
                                           % 4093] is peer(b, "B")]
    assert on_b
    assert all(b.pick(ctx(client=c)) is None for c in on_b)
    assert all(b.pick(ctx(client=c)) is not None for c in clients if c not in on_b)
    b.edit_dest(peer(b, "B"), 1)
    assert b.table == before
    b.edit_dest(peer(b, "B"), 3)  # a real weight change does reshuffle
    assert b.table != before


def test_fallback_moves_only_the_unavailable_servers_clients() -> None:
    b = mh("A B C D", sched_flags=["mh-fallback"])
    clients = [f"198.18.{i // 250}.{i % 250}" for i in range(1000)]
    before = {c: name(b.pick(ctx(client=c))) for c in clients}
    peer(b, "D").overloaded = True
    for c in clients:
        now = name(b.pick(ctx(client=c)))
        assert now == before[c] if before[c] != "D" else now in {"A", "B", "C"}
    peer(b, "D").overloaded = False
    assert {c: name(b.pick(ctx(client=c))) for c in clients} == before
    plain = mh("A B C D")
    peer(plain, "D").overloaded = True
    assert all(plain.pick(ctx(client=c)) is None for c in clients if before[c] == "D")


def test_mh_port() -> None:
    bp = mh("A B C D E", sched_flags=["mh-port"])
    assert bp.use_port and not bp.fallback
    got = {name(bp.pick(ctx(client="198.18.1.1", port=p))) for p in range(2000, 2040)}
    assert len(got) > 1
    for n in range(10):  # ntohs(port) + ntohl(addr)
        assert bp.pick(ctx(client="0.0.0.0", port=n)) is bp.pick(ctx(client=f"0.0.0.{n}"))
    b = mh("A B C D E")
    assert len({name(b.pick(ctx(client="198.18.1.1", port=p))) for p in range(2000, 2040)}) == 1


@settings(max_examples=60, deadline=None)
@given(client=ipv4)
def test_same_client_same_server_on_every_director(client: str) -> None:
    b1, b2 = mh("A B:2 C"), mh("A B:2 C")
    got = b1.pick(ctx(client=client))
    assert got is not None and b1.pick(ctx(client=client)) is got
    assert name(b2.pick(ctx(client=client))) == name(got)


def test_empty_and_flags() -> None:
    assert mh("").pick(ctx(client="198.18.0.1")) is None
    assert mh("A:0").pick(ctx(client="198.18.0.1")) is None  # no turns: empty table
    with pytest.raises(ConfigurationError):
        mh("A", sched_flags=["sh-port"])


def test_last_weight_survives_a_scheduler_change() -> None:
    # -E -s mh on a service with a quiesced dest: the dest keeps its last non-zero weight
    ps = [Peer(f"s{i}", host=f"198.18.0.{10 + i}", port=80) for i in range(3)]
    wlc = create("wlc", ps)
    wlc.weight_changed(ps[1], 0)
    b = create("mh", ps)
    assert isinstance(b, IpvsMaglevHash) and b.turns() == [1, 1, 1]
    assert any(p is ps[1] for p in b.table)
