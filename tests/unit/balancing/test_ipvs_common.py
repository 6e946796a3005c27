"""The IPVS family's shared parts: the kernel's hashes, the destination list and its hooks,
scheduler flags, and what every scheduler declares."""

from __future__ import annotations

import pytest
from ipvs_util import ctx, ip, mk, name, peer, sched, seq

from halb.balancing import REGISTRY, ConfigurationError, Needs, Peer, create
from halb.balancing.ipvs_common import (
    IpvsBalancer,
    addr_key,
    hash_32,
    hsiphash,
    overhead,
    parse_sched_flags,
    siphash,
    wlc_pick,
)
from halb.l4.model import DEFAULT_SCHEDULER

IPVS = ["rr", "wrr", "lc", "wlc", "sed", "nq", "sh", "dh", "lblc", "lblcr", "mh", "fo", "ovf",
        "twos"]

# lib/siphash_kunit.c (Linux): key 00..0f, input n = bytes 0..n-1.
KEY = (0x0706050403020100, 0x0F0E0D0C0B0A0908)
SIPHASH24 = {0: 0x726FDB47DD0E0E31, 1: 0x74F839C593DC67FD, 15: 0xA129CA6149BE45E5}
HSIPHASH_64BIT = [0x050FC4DC, 0x7D57CA93, 0x4DC7D44D, 0xE7DDF7FB, 0x88D38328, 0x49533B67,
                  0xC59F22A7, 0x9BB11140, 0x8D299A8E, 0x6C063DE4, 0x92FF097F, 0xF94DC352,
                  0x57B4D9A2, 0x1229FFA7, 0xC0F95D34, 0x2A519956, 0x7D908B66, 0x63DBD80C]


@pytest.mark.parametrize("n,want", sorted(SIPHASH24.items()))
def test_siphash24_kernel_vectors(n: int, want: int) -> None:
    assert siphash(*KEY, bytes(range(n))) == want


@pytest.mark.parametrize("n", range(len(HSIPHASH_64BIT)))
def test_hsiphash_matches_the_kernels_64bit_vectors(n: int) -> None:
    # n = 4 is the case mh uses (one u32); 8 and 16 exercise whole blocks
    assert hsiphash(*KEY, bytes(range(n))) == HSIPHASH_64BIT[n]


def test_hash_32_is_the_golden_ratio_multiply() -> None:
    assert hash_32(0, 8) == 0
    assert hash_32(1, 8) == 0x61  # 0x61C88647 >> 24
    assert hash_32(1, 10) == 0x61C88647 >> 22
    assert hash_32(2, 32) == (2 * 0x61C88647) & 0xFFFFFFFF  # wraps at 32 bits
    assert hash_32(0xFFFFFFFF, 32) == (-0x61C88647) & 0xFFFFFFFF


def test_addr_key_folds_ipv6_and_reads_ipv4_in_host_order() -> None:
    assert addr_key(ip("198.18.0.1")) == 0xC6120001
    assert addr_key(ip("2001:db8::1")) == 0x20010DB8 ^ 0x1
    assert addr_key(ip("2001:db8:1:2:3:4:5:6")) == 0x20010DB8 ^ 0x00010002 ^ 0x00030004 \
        ^ 0x00050006
    assert addr_key(None) == 0
    with pytest.raises(ValueError):
        addr_key(b"\1\2\3")


def test_overhead_is_256_inactive_per_active() -> None:
    a, b = mk("A@1/0 B@0/255")
    assert overhead(a) == 256 and overhead(b) == 255


def test_registry_needs_and_no_backup() -> None:
    for n in IPVS:
        cls = REGISTRY[n]
        assert issubclass(cls, IpvsBalancer) and not cls.allows_backup, n
        with pytest.raises(ConfigurationError):
            create(n, mk("A"), mk("B"))
    assert {n for n in IPVS if REGISTRY[n].needs & Needs.CLIENT} == {"sh", "mh"}
    assert {n for n in IPVS if REGISTRY[n].needs & Needs.DESTINATION} == {"dh", "lblc", "lblcr"}
    assert DEFAULT_SCHEDULER == "wlc" and REGISTRY[DEFAULT_SCHEDULER].name == "wlc"


