"""Invalid VRRP packets sent at a running halb MASTER (v2, PASS) from the client namespace:
bad checksum, TTL 254, a wrong password, a short packet, and adverts for a VRID nobody has.
Each claims priority 254 (above the master's 150), so any that got through would make the
master step down. They are dropped, each counted where keepalived counts it (halb's
keepalived.stats, read through SIGUSR2), and the master keeps its state and its VIP (sampled
every 50 ms). The control at the end: one valid priority-254 advert from the same sender does
make it step down - the crafted packets did reach it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time

import pytest
from vrrp_lab import STARTING, Cluster, instance_conf, mdi

from halb.testing.netns import Lan, run_in_netns
from halb.vrrp import packet

VIP = ipaddress.IPv4Address("198.18.0.100")
ROUNDS = 5


def advert(priority: int = 254, password: str = "1111", vrid: int = 51) -> packet.Advert:
    return packet.Advert(2, vrid, priority, (VIP,), 100, packet.AUTH_PASS,
                         packet.password(password))


def datagrams(src: ipaddress.IPv4Address) -> dict[str, bytes]:
    good = packet.encode_ipv4(advert(), src)
    bad_sum = bytearray(good)
    bad_sum[26] ^= 0xFF  # the VRRP checksum (IP header 20 + offset 6)
    return {
        "checksum": bytes(bad_sum),
        "ttl": packet.encode_ipv4(advert(), src, ttl=254),
        "auth": packet.encode_ipv4(advert(password="wrong"), src),
        "short": good[:20 + 12],  # the kernel rewrites the IP total length
        "vrid": packet.encode_ipv4(advert(vrid=99), src),
        "valid": good,
    }


def send(lan: Lan, payloads: list[bytes]) -> None:
    def run() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
            for data in payloads:
                s.sendto(data, (str(packet.MCAST4), 0))
                time.sleep(0.01)
    run_in_netns(lan.client_ns, run)


def counters(text: str) -> dict[str, int]:
    """keepalived.stats as {"Section/Name": n} (e.g. "Packet Errors/TTL")."""
    out: dict[str, int] = {}
    section = ""
    for line in text.splitlines():
        m = re.match(r"(\s*)([^:]+):\s*(\d+)?$", line)
        if not m:
            continue
        if m.group(3) is None:
            section = m.group(2).strip()
        else:
            out[f"{section}/{m.group(2).strip()}"] = int(m.group(3))
    return out


@pytest.mark.root
def test_invalid_adverts_are_dropped_counted_and_change_nothing(
        cluster: Cluster, lan: Lan) -> None:
    cluster.sample()
    cluster.start("n1", "halb", instance_conf(version=2, state="MASTER", priority=150))
    cluster.wait_holder("n1", timeout=mdi(2, 150, 1) + STARTING)  # + the daemon starting
    base = counters(cluster.dump("n1"))
    assert base["Advertisements/Sent"] > 0 and base["Advertisements/Received"] == 0

    d = datagrams(lan.client_address.ip)
    t = time.monotonic()
    send(lan, [d[k] for k in ("checksum", "ttl", "auth", "short", "vrid")] * ROUNDS)
    time.sleep(1.2)  # more than one advert interval: a step-down would have shown
    got = counters(cluster.dump("n1"))
    delta = {k: got[k] - base.get(k, 0) for k in got if got[k] != base.get(k, 0)}
    delta.pop("Advertisements/Sent", None)
    assert delta == {
        "Other Errors (halb)/Checksum": ROUNDS,
        "Packet Errors/TTL": ROUNDS,
        "Authentication Errors/Failure": ROUNDS,
        "Packet Errors/Length": ROUNDS,
        "Dropped before any instance (halb)/Unknown vrid": ROUNDS,
    }, got
    assert all(h == ("n1",) for _, h in cluster.samples_since(t)), "the VIP moved"
    log = cluster.log("n1")
    assert "Entering BACKUP STATE" not in log.split("Entering MASTER STATE", 1)[1]
    for said in ("Invalid VRRPv2 checksum", "invalid TTL/HL. Received 254 and expect 255",
                 "received an invalid passwd!", "vrrp packet too short"):
        assert said in log

    # the control: a valid advert from the same sender with a higher priority is obeyed
    send(lan, [d["valid"]])
    cluster.wait_log("n1", "Master received advert from 198.18.0.200 with higher priority 254"
                     ", ours 150", 3)
    end = time.monotonic() + 3
    while "n1" in cluster.holders():
        assert time.monotonic() < end, "the master kept its VIP after a valid higher advert"
        time.sleep(0.02)
    assert counters(cluster.dump("n1"))["Advertisements/Received"] == 1
    cluster.wait_holder("n1", timeout=mdi(2, 150, 1) + 3)  # the fake master is gone: back
