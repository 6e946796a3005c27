"""Helpers of the keepalived LVS netns tests: `halb keepalived -C` as the director of an
L4Net topology (halb.testing.l4net: client, director, real servers on 198.18.0.0/15).

`Keepalived(net, conf_text, tmp, dataplane, halves)` writes the configuration, runs
`halb keepalived -n -l -C --dataplane <dp> --ipvsadm-socket <tmp>/ipvsadm.sock` inside the
director's namespace (`halves=()`: VRRP and the checkers, as keepalived without -P / -C)
and waits for its control socket; `listing()` is `halb ipvsadm -L -n`
against it, `dests()` its real server rows; `stop()` sends SIGTERM and returns the exit code;
`close()` (also after a failure) kills what is left and deletes any halb nft table.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from halb.testing.l4net import L4Net
from halb.testing.netns import stop_group

HALB = [sys.executable, "-m", "halb"]


def wait_for(what: Callable[[], object], timeout: float = 10.0, step: float = 0.05,
             why: Callable[[], str] | None = None) -> object:
    """Poll until `what()` is truthy (returned) or fail after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"still false after {timeout}s: {what}"
                                 + (f"\n{why()}" if why else ""))
        time.sleep(step)


def dest_rows(listing: str) -> dict[str, list[str]]:
    """The real server rows of `ipvsadm -L -n`: {"198.18.1.11:80": [Forward, Weight, ...]}."""
    rows = {}
    for line in listing.splitlines():
        if line.startswith("  -> ") and not line.startswith("  -> RemoteAddress"):
            cols = line.split()
            rows[cols[1]] = cols[2:]
    return rows


class Recorder:
    """A script that appends its arguments as one line to `path` (quorum_up / quorum_down)."""

    def __init__(self, tmp: pathlib.Path, name: str = "record.sh") -> None:
        self.path = tmp / f"{name}.out"
        self.script = tmp / name
        self.script.write_text(f"#!/bin/sh\necho \"$*\" >> {self.path}\n")
        self.script.chmod(0o755)

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []


class Keepalived:
    def __init__(self, net: L4Net, conf: str, tmp: pathlib.Path,
                 dataplane: str = "userspace", halves: tuple[str, ...] = ("-C",)) -> None:
        self.net = net
        self.tmp = tmp
        self.conf = tmp / "keepalived.conf"
        self.conf.write_text(conf)
        self.socket = str(tmp / "ipvsadm.sock")
        self.log = tmp / "keepalived.log"
        self._logf = open(self.log, "w")  # noqa: SIM115 (closed in close())
        argv = [*HALB, "keepalived", "-n", "-l", *halves, "--dataplane", dataplane,
                "--ipvsadm-socket", self.socket, "-f", str(self.conf),
                "-p", str(tmp / "keepalived.pid"), "-c", str(tmp / "checkers.pid"),
                "-r", str(tmp / "vrrp.pid")]
        self.proc = net.popen(net.director_ns, argv, stdout=self._logf, stderr=self._logf)
        wait_for(lambda: "Initializing ipvs" in self.log.read_text()
                 or self.proc.poll() is not None, 20)
        if self.proc.poll() is not None:
            raise RuntimeError(f"halb keepalived did not start: {self.log.read_text()}")

    def ipvsadm(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, HALB_IPVSADM_SOCKET=self.socket)
        return subprocess.run([*HALB, "ipvsadm", *args], capture_output=True, text=True,
                              timeout=30, env=env)

    def listing(self) -> str:
        out = self.ipvsadm("-L", "-n")
        if out.returncode != 0:
            raise AssertionError(f"ipvsadm -L -n: {out.stderr}\n{self.log.read_text()}")
        return out.stdout

    def dests(self) -> dict[str, list[str]]:
        return dest_rows(self.listing())

    def why(self) -> str:
        return f"listing:\n{self.ipvsadm('-L', '-n').stdout}\nlog:\n{self.log.read_text()}"

    def checked(self, server: str, timeout: float = 10.0) -> None:
        """Wait until the first TCP_CHECK of `server` ("198.18.1.11:80") has passed: from then
        on a failure goes through retry / delay_before_retry."""
        addr, port = server.rsplit(":", 1)
        line = f"TCP connection to [{addr}]:tcp:{port} success."
        wait_for(lambda: line in self.log.read_text(), timeout, why=self.why)

    def stop(self, timeout: float = 15.0) -> int:
        os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout)

    def nft_tables(self) -> str:
        return self.net.director(["nft", "list", "tables"]).stdout

    def close(self) -> None:
        if self.proc.poll() is None:
            stop_group(self.proc)
        with contextlib.suppress(Exception):
            if "halb" in self.nft_tables():  # a daemon that died leaves its tables
                for family in ("ip", "netdev"):
                    self.net.director(["nft", "delete", "table", family, "halb"])
        self._logf.close()
