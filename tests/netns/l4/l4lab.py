"""Helpers of the L4 netns tests: a director process in the topology's director namespace,
driven with `halb ipvsadm` over its control socket.

`Director(net, dataplane, tmp)` runs `halb ipvsadm --start-director --dataplane <dp>` inside
the director's namespace (a unix socket in `tmp`; with `factory=None` exactly as a user would,
else through make_director, the same director ticking every 0.5 s), `ipvsadm(...)` runs `halb ipvsadm` against
it, and `close()` stops it with SIGTERM (the data plane removes what it created) and, if that
fails, kills it and deletes the halb nft tables itself.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable

from halb.testing.l4net import L4Net
from halb.testing.netns import stop_group

HERE = pathlib.Path(__file__).resolve().parent
HALB = [sys.executable, "-m", "halb"]


def make_director(dataplane: str = "userspace") -> object:
    """--director-factory: a Director with the named data plane."""
    from halb.l4.director import Director

    if dataplane == "nftables":
        from halb.l4.dataplane.nftables import NftablesDataPlane

        return Director(NftablesDataPlane(), interval=0.5)
    from halb.l4.dataplane.userspace import UserspaceDataPlane

    return Director(UserspaceDataPlane(), interval=0.5)


def nft(ns: str, text: str) -> subprocess.CompletedProcess[str]:
    """`nft -f -` with `text` inside namespace `ns`."""
    return subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text,
                          capture_output=True, text=True, timeout=30)


class Director:
    def __init__(self, net: L4Net, dataplane: str, tmp: pathlib.Path,
                 factory: str | None = "l4lab:make_director") -> None:
        self.net = net
        self.dataplane = dataplane
        self.socket = str(tmp / "ipvsadm.sock")
        self.log = tmp / "director.log"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(HERE), os.environ.get("PYTHONPATH", "")]))
        self._logf = open(self.log, "w")  # noqa: SIM115 (closed in close())
        argv = [*HALB, "ipvsadm", "--start-director", "--dataplane", dataplane,
                "--socket", self.socket]
        if factory:  # the same director with a 0.5 s tick, for shorter tests
            argv += ["--director-factory", factory]
        self.proc = net.popen(net.director_ns, argv, stderr=self._logf, stdout=self._logf,
                              env=env)
        end = time.monotonic() + 20
        while "listening" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the director did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def ipvsadm(self, *args: str, check: bool = True, stdin: str | None = None
                ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, HALB_IPVSADM_SOCKET=self.socket)
        out = subprocess.run([*HALB, "ipvsadm", *args], capture_output=True, text=True,
                             timeout=30, env=env, input=stdin)
        if check and out.returncode != 0:
            raise AssertionError(f"ipvsadm {' '.join(args)} -> {out.returncode}: {out.stderr}")
        return out

    def nft_tables(self) -> str:
        return self.net.director(["nft", "list", "tables"]).stdout

    def close(self) -> None:
        if self.proc.poll() is None:
            stop_group(self.proc)
        if "halb" in self.nft_tables():  # a director that died leaves its tables: not ours
            for family in ("ip", "netdev"):
                self.net.director(["nft", "delete", "table", family, "halb"])
        self._logf.close()


# -- what the tests read ---------------------------------------------------------------------------


def wait_for(what: Callable[[], object], timeout: float = 10.0, step: float = 0.1) -> object:
    """Poll until `what()` is truthy (returned) or fail after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"still false after {timeout}s: {what}")
        time.sleep(step)


def dests(listing: str) -> dict[str, list[str]]:
    """The real server rows of an `ipvsadm -L -n` listing: {"addr:port": [columns...]}."""
    rows = {}
    for line in listing.splitlines():
        if line.startswith("  -> ") and not line.startswith("  -> RemoteAddress"):
            cols = line.split()
            rows[cols[1]] = cols[2:]
    return rows


def services(listing: str) -> dict[str, list[str]]:
    """The service rows of a listing: {"TCP 198.18.0.100:80": [columns...]}."""
    rows = {}
    for line in listing.splitlines():
        if line[:4] in ("TCP ", "UDP ") and not line.startswith("Prot"):
            cols = line.split()
            rows[f"{cols[0]} {cols[1]}"] = cols[2:]
    return rows


def expected_sequence(scheduler: str, weights: list[int], n: int,
                      flags: tuple[str, ...] = ()) -> list[str]:
    """The first `n` picks of halb's own IPVS scheduler (l4/service.py, the user-space data
    plane's) for real servers rs1, rs2... added in that order with `weights`: the oracle the
    kernel data plane's exact schedulers must reproduce."""
    import random

    from halb.balancing.base import PickContext
    from halb.l4.model import Command, DestSpec, Forward, Op, Proto, ServiceKey, ServiceSpec
    from halb.l4.nft_plan import clone
    from halb.l4.service import ServiceTable

    table = ServiceTable()
    key = ServiceKey(Proto.TCP, "198.18.0.100", 80)
    table.apply(Command(Op.ADD_SERVICE, ServiceSpec(key, scheduler, sched_flags=flags)), 0)
    names = {}
    for i, w in enumerate(weights, 1):
        addr = f"198.18.1.{10 + i}"
        names[addr] = f"rs{i}"
        table.apply(Command(Op.ADD_DEST, ServiceSpec(key), DestSpec(addr, 80, Forward.MASQ, w)),
                    0)
    balancer, _ = clone(table.services[key].balancer)
    ctx = PickContext(now=0, rng=random.Random(0), daddr=bytes([198, 18, 0, 100]))
    picks = [balancer.pick(ctx) for _ in range(n)]
    return [names[p.host] if p is not None else "none" for p in picks]
