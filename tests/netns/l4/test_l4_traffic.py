"""The L4 director forwarding real traffic in namespaces (root): a client, a director running
`halb ipvsadm --start-director`, three real servers answering their names, on 198.18.0.0/15.

Modes: "nat" (two-armed LVS-NAT, -m), "onearm" (NAT with masquerade) and "dr" (the seeds' DR
set-up, -g: VIP on the real servers' lo, arp_ignore=1, arp_announce=2). Data planes: nftables
(the kernel forwards) in every mode, userspace (a full proxy) in the NAT modes; DR in user space
is refused. Exact schedulers are compared pick for pick with halb's own scheduler (the oracle,
itself checked against the kernel's sequences in tests/unit/balancing).
"""

from __future__ import annotations

import collections
import time

import pytest
from l4lab import dests, expected_sequence, services, wait_for

VIP = "198.18.0.100"
SVC = f"{VIP}:80"
FWD = {"nat": "-m", "onearm": "-m", "dr": "-g"}
PLANES = [("nftables", "nat"), ("nftables", "dr"), ("userspace", "nat")]
PLANES_ALL = [*PLANES, ("nftables", "onearm")]


def add(director: object, net: object, scheduler: str, weights: list[int], mode: str,
        *extra: str, service: str = SVC, proto: str = "-t") -> None:
    director.ipvsadm("-A", proto, service, "-s", scheduler, *extra)  # type: ignore[attr-defined]
    for s, w in zip(net.servers, weights, strict=False):  # type: ignore[attr-defined]
        if w is None:
            continue
        director.ipvsadm("-a", proto, service, "-r", f"{s.addr}:80",  # type: ignore[attr-defined]
                         FWD[mode], "-w", str(w))


def names(result: dict[str, object]) -> list[str | None]:
    got = result["names"]
    assert isinstance(got, list)
    return got


@pytest.mark.root
@pytest.mark.parametrize("dataplane, mode", PLANES_ALL)
@pytest.mark.parametrize("scheduler, weights", [
    ("rr", [1, 1, 1]), ("wrr", [4, 3, 2]), ("fo", [1, 3, 2]), ("dh", [1, 1, 1])])
def test_exact_schedulers_give_the_kernel_sequence(lab: object, dataplane: str, mode: str,
                                                   scheduler: str, weights: list[int]) -> None:
    net, d = lab(mode, dataplane)  # type: ignore[operator]
    add(d, net, scheduler, weights, mode)
    got = names(net.probe(27))
    assert got == expected_sequence(scheduler, weights, 27)


@pytest.mark.root
@pytest.mark.parametrize("dataplane, mode", PLANES)
@pytest.mark.parametrize("scheduler", ["sh", "mh"])
def test_hashing_keeps_each_client_on_one_server(lab: object, dataplane: str, mode: str,
                                                 scheduler: str) -> None:
    net, d = lab(mode, dataplane)  # type: ignore[operator]
    add(d, net, scheduler, [1, 1, 1], mode)
    got = names(net.probe(24, sources=net.clients))
    per_client = collections.defaultdict(set)
    for i, name in enumerate(got):
        assert name is not None
        per_client[net.clients[i % len(net.clients)]].add(name)
    assert all(len(v) == 1 for v in per_client.values()), per_client
    # with the port in the key (-b sh-port / mh-port) one client's connections spread
    d.ipvsadm("-E", "-t", SVC, "-s", scheduler, "-b", f"{scheduler}-port")
    spread = names(net.probe(30))
    assert None not in spread and len(set(spread)) >= 2, spread


@pytest.mark.root
@pytest.mark.parametrize("dataplane, mode", PLANES)
@pytest.mark.parametrize("scheduler", ["lc", "wlc", "sed", "nq"])
def test_least_connection_family_avoids_the_busy_server(lab: object, dataplane: str,
                                                        mode: str, scheduler: str) -> None:
    net, d = lab(mode, dataplane)  # type: ignore[operator]
    add(d, net, scheduler, [1], mode)
    held, first = net.hold(4)
    try:
        assert first == ["rs1"] * 4
        for s in net.servers[1:]:
            d.ipvsadm("-a", "-t", SVC, "-r", f"{s.addr}:80", FWD[mode])
        busy = f"{net.servers[0].addr}:80"
        wait_for(lambda: dests(d.ipvsadm("-L", "-n").stdout)[busy][2] == "4")
        time.sleep(1.2)  # a director tick re-plans from the counts just read
        got = names(net.probe(6))
        # (sed and nq ignore inactive connections: short ones may all go to one idle server)
        assert "rs1" not in got and None not in got, got
    finally:
        net.release(held)


