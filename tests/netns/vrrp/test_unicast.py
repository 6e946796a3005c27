"""unicast_src_ip / unicast_peer: halb and keepalived 2.2.7 in both roles, each sending its
adverts to the other's address only (keepalived in unicast mode joins no multicast group, so a
halb that multicast would not be heard, and keepalived's unicast adverts reach halb only on its
unicast path). v3 at 0.25 s: election, SIGKILL of the master, preemption on its return,
graceful stop; v2 with PASS at 1 s: election, graceful stop (priority 0 by unicast), return.
"""

from __future__ import annotations

import time

import pytest
from vrrp_lab import STARTING, TIMINGS, Cluster, instance_conf, mdi, skew

from halb.testing.netns import Lan

PAIRS = [("halb", "keepalived"), ("keepalived", "halb")]
ADDRS = {"n1": "198.18.0.1", "n2": "198.18.0.2"}


def unicast(node: str) -> str:
    peer = ADDRS["n2" if node == "n1" else "n1"]
    return (f"    unicast_src_ip {ADDRS[node]}\n    unicast_peer {{\n        {peer}\n    }}")


@pytest.mark.root
@pytest.mark.peer
@pytest.mark.parametrize(("version", "adv"), [(3, 0.25), (2, 1)], ids=["v3", "v2-pass"])
@pytest.mark.parametrize("pair", PAIRS, ids=["halb+keepalived", "keepalived+halb"])
def test_unicast_interop(cluster: Cluster, lan: Lan, pair: tuple[str, str], version: int,
                         adv: float) -> None:
    first, second = pair
    label = f"unicast v{version}/{adv}s {first}(150)+{second}(100)"

    def conf(node: str, state: str, prio: int) -> str:
        return instance_conf(version=version, state=state, priority=prio, advert_int=adv,
                             extra=unicast(node))

    cluster.sample()
    cluster.start("n1", first, conf("n1", "MASTER", 150))
    cluster.start("n2", second, conf("n2", "BACKUP", 100))
    cluster.wait_holder("n1", timeout=mdi(version, 150, adv) + STARTING)  # + the daemons starting
    cluster.hold_steady("n1", 2 * adv + 0.2)  # the backup hears the unicast adverts
    if first == "halb":
        data = cluster.dump("n1", "data")
        assert f"   Unicast Peer(s):\n     {ADDRS['n2']}\n" in data, data

    if version == 3:
        t = cluster.crash("n1")
        bound = mdi(version, 100, adv) + 1.0
        took = cluster.wait_holder("n2", timeout=bound + 2, since=t)
        TIMINGS.append((f"{label}: SIGKILL of the master -> VIP on backup", took, bound))
        assert took <= bound
        lan.revive("n1")
        cluster.start("n1", first, conf("n1", "MASTER", 150))
        cluster.wait_holder("n1", timeout=mdi(version, 150, adv) + STARTING)  # + the daemon starting
        cluster.hold_steady("n1", 2 * adv)

    t = cluster.stop("n1", wait=False)
    bound = skew(version, 100, adv) + 0.6
    took = cluster.wait_holder("n2", timeout=bound + 2, since=t)
    cluster.reap()
    TIMINGS.append((f"{label}: SIGTERM of the master -> VIP on backup", took, bound))
    assert took <= bound

    started = time.monotonic()
    cluster.start("n1", first, conf("n1", "MASTER", 150))
    cluster.wait_holder("n1", timeout=mdi(version, 150, adv) + STARTING, since=started)  # + start-up
    cluster.close()
    assert cluster.longest_overlap() <= adv + 0.1
