"""halb keepalived with halb and with Debian's keepalived 2.2.7, in both roles, v2 (PASS) and v3.

Each pairing runs one life cycle on a bridged LAN (198.18.0.0/24, VIP 198.18.0.100) while the
VIP's holders are sampled every 50 ms:

  election      the higher priority (150, state MASTER) holds the VIP, the client's neighbour
                entry points at it;
  crash         SIGKILL of the master's processes and its cable pulled: the backup (100) holds
                the VIP within Master_Down_Interval + 1 s, and the client's neighbour entry
                follows it (gratuitous ARP) without the client asking;
  preemption    the old master comes back and takes the VIP again within its own MDI + 1 s;
  graceful stop SIGTERM of the master: priority 0 and the VIPs removed, the backup holds the VIP
                within Skew_Time + 0.6 s;
  never two     two online nodes never held the VIP together longer than one advert interval.

Then nopreempt, and a failing vrrp_script (weight -60, and weight 0 = FAULT) moving the VIP.
"""

from __future__ import annotations

import pathlib
import time

import pytest
from vrrp_lab import STARTING, TIMINGS, Cluster, instance_conf, mdi, skew

from halb.testing.netns import Lan

PAIRS = [("halb", "halb"), ("halb", "keepalived"), ("keepalived", "halb")]
VERSIONS = [2, 3]
VIP = "198.18.0.100"
SLACK_DOWN = 1.0
SLACK_SKEW = 0.6


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS, ids=["v2-pass", "v3"])
@pytest.mark.parametrize("pair", PAIRS, ids=["halb+halb", "halb+keepalived",
                                             "keepalived+halb"])
def test_failover_cycle(cluster: Cluster, lan: Lan, pair: tuple[str, str], version: int) -> None:
    first, second = pair
    master = instance_conf(version=version, state="MASTER", priority=150)
    backup = instance_conf(version=version, state="BACKUP", priority=100)
    label = f"v{version} {first}(150)+{second}(100)"
    cluster.sample()
    cluster.start("n1", first, master)
    cluster.start("n2", second, backup)

    # election: the higher priority wins
    cluster.wait_holder("n1", timeout=mdi(version, 150, 1) + STARTING)  # + the daemons starting
    cluster.hold_steady("n1", 0.5)
    lan.touch_from_client(VIP)
    assert lan.neighbour(VIP) == lan.mac("n1")

    # crash of the master: the backup within Master_Down_Interval
    t = cluster.crash("n1")
    bound = mdi(version, 100, 1) + SLACK_DOWN
    took = cluster.wait_holder("n2", timeout=bound + 2, since=t)
    TIMINGS.append((f"{label}: SIGKILL of the master -> VIP on backup", took, bound))
    assert took <= bound
    _wait_neighbour(lan, "n2")

    # the old master returns and preempts
    lan.revive("n1")
    offset = len(cluster.log("n1"))
    cluster.start("n1", first, master)
    started = cluster.wait_ready("n1", STARTING, offset)  # the start is load, not protocol
    bound = mdi(version, 150, 1) + SLACK_DOWN
    took = cluster.wait_holder("n1", timeout=bound + 2, since=started)
    TIMINGS.append((f"{label}: old master back -> preempts", took, bound))
    assert took <= bound
    _wait_neighbour(lan, "n1")
    cluster.hold_steady("n1", 0.3)

    # graceful stop: priority 0, the backup after Skew_Time
    t = cluster.stop("n1", wait=False)
    bound = skew(version, 100, 1) + SLACK_SKEW
    took = cluster.wait_holder("n2", timeout=bound + 2, since=t)
    cluster.reap()
    TIMINGS.append((f"{label}: SIGTERM of the master -> VIP on backup", took, bound))
    assert took <= bound
    assert "n1" not in lan.holders(VIP, online_only=False)  # the stopped master removed it
    _wait_neighbour(lan, "n2")

    cluster.close()
    overlap = cluster.longest_overlap()
    TIMINGS.append((f"{label}: longest two-holder overlap", overlap, 1.0))
    assert overlap <= 1.0, f"two nodes held the VIP for {overlap:.2f}s"


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("pair", PAIRS, ids=["halb+halb", "halb+keepalived",
                                             "keepalived+halb"])