@pytest.mark.root
@pytest.mark.parametrize("dataplane, mode", PLANES)
def test_ovf_fills_the_heaviest_server_up_to_its_weight(lab: object, dataplane: str,
                                                        mode: str) -> None:
    net, d = lab(mode, dataplane)  # type: ignore[operator]
    add(d, net, "ovf", [2, 1], mode)
    held, got = net.hold(4)
    try:
        assert got == ["rs1", "rs1", "rs1", "rs2"]  # active <= weight: 0, 1, 2 on rs1
    finally:
        net.release(held)


@pytest.mark.root
@pytest.mark.parametrize("dataplane, mode", PLANES)
def test_persistence_keeps_a_client_on_one_server(lab: object, dataplane: str,
                                                  mode: str) -> None:
    net, d = lab(mode, dataplane)  # type: ignore[operator]
    add(d, net, "rr", [1, 1, 1], mode, "-p", "3")
    a, b = net.clients[0], net.clients[1]
    first = names(net.probe(5, sources=[a]))
    second = names(net.probe(3, sources=[b]))
    assert len(set(first)) == 1 and len(set(second)) == 1 and first[0] != second[0]
    again = names(net.probe(2, sources=[a]))
    assert set(again) == {first[0]}
    if dataplane == "nftables":
        # the kernel's maps reach the listing at the director's next tick (0.5 s)
        deadline = time.monotonic() + 2.0
        listing = d.ipvsadm("-L", "-n", "-c").stdout
        while f"{a}:0" not in listing and time.monotonic() < deadline:
            time.sleep(0.1)
            listing = d.ipvsadm("-L", "-n", "-c").stdout
        assert f"{a}:0" in listing and "NONE" in listing, listing  # the template
        # halb's kernel templates expire -p seconds after the client's last packet
        time.sleep(4.5)
        later = names(net.probe(1, sources=[a]))
        assert later[0] not in (first[0], second[0])  # the next rr pick


@pytest.mark.root
@pytest.mark.parametrize("mode", ["nat", "dr"])
def test_persistence_netmask_groups_clients(lab: object, mode: str) -> None:
    net, d = lab(mode, "nftables")  # type: ignore[operator]
    add(d, net, "rr", [1, 1, 1], mode, "-p", "60", "-M", "255.255.255.0")
    got = names(net.probe(8, sources=net.clients))
    assert len(set(got)) == 1, got  # every client is in 198.18.0.0/24


@pytest.mark.root
@pytest.mark.parametrize("dataplane, mode", PLANES)
def test_weight_zero_drains(lab: object, dataplane: str, mode: str) -> None:
    net, d = lab(mode, dataplane)  # type: ignore[operator]
    add(d, net, "rr", [1, 1], mode)
    held, got = net.hold(2)
    try:
        assert sorted(got) == ["rs1", "rs2"]  # type: ignore[type-var]
        d.ipvsadm("-e", "-t", SVC, "-r", f"{net.servers[0].addr}:80", FWD[mode], "-w", "0")
        fresh = names(net.probe(6))
        assert fresh == ["rs2"] * 6
        assert net.again(held) == got  # the existing connections go on
        assert dests(d.ipvsadm("-L", "-n").stdout)[f"{net.servers[0].addr}:80"][1] == "0"
    finally:
        net.release(held)


@pytest.mark.root
@pytest.mark.parametrize("dataplane, mode", PLANES)
def test_deleting_a_real_server_ends_its_connections(lab: object, dataplane: str,
                                                     mode: str) -> None:
    net, d = lab(mode, dataplane)  # type: ignore[operator]
    add(d, net, "rr", [1, 1], mode)
    held, got = net.hold(2)
    try:
        gone = net.servers[0]
        d.ipvsadm("-d", "-t", SVC, "-r", f"{gone.addr}:80")
        assert net.again(held) == [None if g == gone.name else g for g in got]
        assert names(net.probe(3)) == ["rs2"] * 3
    finally:
        net.release(held)


@pytest.mark.root
@pytest.mark.parametrize("dataplane, mode", PLANES)
def test_upper_threshold_overloads_a_server(lab: object, dataplane: str, mode: str) -> None:
    net, d = lab(mode, dataplane)  # type: ignore[operator]
    d.ipvsadm("-A", "-t", SVC, "-s", "rr")
    first = net.servers[0]
    d.ipvsadm("-a", "-t", SVC, "-r", f"{first.addr}:80", FWD[mode], "-x", "2")
    for s in net.servers[1:]:
        d.ipvsadm("-a", "-t", SVC, "-r", f"{s.addr}:80", FWD[mode])
    held, got = net.hold(6)
    try:
        assert collections.Counter(got)["rs1"] == 2
        rs1 = f"{first.addr}:80"
        th = dests(d.ipvsadm("-L", "-n", "--thresholds").stdout)[rs1]
        assert th[:2] == ["2", "0"]
        wait_for(lambda: dests(d.ipvsadm("-L", "-n").stdout)[rs1][2] == "2")
        time.sleep(1.2)  # the overload flag reaches the kernel at the next tick
        fresh = names(net.probe(6))
        assert "rs1" not in fresh and None not in fresh, fresh
    finally:
        net.release(held)


