"""notify scripts and track_interface, with keepalived 2.2.7 as the oracle.

halb (n1, VRID 61) and keepalived (n2, VRID 62) run the same configuration side by side on one
LAN, each the only router of its VRID, each tracking a link of its own (trk0, a veth whose peer
the test takes down and up again). Every notify_* script and the generic `notify` is one
recording script (vrrp_lab.Recorder), so the test reads which scripts ran, with which argv, in
which order, through the life cycle: start (BACKUP) -> MASTER -> trk0 loses carrier (FAULT, the
VIP goes) -> carrier back (BACKUP -> MASTER, the VIP back) -> SIGTERM (STOP). halb's record
must be keepalived's record, and both must be the expected one. The notify_master line holds
quotes, `$HOME` and `;`: the words arrive as written, which they would not through a shell.
"""

from __future__ import annotations

import pathlib
import time

import pytest
from vrrp_lab import STARTING, Cluster, Recorder, mdi

from halb.testing.netns import Lan

ADV = 0.2
VIPS = {"n1": "198.18.0.101", "n2": "198.18.0.102"}
VRIDS = {"n1": 61, "n2": 62}


def conf(rec: Recorder, vrid: int, vip: str) -> str:
    s = rec.script
    return f"""global_defs {{
    router_id notify_test
    vrrp_version 3
}}
vrrp_instance VI_N {{
    state BACKUP
    interface eth0
    virtual_router_id {vrid}
    priority 150
    advert_int {ADV}
    virtual_ipaddress {{
        {vip}
    }}
    track_interface {{
        trk0
    }}
    notify_master "{s} master 'two words' $HOME;true"
    notify_backup "{s} backup"
    notify_fault "{s} fault"
    notify_stop "{s} stop"
    notify "{s} generic"
}}
"""


def transitions(lines: list[list[str]]) -> list[tuple[str, frozenset[tuple[str, ...]]]]:
    """Group the recorded runs by state change: (state, the argv set of that change); a
    change starts both scripts at once, so their order within the change is free."""
    out: list[tuple[str, set[tuple[str, ...]]]] = []
    for argv in lines:
        state = argv[3] if argv[0] == "generic" else argv[0].upper()
        if not out or out[-1][0] != state or tuple(argv) in out[-1][1]:
            out.append((state, set()))
        out[-1][1].add(tuple(argv))
    return [(state, frozenset(runs)) for state, runs in out]


def expected(states: list[str]) -> list[tuple[str, frozenset[tuple[str, ...]]]]:
    specific = {"MASTER": ("master", "two words", "$HOME;true"), "BACKUP": ("backup",),
                "FAULT": ("fault",), "STOP": ("stop",)}
    return [(st, frozenset({specific[st], ("generic", "INSTANCE", "VI_N", st, "150")}))
            for st in states]


@pytest.mark.root
@pytest.mark.peer
def test_notify_and_track_interface_like_keepalived(
        lan: Lan, tmp_path: pathlib.Path, keepalived_binary: str) -> None:
    cluster = Cluster(lan, tmp_path)
    cluster.keepalived = keepalived_binary
    recs = {n: Recorder(tmp_path, f"rec-{n}.sh") for n in ("n1", "n2")}
    peers = {n: lan.add_link(n, "trk0") for n in ("n1", "n2")}
    try:
        for node, impl in (("n1", "halb"), ("n2", "keepalived")):
            cluster.start(node, impl, conf(recs[node], VRIDS[node], VIPS[node]))
        bound = mdi(3, 150, ADV) + 3
        for node in ("n1", "n2"):
            recs[node].wait(4, bound + STARTING)  # BACKUP, then MASTER (+ the daemons starting)
            _wait_vip(lan, node, True, 2)

        for node in ("n1", "n2"):  # carrier lost: FAULT, the VIP removed
            lan.set_link(node, peers[node], False)
        for node in ("n1", "n2"):
            recs[node].wait(6, 3)
            _wait_vip(lan, node, False, 2)

        for node in ("n1", "n2"):  # carrier back: BACKUP, then MASTER again
            lan.set_link(node, peers[node], True)
        for node in ("n1", "n2"):
            recs[node].wait(10, bound)
            _wait_vip(lan, node, True, 2)

        for node in ("n1", "n2"):
            cluster.stop(node, wait=False)
        cluster.reap()
        records = {n: recs[n].wait(12, 3) for n in ("n1", "n2")}
        time.sleep(0.3)  # nothing more comes
        records = {n: recs[n].lines() for n in ("n1", "n2")}
    finally:
        cluster.close()

    want = expected(["BACKUP", "MASTER", "FAULT", "BACKUP", "MASTER", "STOP"])
    assert transitions(records["n2"]) == want, f"keepalived itself: {records['n2']}"
    assert transitions(records["n1"]) == want, (
        f"halb: {records['n1']}\nkeepalived: {records['n2']}\n{cluster.log('n1')[-3000:]}")
    assert "(VI_N) Entering FAULT STATE" in cluster.log("n1")


def _wait_vip(lan: Lan, node: str, held: bool, timeout: float) -> None:
    end = time.monotonic() + timeout
    while (node in lan.holders(VIPS[node])) != held:
        if time.monotonic() > end:
            raise AssertionError(f"{node} {'does not hold' if held else 'still holds'} "
                                 f"{VIPS[node]}")
        time.sleep(0.02)
