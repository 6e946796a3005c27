"""SIGHUP reload of a running halb pair (v3, advert_int 0.2), the holders of VI_1's VIP sampled
every 50 ms throughout:

  add     both nodes reload with a new instance VI_2: it starts and elects (n1), while VI_1 -
          unchanged - keeps its state: the MASTER never stops holding its VIP, no "(VI_1)
          Entering ..." line and no VI_1 notify after the reload, on either node;
  bad     n1 reloads a file with an unterminated quote: the reason is logged with file:line,
          the running configuration goes on (both VIPs stay, no state change), the process
          lives;
  remove  n1 reloads without VI_2: VI_2 is stopped as on SIGTERM (priority 0, VIP removed, the
          generic notify told FAULT as keepalived does for a deleted instance), n2 takes VI_2's
          VIP after Skew_Time; VI_1 still untouched.
"""

from __future__ import annotations

import pathlib
import time

import pytest
from vrrp_lab import TIMINGS, Cluster, Recorder, mdi, skew

from halb.testing.netns import Lan

ADV = 0.2
VIP1, VIP2 = "198.18.0.100", "198.18.0.110"


def conf(rec: Recorder, priority: int, state: str, vi2: bool, broken: bool = False) -> str:
    def instance(name: str, vrid: int, vip: str) -> str:
        return f"""vrrp_instance {name} {{
    state {state}
    interface eth0
    virtual_router_id {vrid}
    priority {priority}
    advert_int {ADV}
    virtual_ipaddress {{
        {vip}
    }}
    notify "{rec.script} generic"
}}
"""
    text = "global_defs {\n    router_id reload_test\n    vrrp_version 3\n}\n"
    text += instance("VI_1", 51, VIP1)
    if vi2:
        text += instance("VI_2", 52, VIP2)
    if broken:
        text += 'vrrp_script chk {\n    script "/bin/true\n}\n'
    return text


def vi1_runs(rec: Recorder) -> list[list[str]]:
    return [r for r in rec.lines() if r[2] == "VI_1"]


@pytest.mark.root
def test_reload_keeps_state_rejects_bad_config_and_removes(
        cluster: Cluster, lan: Lan, tmp_path: pathlib.Path) -> None:
    recs = {n: Recorder(tmp_path, f"rec-{n}.sh") for n in ("n1", "n2")}
    setup = {"n1": (150, "MASTER"), "n2": (100, "BACKUP")}
    cluster.sample()
    # n1 first: with advert_int 0.2, n2 alone would become MASTER after 0.7 s, sooner than a
    # loaded machine may take to start n1 (a start-up race, not what this test is about)
    cluster.start("n1", "halb", conf(recs["n1"], *setup["n1"], vi2=False))
    cluster.wait_holder("n1", timeout=mdi(3, 150, ADV) + 5)
    cluster.start("n2", "halb", conf(recs["n2"], *setup["n2"], vi2=False))
    recs["n1"].wait(2, 2)
    recs["n2"].wait(1, 8)  # its first run: after the daemon started
    before = {n: vi1_runs(recs[n]) for n in ("n1", "n2")}
    assert [r[3] for r in before["n1"]] == ["BACKUP", "MASTER"]
    assert [r[3] for r in before["n2"]] == ["BACKUP"]

    # -- add VI_2 -------------------------------------------------------------------------------
    t_reload = time.monotonic()
    offsets = {n: len(cluster.log(n)) for n in ("n1", "n2")}
    for node, (prio, state) in setup.items():
        cluster.reload(node, conf(recs[node], prio, state, vi2=True))
    for node in ("n1", "n2"):
        cluster.wait_log(node, "Reloading", 5, offsets[node])
    end = time.monotonic() + mdi(3, 150, ADV) + 3
    while lan.holders(VIP2) != ["n1"]:
        assert time.monotonic() < end, f"VI_2 not elected: {lan.holders(VIP2)}\n" + \
            cluster.log("n1")[-2000:]
        time.sleep(0.02)
    time.sleep(3 * ADV)  # a few more adverts after the reload
    after = cluster.samples_since(t_reload)
    assert after and all(h == ("n1",) for _, h in after), "VI_1's VIP moved during the reload"
    for node in ("n1", "n2"):
        tail = cluster.log(node)[offsets[node]:]
        assert "(VI_1) Entering" not in tail, tail
        assert vi1_runs(recs[node]) == before[node]
    assert [r[3] for r in recs["n1"].lines() if r[2] == "VI_2"] == ["BACKUP", "MASTER"]

    # -- a bad file: the running configuration goes on ----------------------------------------
    offset = len(cluster.log("n1"))
    t_bad = time.monotonic()
    bad = conf(recs["n1"], 150, "MASTER", vi2=True, broken=True)
    cluster.reload("n1", bad)
    line = bad.splitlines().index('    script "/bin/true') + 1
    where = f"({cluster.conf_paths['n1']}: Line {line}) unterminated quoted string"
    found = cluster.wait_log("n1", "Reload failed", 5, offset)
    assert where in cluster.log("n1")[found:], cluster.log("n1")[found:]
    time.sleep(4 * ADV)
    assert cluster.procs["n1"].poll() is None
    assert lan.holders(VIP1) == ["n1"] and lan.holders(VIP2) == ["n1"]
    assert "Entering" not in cluster.log("n1")[offset:]
    assert all(h == ("n1",) for _, h in cluster.samples_since(t_bad))

    # -- VI_2 removed: stopped as on SIGTERM, the backup takes its VIP ------------------------
    offset = len(cluster.log("n1"))
    t = time.monotonic()
    cluster.reload("n1", conf(recs["n1"], 150, "MASTER", vi2=False))
    bound = skew(3, 100, ADV) + 1.0
    end = t + bound + 2
    while lan.holders(VIP2) != ["n2"]:
        assert time.monotonic() < end, f"VI_2's VIP: {lan.holders(VIP2)}"
        time.sleep(0.01)
    took = time.monotonic() - t
    TIMINGS.append(("v3/0.2s halb+halb: VI_2 removed by reload -> its VIP on the backup", took,
                    bound))
    assert took <= bound
    runs = recs["n1"].wait(5, 3)
    assert runs[-1] == ["generic", "INSTANCE", "VI_2", "FAULT", "150"]  # keepalived's word
    assert "(VI_1) Entering" not in cluster.log("n1")[offset:]
    assert lan.holders(VIP1) == ["n1"]
    assert all(h == ("n1",) for _, h in cluster.samples_since(t_reload))
    for node in ("n1", "n2"):
        assert vi1_runs(recs[node]) == before[node]
