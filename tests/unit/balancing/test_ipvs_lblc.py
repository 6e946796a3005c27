"""IPVS lblc (ip_vs_lblc.c): a destination address keeps its server until that server is gone,
quiesced or overloaded in lblc's sense; entries expire on the kernel's GC timer, driven by a
fake `now`."""

from __future__ import annotations

import pytest
from ipvs_util import ctx, ip, name, peer, sched

from halb.balancing.ipvs_lblc import IpvsLocalityLeastConn, lblc_overloaded
from halb.balancing.ipvs_locality import LocalityTable


def lblc(spec: str, **params: object) -> IpvsLocalityLeastConn:
    b = sched("lblc", spec, **params)
    assert isinstance(b, IpvsLocalityLeastConn)
    return b


def pick(b: IpvsLocalityLeastConn, daddr: str, now: float = 0.0) -> str:
    return name(b.pick(ctx(daddr=daddr, now=now)))


def cached(b: IpvsLocalityLeastConn, daddr: str) -> str:
    en = b.table.get(ip(daddr))
    return "-" if en is None else en.dest.name


def test_first_pick_is_wlc_then_sticks() -> None:
    b = lblc("A:10 B:10")
    assert pick(b, "198.18.5.1") == "A" and cached(b, "198.18.5.1") == "A"
    peer(b, "A").active = 5  # busier than B, but not more than its weight
    assert pick(b, "198.18.5.1") == "A"
    assert pick(b, "198.18.5.2") == "B"  # a new address: wlc
    assert b.pick(ctx(client="198.18.9.9", daddr="198.18.5.1")) is peer(b, "A")  # client unused


@pytest.mark.parametrize("spec,over", [
    ("A:1@2 B:4", True),      # A over its weight and B half idle (0 * 2 < 4)
    ("A:1@2 B:1@1", False),   # nobody half idle (1 * 2 < 1 is false)
    ("A:3@3 B:4", False),     # A not over its weight
    ("A:1@2 B:0", False),     # a weight-0 server is never "half idle"
])
def test_lblc_overloaded(spec: str, over: bool) -> None:
    b = lblc(spec)
    assert lblc_overloaded(peer(b, "A"), b.dests) is over


def test_overloaded_cached_server_is_replaced() -> None:
    b = lblc("A:1 B:4")
    assert pick(b, "198.18.5.1") == "A"
    peer(b, "A").active = 2
    assert pick(b, "198.18.5.1") == "B" and cached(b, "198.18.5.1") == "B"
    # ip_vs_lblc_new() unlinks the old entry without decrementing the count (kernel behaviour)
    assert len(b.table) == 1 and b.table.entries == 2


def test_overload_flag_alone_does_not_move_a_cached_address() -> None:
    # the cached path tests lblc's own is_overloaded(), not IP_VS_DEST_F_OVERLOAD
    b = lblc("A B")
    assert pick(b, "198.18.5.1") == "A"
    peer(b, "A").overloaded = True
    assert pick(b, "198.18.5.1") == "A"
    assert pick(b, "198.18.5.2") == "B"  # but a fresh choice skips it


@pytest.mark.parametrize("change", ["delete", "down", "quiesce"])
def test_cached_server_gone_or_quiesced(change: str) -> None:
    b = lblc("A B C")
    assert pick(b, "198.18.5.1") == "A"
    a = peer(b, "A")
    if change == "delete":
        b.del_dest(a)
    elif change == "down":
        b.peer_down(a)
    else:
        b.edit_dest(a, 0)
    assert pick(b, "198.18.5.1") == "B" and cached(b, "198.18.5.1") == "B"


def test_no_destination() -> None:
    b = lblc("A:0 B!")
    assert pick(b, "198.18.5.1") == "-" and len(b.table) == 0


def test_expiry_on_the_full_check() -> None:
    # timer from 0 every 60 s; the 30th firing (t = 1800) is the first full check
    b = lblc("A:10 B:10", expiration=600, start=0)
    assert pick(b, "198.18.5.1", now=10) == "A"
    peer(b, "A").active = 5
    b.expire(1799)
    assert len(b.table) == 1  # unused for 1789 s, but no full check yet
    b.expire(1800)
    assert len(b.table) == 0
    assert pick(b, "198.18.5.1", now=1801) == "B"  # chosen afresh


def test_use_renews_the_entry() -> None:
    b = lblc("A:10 B:10", expiration=600, start=0)
    assert pick(b, "198.18.5.1", now=10) == "A"
    peer(b, "A").active = 5
    assert pick(b, "198.18.5.1", now=1799) == "A"  # lastuse 1799
    assert pick(b, "198.18.5.1", now=1801) == "A"  # 1800's check keeps it; lastuse 1801
    assert pick(b, "198.18.5.1", now=3599) == "A"  # lastuse 3599 before the 3600 check
    assert pick(b, "198.18.5.1", now=5399) == "A"  # next full check is at 5400
    b.expire(5400 + 1800)
    assert len(b.table) == 0


def test_timer_starts_at_the_first_pick_without_start() -> None:
    b = lblc("A B", expiration=60)
    assert pick(b, "198.18.5.1", now=100) == "A"
    b.expire(1899)
    assert len(b.table) == 1
    b.expire(1900)
    assert len(b.table) == 0


def test_table_limit_and_partial_collection() -> None:
    b = lblc("A B", max_size=4, start=0)
    for i in range(6):
        assert pick(b, f"198.18.5.{i + 1}", now=i) in {"A", "B"}
    # a new entry is refused once entries > max_size: 5 made, the 6th scheduled uncached
    assert len(b.table) == 5 and cached(b, "198.18.5.6") == "-"
    b.expire(359)
    assert len(b.table) == 5  # nothing unused for 6 minutes yet
    b.expire(360)  # the firing at 360: goal min((5 - 4) * 4 // 3, 2) = 1, the t=0 entry goes
    assert len(b.table) == 4 and cached(b, "198.18.5.1") == "-"
    b.expire(900)  # at max_size again: no partial collection, only counting to a full check
    assert len(b.table) == 4 and b.table.counter == 10


def test_locality_table_bucket_is_hash_32_10_bits() -> None:
    assert LocalityTable.bucket_of(ip("0.0.0.1")) == 0x61C88647 >> 22
    assert LocalityTable.bucket_of(ip("2001:db8::1")) == LocalityTable.bucket_of(
        ip("32.1.13.185"))