def test_sched_flags() -> None:
    assert parse_sched_flags("sh", ["sh-fallback", "sh-port"]) == {1, 2}
    assert parse_sched_flags("mh", ["flag-1", "mh-port", "flag-3"]) == {1, 2, 3}
    assert parse_sched_flags("rr", ["flag-2"]) == {2}
    for sched_name, flags in [("sh", ["mh-port"]), ("mh", ["sh-fallback"]), ("wlc", ["sh-port"]),
                              ("sh", ["bogus"])]:
        with pytest.raises(ConfigurationError):
            parse_sched_flags(sched_name, flags)
    with pytest.raises(ConfigurationError):
        create("rr", mk("A"), sched_flags=["sh-port"])


def test_add_dest_links_at_the_head_like_the_kernel() -> None:
    # __ip_vs_update_dest: list_add_rcu(&dest->n_list, &svc->destinations)
    b = sched("wlc", "")
    for p in mk("A B C"):
        b.add_dest(p)
    assert [d.name for d in b.dests] == ["C", "B", "A"]
    assert name(b.pick(ctx())) == "C"  # all idle: the first in the list wins the tie
    with pytest.raises(ConfigurationError):
        b.add_dest(b.dests[0])
    assert [p.name for p in b.peers] == ["A", "B", "C"]


def test_del_edit_and_health() -> None:
    b = sched("wlc", "A B C")
    a, bb, c = b.dests
    b.del_dest(bb)
    assert [d.name for d in b.dests] == ["A", "C"] and not b.available(bb)
    assert bb not in b.peers
    with pytest.raises(ConfigurationError):
        b.del_dest(bb)
    b.edit_dest(a, 0)
    assert a.weight == 0 and b.last_weight(a) == 1  # the latest non-zero weight stays
    b.edit_dest(a, 7)
    assert b.last_weight(a) == 7
    b.peer_down(c)
    assert not c.healthy and [d.name for d in b.dests] == ["A"] and c in b.peers
    assert b.pick(ctx()) is a
    b.peer_up(c)
    assert c.healthy and [d.name for d in b.dests] == ["C", "A"]
    b.peer_up(c)  # already there: nothing changes
    assert [d.name for d in b.dests] == ["C", "A"]


def test_down_or_unhealthy_peers_start_outside_the_list() -> None:
    ps = mk("A B C")
    ps[0].down = True
    ps[2].healthy = False
    b = create("rr", ps)
    assert isinstance(b, IpvsBalancer)
    assert [d.name for d in b.dests] == ["B"] and seq(b, 3) == "BBB"


@pytest.mark.parametrize("spec,want", [
    ("A B C", "A"),
    ("A:1@1 B:2@1/100", "B"),   # 256*2 > 356*1
    ("A:2@2 B:1@1", "A"),       # 512*1 == 256*2: the earlier one keeps it
    ("A:0 B@5", "B"),           # weight 0 cannot start
    ("A@9 B:0", "A"),           # nor win later
    ("A! B@3", "B"),
    ("A:0 B!", "-"),
])
def test_wlc_pick(spec: str, want: str) -> None:
    assert name(wlc_pick(mk(spec))) == want


def test_pick_counts_nothing() -> None:
    for n in IPVS:
        b = sched(n, "A B:2")
        before = [(p.active, p.inactive, p.conns) for p in b.peers]
        b.pick(ctx(client="198.18.1.1", daddr="198.18.2.2"))
        assert [(p.active, p.inactive, p.conns) for p in b.peers] == before, n
        assert isinstance(peer(b, "A"), Peer)