def _stats(listing: str) -> tuple[list[int], dict[str, list[int]]]:
    svc = next(iter(services(listing).values()))
    return [int(x) for x in svc], {k: [int(x) for x in v] for k, v in dests(listing).items()}


@pytest.mark.root
@pytest.mark.parametrize("dataplane, mode", PLANES_ALL)
def test_stats_match_the_traffic_sent(lab: object, dataplane: str, mode: str) -> None:
    net, d = lab(mode, dataplane)  # type: ignore[operator]
    add(d, net, "rr", [1, 1, 1], mode)
    result = net.probe(12)
    got = names(result)
    sent, received = int(result["sent"]), int(result["received"])  # type: ignore[call-overload]

    def settled() -> tuple[list[int], dict[str, list[int]]] | None:
        svc, per = _stats(d.ipvsadm("-L", "-n", "--stats", "--exact").stdout)
        return (svc, per) if svc[0] == 12 and svc[3] >= sent else None

    svc, per = wait_for(settled)  # type: ignore[misc]
    conns, inpkts, outpkts, inbytes, outbytes = svc
    assert conns == 12
    counts = collections.Counter(got)
    for s in net.servers:
        assert per[f"{s.addr}:80"][0] == counts[s.name]
    assert [sum(v[i] for v in per.values()) for i in range(5)] == svc
    if dataplane == "userspace":  # the proxy counts payload: exactly what was sent
        assert (inbytes, outbytes) == (sent, received)
        return
    # the kernel counts IP packets: the payload plus 40..80 header bytes per packet
    assert 12 * 4 <= inpkts <= 12 * 8
    assert sent + 40 * inpkts <= inbytes <= sent + 80 * inpkts
    if mode == "dr":  # replies bypass the director
        assert outpkts == 0 and outbytes == 0
    else:
        assert 12 * 3 <= outpkts <= 12 * 8
        assert received + 40 * outpkts <= outbytes <= received + 80 * outpkts


@pytest.mark.root
@pytest.mark.parametrize("dataplane, mode", PLANES)
def test_udp_service_round_robin(lab: object, dataplane: str, mode: str) -> None:
    net, d = lab(mode, dataplane)  # type: ignore[operator]
    add(d, net, "rr", [1, 1, 1], mode, proto="-u")
    got = names(net.probe(6, udp=True))
    want = expected_sequence("rr", [1, 1, 1], 6)
    assert got == want
    listing = wait_for(lambda: (out := d.ipvsadm("-L", "-n", "--stats", "--exact").stdout)
                       and services(out).get(f"UDP {SVC}", ["0"])[0] == "6" and out)
    assert listing


@pytest.mark.root
def test_userspace_refuses_dr_and_nftables_refuses_tunnels(lab: object) -> None:
    net, d = lab("nat", "userspace")  # type: ignore[operator]
    d.ipvsadm("-A", "-t", SVC, "-s", "rr")
    out = d.ipvsadm("-a", "-t", SVC, "-r", f"{net.servers[0].addr}:80", "-g", check=False)
    assert out.returncode != 0 and out.stderr
    net2, k = lab("dr", "nftables")  # type: ignore[operator]
    k.ipvsadm("-A", "-t", SVC, "-s", "rr")
    out = k.ipvsadm("-a", "-t", SVC, "-r", f"{net2.servers[0].addr}:80", "-i", check=False)
    assert out.returncode != 0 and out.stderr
    assert dests(k.ipvsadm("-L", "-n").stdout) == {}


@pytest.mark.root
@pytest.mark.parametrize("mode", ["nat", "dr"])
def test_stop_and_crash_leave_no_rules(lab: object, mode: str) -> None:
    import os
    import signal

    from l4lab import Director

    net, d = lab(mode, "nftables")  # type: ignore[operator]
    add(d, net, "rr", [1, 1, 1], mode)
    family = "netdev" if mode == "dr" else "ip"
    assert f"table {family} halb" in d.nft_tables()
    os.killpg(d.proc.pid, signal.SIGKILL)  # a crash: the rules stay...
    d.proc.wait(10)
    assert f"table {family} halb" in d.nft_tables()
    assert names(net.probe(3)) == expected_sequence("rr", [1, 1, 1], 3)
    # ...until the next director starts: the stale table goes, its services with it
    tmp = d.log.parent / "again"
    tmp.mkdir()
    d2 = Director(net, "nftables", tmp)
    try:
        assert "halb" not in d2.nft_tables().replace("table ip halb", "")
        assert names(net.probe(1)) == [None]  # no service any more
    finally:
        d2.close()
    assert "halb" not in d2.nft_tables()
