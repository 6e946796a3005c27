"""nft_rules: what the kernel data plane's transactions say (pure; the real `nft` accepts them in
tests/netns/l4/test_nft_ruleset.py)."""

from __future__ import annotations

import pytest

from halb.l4.model import Timeouts
from halb.l4.nft_rules import (
    PICK_HASH,
    PICK_SEQUENCE,
    TAG,
    Pick,
    RuleDest,
    RuleService,
    Ruleset,
    mark,
    pick_expr,
    remove,
    render,
    slot_map,
    unmark,
)

VIP = "198.18.0.100"


def dests(n: int, port: int = 80, masq: bool = False) -> tuple[RuleDest, ...]:
    return tuple(RuleDest(i, f"198.18.1.{10 + i}", port, masquerade=masq, device="eth0")
                 for i in range(1, n + 1))


def service(sid: int = 1, *, proto: str = "tcp", port: int = 80, n: int = 3,
            pick: Pick | None = None, **kw: object) -> RuleService:
    return RuleService(sid, proto, VIP, port, dests(n, port), pick or Pick(PICK_SEQUENCE,
                                                                          (1, 2, 3)), **kw)


def test_marks_round_trip_and_stay_in_halb_range() -> None:
    assert mark(1, 1) == TAG | 1 << 12 | 1
    assert unmark(mark(2047, 4095)) == (2047, 4095)
    assert unmark(0x12345678) is None
    assert unmark(TAG | 1 << 12) is None  # dest 0 is "nobody"
    with pytest.raises(ValueError):
        mark(0, 1)
    with pytest.raises(ValueError):
        mark(1, 4096)


def test_slot_map_compresses_runs_and_leaves_out_unknown_dests() -> None:
    assert slot_map((1, 1, 2, 1, 0, 0, 3), {1: "a", 2: "b", 3: "c"}) == \
        "{ 0-1 : a, 2 : b, 3 : a, 6 : c }"


def test_wrr_sequence_becomes_a_numgen_map_in_order() -> None:
    svc = service(pick=Pick(PICK_SEQUENCE, (1, 1, 2, 1, 2, 3, 1, 2, 3)))
    marks = {d.id: f"0x{mark(1, d.id):08x}" for d in svc.dests}
    expr = pick_expr(svc, marks)
    assert expr is not None
    assert expr.startswith("numgen inc mod 9 map { 0-1 : 0x48001001, 2 : 0x48001002, "
                           "3 : 0x48001001, 4 : 0x48001002, 5 : 0x48001003,")


def test_single_slot_and_empty_picks() -> None:
    svc = service(pick=Pick(PICK_SEQUENCE, (2,)))
    assert pick_expr(svc, {2: "0x48001002"}) == "0x48001002"
    assert pick_expr(service(pick=Pick(PICK_SEQUENCE, ())), {1: "x"}) is None
    assert pick_expr(service(pick=Pick(PICK_SEQUENCE, (0, 0))), {1: "x"}) is None


def test_hash_pick_keys() -> None:
    svc = service(pick=Pick(PICK_HASH, (1, 2) * 128, key="saddr.sport"))
    expr = pick_expr(svc, {1: "A", 2: "B"})
    assert expr is not None and expr.startswith("jhash ip saddr . th sport mod 256 map {")
    with pytest.raises(ValueError):
        Pick(PICK_HASH, (1,), key="nonsense")


def test_nat_ruleset_first_transaction_deletes_a_stale_table() -> None:
    text = render(Ruleset("ip", (service(),)), None)
    lines = text.splitlines()
    assert lines[:2] == ["table ip halb { }", "delete table ip halb"]
    assert "dnat ip to ct mark map { 0x48001001 : 198.18.1.11 . 80" in text
    assert 'ct timeout set "tcp_900_120"' in text
    assert "ct mark 0 reject with icmp port-unreachable" in text
    assert "masquerade" not in text  # no real server asked for it
    # the flows of a real server that left are dropped
    assert "ct mark != { 0x48001001, 0x48001002, 0x48001003 } drop" in text


def test_nat_masquerade_and_port_zero_dests() -> None:
    svc = RuleService(1, "tcp", VIP, 0, dests(2, port=0, masq=True),
                      Pick(PICK_SEQUENCE, (1, 2)), persistent=60)
    text = render(Ruleset("ip", (svc,)), None)
    assert "ct mark { 0x48001001, 0x48001002 } masquerade" in text
    assert "ct mark { 0x48001001, 0x48001002 } dnat ip to ct mark map { 0x48001001 : " \
           "198.18.1.11, 0x48001002 : 198.18.1.12 }" in text
    assert "ip protocol . ip daddr vmap { tcp . 198.18.0.100 : goto s1 }" in text


def test_persistence_uses_a_timed_map_keyed_by_the_masked_client() -> None:
    svc = service(persistent=300, netmask="255.255.255.0")
    text = render(Ruleset("ip", (svc,)), None)
    assert "map p1 { type ipv4_addr : mark; flags dynamic, timeout; timeout 300s;" in text
    assert "ct mark set ip saddr & 255.255.255.0 map @p1" in text
    assert "update @p1 { ip saddr & 255.255.255.0 : ct mark }" in text
    # a template pointing at a real server that left is ignored
    assert "ct mark != 0 ct mark != { 0x48001001, 0x48001002, 0x48001003 } ct mark set 0" in text