def test_nopreempt(cluster: Cluster, lan: Lan, pair: tuple[str, str]) -> None:
    """nopreempt on the higher priority node (both state BACKUP): once the lower one is MASTER,
    the higher one that starts later stays BACKUP."""
    high, low = pair
    adv = 0.5
    cluster.start("n2", low, instance_conf(version=3, priority=100, advert_int=adv))
    cluster.wait_holder("n2", timeout=mdi(3, 100, adv) + STARTING)  # + the daemon starting
    cluster.start("n1", high, instance_conf(version=3, priority=150, advert_int=adv,
                                            extra="    nopreempt"))
    cluster.hold_steady("n2", mdi(3, 150, adv) + 1.5)
    # without nopreempt it would have taken over: check the control case on a restart
    cluster.stop("n1")
    cluster.start("n1", high, instance_conf(version=3, priority=150, advert_int=adv))
    cluster.wait_holder("n1", timeout=mdi(3, 150, adv) + STARTING)  # + the daemon starting again


def _script(tmp: pathlib.Path) -> tuple[pathlib.Path, str]:
    flag = tmp / "healthy"
    flag.write_text("ok\n")
    script = tmp / "check.sh"
    script.write_text(f"#!/bin/sh\ntest -e {flag}\n")
    script.chmod(0o755)
    block = (f'vrrp_script chk {{\n    script "{script}"\n    interval 0.2\n    timeout 1\n'
             f"    fall 1\n    rise 1\n}}\n")
    return flag, block


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize(("pair", "weight"), [
    (("halb", "halb"), -60), (("halb", "keepalived"), -60), (("keepalived", "halb"), -60),
    (("halb", "halb"), 0)], ids=["halb+halb", "halb+keepalived", "keepalived+halb",
                                 "halb+halb-weight0-fault"])
def test_failing_script_moves_vip(cluster: Cluster, lan: Lan, tmp_path: pathlib.Path,
                                  pair: tuple[str, str], weight: int) -> None:
    """weight -60: 150 drops to 90 and the backup (100) preempts after its MDI; weight 0: the
    master goes FAULT, sends priority 0, the backup takes over after Skew_Time."""
    first, second = pair
    adv = 0.5
    flag, block = _script(tmp_path)
    track = f"    track_script {{\n        chk weight {weight}\n    }}"
    cluster.start("n1", first, instance_conf(version=3, state="MASTER", priority=150,
                                             advert_int=adv, scripts=block, extra=track))
    cluster.start("n2", second, instance_conf(version=3, priority=100, advert_int=adv))
    cluster.wait_holder("n1", timeout=mdi(3, 150, adv) + STARTING)  # + the daemons starting
    flag.unlink()  # the check fails from now on
    bound = 0.2 + 1 + mdi(3, 100, adv) + SLACK_DOWN  # interval + timeout + MDI
    took = cluster.wait_holder("n2", timeout=bound + 2)
    TIMINGS.append((f"v3/0.5s {first}+{second}: script fails (weight {weight}) -> VIP moves",
                    took, bound))
    flag.write_text("ok\n")  # healthy again: n1 (150) preempts
    cluster.wait_holder("n1", timeout=mdi(3, 150, adv) + 3)


def _wait_neighbour(lan: Lan, node: str, timeout: float = 1.0) -> None:
    """The client's entry for the VIP moves to `node` by itself (gratuitous ARP)."""
    end = time.monotonic() + timeout
    want = lan.mac(node)
    while time.monotonic() < end:
        if lan.neighbour(VIP) == want:
            return
        time.sleep(0.02)
    raise AssertionError(f"client neighbour for {VIP} is {lan.neighbour(VIP)}, want {want} "
                         f"({node})")
