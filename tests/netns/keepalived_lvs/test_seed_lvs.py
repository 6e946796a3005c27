"""Seed 002 §4-13 (the LVS master's keepalived.conf) run as it is by `halb keepalived` (VRRP and
the checkers together, as keepalived without -P / -C), with the seed's own timings
(delay_loop 6, connect_timeout 2, nb_get_retry 2, delay_before_retry 3).

The seed's test list: "关闭一台Nginx服务器…期间访问无影响" (one Nginx server stopped: access keeps
working) and "故障移除 / 故障恢复自动添加" (a failed server is removed, a recovered one added back).

Addresses mapped onto halb.testing.l4net's DR topology (198.18.0.0/15 only): the VIP
198.18.156.150 → 198.18.0.100, real servers .135 / .137 → 198.18.0.11 / .12, interface
ens33 → eth0. The VIP is taken off the director first, so it is VRRP (MASTER) that brings it;
the kernel data plane (nftables) does DR, as the seed's LVS does.
"""

from __future__ import annotations

import pathlib
import time

import pytest
from kalab import wait_for

from halb.testing.l4net import L4Net
from halb.testing.netns import ip

pytestmark = pytest.mark.root

SEEDS = pathlib.Path(__file__).resolve().parents[2] / "unit" / "config" / "keepalived_seeds"
MAP = {"198.18.156.150": "198.18.0.100", "198.18.156.135": "198.18.0.11",
       "198.18.156.137": "198.18.0.12", "ens33": "eth0"}
# keepalived's bound from the failure to the removal: delay_loop + connect_timeout x (retry + 1)
# + delay_before_retry x retry, with the seed's numbers, plus slack
REMOVAL = 6 + 2 * 3 + 3 * 2 + 4.0


def seed(name: str) -> str:
    text = (SEEDS / name).read_text()
    for old, new in MAP.items():
        text = text.replace(old, new)
    return text


def no_vip(net: L4Net) -> None:
    ip("-n", net.director_ns, "addr", "del", f"{net.vip}/32", "dev", "eth0")


def test_seed_002_4_13_stop_one_server(lab) -> None:  # type: ignore[no-untyped-def]
    net, ka = lab(seed("002_4-13_lvs_master.conf"), mode="dr", dataplane="nftables",
                  halves=(), before=no_vip, servers=2)
    wait_for(lambda: net.vip in ip("-n", net.director_ns, "addr", "show", "eth0").stdout,
             10, why=ka.why)  # VRRP MASTER brought the VIP
    wait_for(lambda: set(ka.dests()) == {"198.18.0.11:80", "198.18.0.12:80"}, 10, why=ka.why)
    assert "TCP  198.18.0.100:80 rr persistent 5" in ka.listing()
    assert {r[0] for r in ka.dests().values()} == {"Route"}
    first = net.probe(8, sources=net.clients, timeout=2.0)["names"]
    assert None not in first and set(first) <= {"rs1", "rs2"}, first  # type: ignore[operator]

    ka.checked("198.18.0.11:80", 12)  # checked once: the failure goes through nb_get_retry
    net._kill(net.servers[0].procs.pop())
    stopped = time.monotonic()
    wait_for(lambda: "198.18.0.11:80" not in ka.dests(), REMOVAL, step=0.2, why=ka.why)
    assert time.monotonic() - stopped <= REMOVAL
    after = net.probe(8, sources=net.clients, timeout=2.0)["names"]
    assert after == ["rs2"] * 8, after  # access unaffected: every client served by rs2
    assert "TCP_CHECK on service [198.18.0.11]:tcp:80 failed after 2 retries" in (
        ka.log.read_text())

    net.start_server(net.servers[0])
    wait_for(lambda: "198.18.0.11:80" in ka.dests(), 6 + 2 + 4.0, step=0.2, why=ka.why)
    assert ka.stop() == 0
    assert "halb" not in ka.nft_tables()