def test_later_transactions_flush_and_delete_what_went_away() -> None:
    before = Ruleset("ip", (service(1), service(2, port=443, persistent=60)))
    after = Ruleset("ip", (service(1, n=2),), Timeouts(60, 10, 20))
    text = render(after, before)
    assert text.startswith("flush table ip halb\n")
    assert "delete table" not in text
    assert "delete chain ip halb s2" in text
    assert "delete map ip halb p2" in text
    assert "delete counter ip halb n1_3" in text
    assert "delete counter ip halb n1_1" not in text  # kept: the --stats figures go on
    assert "delete ct timeout" not in text  # conntrack entries may still use the old one
    assert 'ct timeout set "tcp_60_10"' in text


def test_dr_ruleset_keeps_a_flow_table_and_forwards_at_ingress() -> None:
    svc = service(persistent=30)
    text = render(Ruleset("netdev", (svc,), devices=("eth0",)), None)
    assert 'type filter hook ingress devices = { "eth0" } priority filter;' in text
    assert "meta pkttype != host accept" in text  # frames for another host's MAC pass by
    assert "map f1 { type ipv4_addr . inet_service : mark;" in text
    assert "meta mark set ip saddr . th sport map @f1" in text
    assert "tcp flags & (fin | syn | rst | ack) != syn drop" in text  # new flows start with SYN
    # a SYN reusing a closing flow's tuple: its entry goes, or `update` would keep the old
    # real server for the packets after the SYN (the connection split between two servers)
    reuse = ("tcp flags & (syn | ack) == syn ip saddr . th sport @c1 delete @f1 "
             "{ ip saddr . th sport : meta mark } meta mark set 0")
    assert reuse in text
    # ... also when that server is gone: the SYN is rescheduled before the removed-server drop
    drop = "meta mark != 0 meta mark != { 0x48001001, 0x48001002, 0x48001003 } drop"
    assert text.index(reuse) < text.index(drop)
    # a SYN on the flow of a removed server (a refused connection leaves no FIN or RST on the
    # director) is a new connection, not dropped till the entry expires
    assert ("meta mark != 0 meta mark != { 0x48001001, 0x48001002, 0x48001003 } tcp flags & "
            "(syn | ack) == syn delete @f1 { ip saddr . th sport : meta mark } meta mark set 0"
            ) in text
    assert 'fwd ip to meta mark map { 0x48001001 : 198.18.1.11, 0x48001002 : 198.18.1.12, ' \
           '0x48001003 : 198.18.1.13 } device "eth0"' in text
    assert "update @f1 { ip saddr . th sport timeout 120s : meta mark }" in text
    assert "dnat" not in text and "counter name meta mark map" in text


def test_dr_udp_has_no_syn_rule_and_udp_timeout() -> None:
    svc = service(proto="udp")
    text = render(Ruleset("netdev", (svc,), devices=("eth0",)), None)
    assert "tcp flags" not in text
    assert "update @f1 { ip saddr . th sport timeout 300s : meta mark }" in text


@pytest.mark.parametrize("family", ["ip", "netdev"])
def test_a_ruleset_without_services_removes_the_table(family: str) -> None:
    before = Ruleset(family, (service(),), devices=("eth0",))
    text = render(Ruleset(family, (), devices=()), before)
    assert text.splitlines() == [f"flush table {family} halb", f"delete table {family} halb"]
    assert render(Ruleset(family, ()), None).splitlines()[-1] == f"delete table {family} halb"
    # and the next ruleset with services creates it again, with nothing to flush
    again = render(before, Ruleset(family, ()))
    assert "flush" not in again and again.startswith(f"table {family} halb {{")


def test_fwmark_services_are_nat_only() -> None:
    svc = RuleService(1, "fwm", "", 0, dests(1, port=0), Pick(PICK_SEQUENCE, (1,)),
                      persistent=60, fwmark=7)
    text = render(Ruleset("ip", (svc,)), None)
    assert "meta l4proto { tcp, udp } meta mark vmap { 7 : goto s1 }" in text
    with pytest.raises(ValueError):
        Ruleset("netdev", (svc,), devices=("eth0",))


def test_remove_is_safe_when_absent() -> None:
    assert remove("netdev") == "table netdev halb { }\ndelete table netdev halb\n"


def test_dr_flow_maps_hold_more_than_two_minutes_of_busy_traffic() -> None:
    # a DR flow stays tcpfin (120 s) after its FIN; 65536 elements were full at 550 conn/s
    text = render(Ruleset("netdev", (service(persistent=60),), devices=("eth0",)), None)
    sizes = [int(line.split("size ")[1].split(";")[0]) for line in text.splitlines()
             if line.strip().startswith(("map f1", "set c1", "map p1"))]
    assert len(sizes) == 3 and min(sizes) >= 8_000 * 120  # 8,000 conn/s for tcpfin
