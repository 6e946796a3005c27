"""The seeds' ipvsadm command lines, run as written against the kernel data plane in the seeds'
DR set-up (root). Only the addresses change, mapped into 198.18.0.0/15 by the tables below
(the topology's VIP is 198.18.0.100, its real servers 198.18.0.11-13, each with the VIP on lo
and arp_ignore=1 / arp_announce=2, as the seeds' lvs_dr_rs.sh and sysctl.conf set them). The
director is started as a user starts it: `halb ipvsadm --start-director --dataplane nftables`.
"""

from __future__ import annotations

import collections
import shlex
import time

import pytest
from l4lab import dests, services, wait_for

# seed 004 §3.1 "ipvsadm 集群设置": VIP 10.10.10.100, web servers 12 and 13
SEED_004 = """\
ipvsadm -A -t 10.10.10.100:80 -s rr
ipvsadm -a -t 10.10.10.100:80 -r 10.10.10.12:80 -g
ipvsadm -a -t 10.10.10.100:80 -r 10.10.10.13:80 -g
"""
MAP_004 = {"10.10.10.100": "198.18.0.100", "10.10.10.12": "198.18.0.12",
           "10.10.10.13": "198.18.0.13"}

# seed 000 "DR模式配置" lvs_dr.sh: $ipv=ipvsadm, vip=192.168.100.235, rs1=192.168.100.112
SEED_000 = """\
ipvsadm -C
ipvsadm -A -t $vip:8080 -s wrr
ipvsadm -a -t $vip:8080 -r $rs1:8080 -g -w 3
"""
MAP_000 = {"$vip": "198.18.0.100", "$rs1": "198.18.0.11"}

# seed 002 4-10 "使用ipvsadm配置集群规则": VIP 192.168.156.150, real servers 135 and 137
SEED_002 = """\
ipvsadm -A -t 192.168.156.150:80 -s rr
ipvsadm -a -t 192.168.156.150:80 -r 192.168.156.135 -g
ipvsadm -a -t 192.168.156.150:80 -r 192.168.156.137 -g
"""
MAP_002 = {"192.168.156.150": "198.18.0.100", "192.168.156.135": "198.18.0.11",
           "192.168.156.137": "198.18.0.12"}


def run_seed(director: object, script: str, mapping: dict[str, str]) -> None:
    for line in script.splitlines():
        for old, new in mapping.items():
            line = line.replace(old, new)
        argv = shlex.split(line)
        assert argv[0] == "ipvsadm"
        director.ipvsadm(*argv[1:])  # type: ignore[attr-defined]


@pytest.mark.root
def test_seed_004_dr_round_robin_and_stats(lab: object) -> None:
    net, d = lab("dr", "nftables", factory=None)  # type: ignore[operator]
    run_seed(d, SEED_004, MAP_004)
    listing = d.ipvsadm("-Ln").stdout
    assert services(listing) == {"TCP 198.18.0.100:80": ["rr"]}
    assert {k: v[:2] for k, v in dests(listing).items()} == {
        "198.18.0.12:80": ["Route", "1"], "198.18.0.13:80": ["Route", "1"]}
    got = net.probe(10)["names"]
    # the list is newest first, as in the kernel: .13 then .12, alternating
    assert got == ["rs3", "rs2"] * 5
    stats = wait_for(lambda: (out := d.ipvsadm("-Ln", "--stats").stdout)
                     and services(out)["TCP 198.18.0.100:80"][0] == "10" and out)
    per = dests(stats)  # type: ignore[arg-type]
    assert per["198.18.0.12:80"][0] == per["198.18.0.13:80"][0] == "5"
    assert per["198.18.0.12:80"][2] == "0"  # OutPkts: DR replies bypass the director
    # "service ipvsadm save", then a restore after a clear, gives the same service back
    saved = d.ipvsadm("-S", "-n").stdout
    assert "-A -t 198.18.0.100:80 -s rr" in saved
    d.ipvsadm("-C")
    assert dests(d.ipvsadm("-Ln").stdout) == {}
    d.ipvsadm("-R", stdin=saved)
    assert len(dests(d.ipvsadm("-Ln").stdout)) == 2
    assert sorted(net.probe(4)["names"]) == ["rs2", "rs2", "rs3", "rs3"]


@pytest.mark.root
def test_seed_000_dr_wrr_on_8080_and_short_timeouts(lab: object) -> None:
    net, d = lab("dr", "nftables", factory=None, port=8080)  # type: ignore[operator]
    run_seed(d, SEED_000, MAP_000)
    listing = d.ipvsadm("-L", "-n").stdout
    assert dests(listing)["198.18.0.11:8080"][:2] == ["Route", "3"]
    # seed 000: "ipvsadm -L --timeout" shows 15 minutes; "ipvsadm --set 1 2 1" to see rr at work
    assert d.ipvsadm("-L", "--timeout").stdout == "Timeout (tcp tcpfin udp): 900 120 300\n"
    d.ipvsadm("--set", "1", "2", "1")
    assert d.ipvsadm("-L", "--timeout").stdout == "Timeout (tcp tcpfin udp): 1 2 1\n"
    assert net.probe(6, port=8080)["names"] == ["rs1"] * 6
    # a connection idle for longer than the new tcp timeout is forgotten by the director: in
    # DR its next segment is no SYN and is dropped, as IPVS drops it
    held, got = net.hold(1)
    try:
        assert got == ["rs1"]
        time.sleep(3)
        assert net.again(held) == [None]
    finally:
        net.release(held)
    assert net.probe(1, port=8080)["names"] == ["rs1"]


@pytest.mark.root
def test_seed_002_dr_real_servers_without_a_port(lab: object) -> None:
    net, d = lab("dr", "nftables", factory=None)  # type: ignore[operator]
    run_seed(d, SEED_002, MAP_002)
    rows = dests(d.ipvsadm("-Ln").stdout)
    assert set(rows) == {"198.18.0.11:80", "198.18.0.12:80"}  # the port defaults to the vport
    got = net.probe(8)["names"]
    assert collections.Counter(got) == {"rs1": 4, "rs2": 4}
    assert got[:2] == ["rs2", "rs1"]
    # seed 002 4-12 (DR and persistence): -p keeps the client on one server
    d.ipvsadm("-E", "-t", "198.18.0.100:80", "-s", "rr", "-p", "5")
    time.sleep(0.1)
    assert len(set(net.probe(6)["names"])) == 1
