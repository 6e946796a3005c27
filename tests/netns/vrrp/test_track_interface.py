"""track_interface in a pair: halb (n1, priority 150) tracks trk0, a second link of its own
(a veth whose peer the test takes down, so trk0 loses carrier as with a pulled cable);
keepalived 2.2.7 is the backup (n2, 100). v3 at 0.2 s, the VIP's holders sampled every 50 ms.

  weight 0 (FAULT): carrier lost -> n1 enters FAULT, sends priority 0 and removes the VIP; n2
                    holds it within Skew_Time + slack. Carrier back -> n1 BACKUP, then it
                    preempts within its Master_Down_Interval + slack.
  weight -60:       carrier lost -> n1's priority drops to 90 and it keeps advertising; n2
                    (100) preempts within its Master_Down_Interval + slack. Carrier back ->
                    150 again, n1 preempts back.
"""

from __future__ import annotations

import time

import pytest
from vrrp_lab import STARTING, TIMINGS, Cluster, instance_conf, mdi, skew

from halb.testing.netns import Lan

ADV = 0.2


@pytest.mark.root
@pytest.mark.peer
@pytest.mark.parametrize("weight", [0, -60], ids=["weight0-fault", "weight-60"])
def test_track_interface_moves_the_vip(cluster: Cluster, lan: Lan, keepalived_binary: str,
                                       weight: int) -> None:
    cluster.keepalived = keepalived_binary
    peer = lan.add_link("n1", "trk0")
    track = "    track_interface {\n        trk0" + (f" weight {weight}" if weight else "") + \
        "\n    }"
    cluster.sample()
    cluster.start("n1", "halb", instance_conf(version=3, state="MASTER", priority=150,
                                              advert_int=ADV, extra=track))
    cluster.start("n2", "keepalived", instance_conf(version=3, priority=100, advert_int=ADV))
    # the first election: not a measured failover, so room for two daemons starting under load
    cluster.wait_holder("n1", timeout=mdi(3, 150, ADV) + STARTING)
    cluster.hold_steady("n1", 3 * ADV)

    offset = len(cluster.log("n1"))
    t = time.monotonic()
    lan.set_link("n1", peer, False)
    if weight == 0:
        bound = skew(3, 100, ADV) + 0.6
        said = "(VI_1) Entering FAULT STATE"
    else:
        bound = mdi(3, 100, ADV) + 0.6
        said = "(VI_1) Changing effective priority from 150 to 90"
    took = cluster.wait_holder("n2", timeout=bound + 2, since=t)
    TIMINGS.append((f"v3/0.2s halb+keepalived: track_interface down (weight {weight}) -> VIP "
                    f"moves", took, bound))
    assert took <= bound
    cluster.wait_log("n1", said, 1, offset)
    cluster.hold_steady("n2", 3 * ADV)

    t = time.monotonic()
    lan.set_link("n1", peer, True)
    bound = mdi(3, 150, ADV) + 0.6
    took = cluster.wait_holder("n1", timeout=bound + 2, since=t)
    TIMINGS.append((f"v3/0.2s halb+keepalived: track_interface up (weight {weight}) -> back",
                    took, bound))
    assert took <= bound
    cluster.close()
    assert cluster.longest_overlap() <= ADV + 0.1
