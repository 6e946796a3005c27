"""`halb lab` smoke test (root): up, one failover of the directors' VIP under load, down, and
nothing left behind — no namespace, process, nft table (they live in the namespaces) or state.

The whole scenario set runs as `make lab`; this is the part `make test` runs.
"""

from __future__ import annotations

import io
import os
import pathlib

import pytest

from halb.lab import plan, runner, scenarios, topology
from halb.lab.cluster import Cluster

pytestmark = pytest.mark.root


def test_up_failover_down(root: None, nft_binary: str, tmp_path: pathlib.Path) -> None:
    state_dir = tmp_path / "state"
    prefix = f"hls{os.getpid() % 10000}-"
    cluster = Cluster(str(state_dir), prefix=prefix)
    pids: list[int] = []
    try:
        cluster.up("halb")
        pids = [p.pid for p in cluster.state.procs.values()]
        assert len(pids) == 9 and all(p.alive() for p in cluster.state.procs.values())
        assert sorted(topology.lab_namespaces(prefix)) == sorted(
            [f"{prefix}br", *(f"{prefix}{h.name}" for h in plan.HOSTS)])
        assert cluster.holders(plan.VIP) == ["dir1"]
        out = io.StringIO()
        result = runner.run(cluster, scenarios.smoke(), tmp_path / "results", out=out,
                            restore_after=False)
        failed = [c for c in result["checks"] if not c["passed"]]
        assert not failed, (failed, out.getvalue())
        fig = result["figures"]
        assert fig["ok"] > 0 and fig["holders"].get("dir2", 0) > 0  # dir2 served a while
        assert (tmp_path / "results" / "halb" / "master_stop.json").exists()
    finally:
        removed = cluster.down()
    assert any(r.startswith("namespace ") for r in removed)
    assert topology.lab_namespaces(prefix) == []
    assert not state_dir.exists()
    for pid in pids:
        assert topology.proc_start(pid) is None, f"process {pid} survived down"


def test_down_after_a_crashed_controller(root: None, tmp_path: pathlib.Path) -> None:
    """The state file is enough: a new controller (the old one died after `up` built the
    namespaces and started a process) removes it all."""
    state_dir = tmp_path / "state"
    prefix = f"hlc{os.getpid() % 10000}-"
    first = Cluster(str(state_dir), prefix=prefix)
    try:
        topology.build(first.state)
        first.write_configs()
        first.start("web1.backend")
        pid = first.state.procs["web1.backend"].pid
        del first  # the controller is gone; only the state file remains
        again = Cluster(str(state_dir))
        assert again.state.prefix == prefix and again.alive("web1.backend")
        again.down()
        assert topology.lab_namespaces(prefix) == []
        assert topology.proc_start(pid) is None
    finally:
        Cluster(str(state_dir), prefix=prefix).down()
