"""nft_plan: the IPVS schedulers turned into what the kernel data plane writes (pure)."""

from __future__ import annotations

import collections
import random

import pytest

from halb.balancing import Peer, PickContext, create
from halb.balancing.ipvs_common import hash_32
from halb.l4.nft_plan import (
    PICK_HASH,
    PICK_SEQUENCE,
    Member,
    bucket_address,
    clone,
    plan,
    smallest_period,
)

VIP = bytes([198, 18, 0, 100])


def setup(name: str, weights: list[int], **kw: object) -> tuple[object, list[Member]]:
    peers = [Peer(name=f"p{i}", host=f"198.18.1.{11 + i}", port=80, weight=w)
             for i, w in enumerate(weights)]
    return create(name, peers, **kw), [Member(p, i + 1) for i, p in enumerate(peers)]


def letters(slots: tuple[int, ...]) -> str:
    return "".join("_ABCD"[s] for s in slots)


def live_sequence(balancer: object, n: int) -> str:
    twin, _ = clone(balancer)  # type: ignore[arg-type]
    ctx = PickContext(now=0, rng=random.Random(0), daddr=VIP)
    names = [twin.pick(ctx) for _ in range(n)]  # type: ignore[attr-defined]
    return "".join("ABCD"[int(p.name[1])] for p in names)


@pytest.mark.parametrize("weights, expected", [
    ([4, 3, 2], "AABABCABC"),
    ([4, 2], "AAB"),
    ([5, 1, 1], "AAAAABC"),
    ([1, 0, 1], "AC"),
])
def test_wrr_period_is_the_kernel_sequence(weights: list[int], expected: str) -> None:
    b, members = setup("wrr", weights)
    p = plan("wrr", b, members, vaddr=VIP)
    assert p.kind == PICK_SEQUENCE
    assert letters(p.slots) == expected


def test_rr_period_is_one_pick_per_available_server() -> None:
    b, members = setup("rr", [1, 5, 0, 2])
    assert letters(plan("rr", b, members, vaddr=VIP).slots) == "ABD"


def test_the_plan_leaves_the_tables_scheduler_untouched() -> None:
    b, members = setup("wrr", [4, 3, 2])
    before = live_sequence(b, 5)
    plan("wrr", b, members, vaddr=VIP)
    assert live_sequence(b, 5) == before == "AABAB"


def test_overloaded_servers_leave_the_sequence() -> None:
    b, members = setup("rr", [1, 1, 1])
    members[1].peer.overloaded = True
    assert letters(plan("rr", b, members, vaddr=VIP).slots) == "AC"


def test_nobody_available_gives_an_empty_pick() -> None:
    b, members = setup("wrr", [0, 0])
    assert plan("wrr", b, members, vaddr=VIP).slots == ()


@pytest.mark.parametrize("bucket", [0, 1, 77, 128, 255])
def test_bucket_address_hashes_to_its_bucket(bucket: int) -> None:
    assert hash_32(int.from_bytes(bucket_address(bucket), "big"), 8) == bucket


def test_sh_table_is_the_kernels_weighted_fill() -> None:
    b, members = setup("sh", [2, 1])
    p = plan("sh", b, members, vaddr=VIP)
    assert p.kind == PICK_HASH and p.key == "saddr" and len(p.slots) == 256
    assert letters(p.slots[:9]) == "AABAABAAB"
    assert collections.Counter(p.slots) == {1: 171, 2: 85}


def test_sh_weight_zero_buckets_reject_unless_fallback() -> None:
    b, members = setup("sh", [1, 0, 1])
    assert collections.Counter(plan("sh", b, members, vaddr=VIP).slots)[0] == 85
    b, members = setup("sh", [1, 0, 1], sched_flags=("sh-fallback", "sh-port"))
    p = plan("sh", b, members, vaddr=VIP)
    assert 0 not in p.slots and 2 not in p.slots and p.key == "saddr.sport"


def test_mh_uses_the_maglev_table_of_the_scheduler() -> None:
    b, members = setup("mh", [1, 1, 1])
    p = plan("mh", b, members, vaddr=VIP)
    assert len(p.slots) == 4093
    table = b.table  # type: ignore[attr-defined]
    ids = {id(m.peer): m.id for m in members}
    assert p.slots == tuple(ids[id(d)] for d in table)


def test_dh_sends_a_service_to_the_server_of_its_vip() -> None:
    b, members = setup("dh", [1, 1, 1])
    p = plan("dh", b, members, vaddr=VIP)
    want = b.pick(PickContext(now=0, rng=random.Random(), daddr=VIP))  # type: ignore[attr-defined]
    assert p.kind == PICK_SEQUENCE and len(p.slots) == 1
    assert members[p.slots[0] - 1].peer is want


def test_wlc_simulation_follows_weights_and_current_counts() -> None:
    b, members = setup("wlc", [3, 1])
    p = plan("wlc", b, members, vaddr=VIP, window=40)
    counts = collections.Counter(p.slots)
    assert counts[1] == 30 and counts[2] == 10
    members[0].peer.active = 10  # A is busy: B catches up first
    p = plan("wlc", b, members, vaddr=VIP, window=4)
    assert letters(p.slots) == "B"  # four times B, written once


def test_simulation_honours_the_upper_threshold() -> None:
    b, members = setup("lc", [1, 1])
    members = [Member(members[0].peer, 1, u_threshold=2), members[1]]
    p = plan("lc", b, members, vaddr=VIP, window=6)
    assert collections.Counter(p.slots)[1] == 2  # A overloaded after its second connection


def test_fo_is_one_server_and_ovf_stops_when_all_are_full() -> None:
    b, members = setup("fo", [1, 3, 2])
    assert letters(plan("fo", b, members, vaddr=VIP).slots) == "B"
    b, members = setup("ovf", [2, 3])
    assert letters(plan("ovf", b, members, vaddr=VIP).slots) == "BBBBAAA"


def test_smallest_period() -> None:
    assert smallest_period([1, 2, 1, 2, 1, 2]) == 2
    assert smallest_period([1, 1, 2]) == 3
    assert smallest_period([]) == 0
