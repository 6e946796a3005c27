"""Helpers of the keepalived LVS netns tests: `halb keepalived -C` as the director of an
L4Net topology (halb.testing.l4net: client, director, real servers on 198.18.0.0/15).

`Keepalived(net, conf_text, tmp, dataplane, halves)` writes the configuration, runs
`halb keepalived -n -l -C --dataplane <dp> --ipvsadm-socket <tmp>/ipvsadm.sock` inside the
director's namespace (`halves=()`: VRRP and the checkers, as keepalived without -P / -C; `ns`:
another director's namespace) and waits for its control socket; `listing()` is
`halb ipvsadm -L -n` against it, `dests()` its real server rows; `reload(text)` rewrites the
file (when given), sends SIGHUP to the daemon's parent and waits until the checker has
reloaded (or refused the file); `stop()` sends SIGTERM and returns the exit code; `close()`
(also after a failure) kills what is left and deletes any halb nft table.

`TwoDirectors`: L4Net with a second director `<p>d2` (198.18.0.2) on the front LAN, without
the VIP (VRRP brings it to whichever director is MASTER).
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

from halb.testing.l4net import L4Net, sysctl
from halb.testing.netns import ip, stop_group

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


class TwoDirectors(L4Net):
    DIRECTOR2 = "198.18.0.2"

    def build(self) -> None:
        super().build()
        self.director2_ns = f"{self.prefix}d2"
        self._ns(self.director2_ns)
        self._plug(self.front_ns, self.director2_ns, "eth0", [f"{self.DIRECTOR2}/24"])
        sysctl(self.director2_ns, "net.ipv4.ip_forward", "1")
        end = time.monotonic() + 5
        while "LOWER_UP" not in ip("-n", self.director2_ns, "link", "show", "eth0").stdout:
            if time.monotonic() > end:
                raise RuntimeError("the second director's link did not come up")
            time.sleep(0.02)


class Keepalived:
    def __init__(self, net: L4Net, conf: str, tmp: pathlib.Path,
                 dataplane: str = "userspace", halves: tuple[str, ...] = ("-C",),
                 ns: str | None = None, ready: str = "Initializing ipvs") -> None:
        self.net = net
        self.ns = ns or net.director_ns
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
        self.proc = net.popen(self.ns, argv, stdout=self._logf, stderr=self._logf)
        wait_for(lambda: ready in self.log.read_text() or self.proc.poll() is not None, 20)
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

    def reload(self, text: str | None = None, timeout: float = 15.0) -> str:
        """SIGHUP (the new file first, when given); the log lines the reload wrote, once the
        checker reloaded or refused the file."""
        if text is not None:
            self.conf.write_text(text)
        before = self.log.read_text()

        def done() -> bool:
            new = self.log.read_text()[len(before):]
            return "Reloaded: " in new or "Reload failed" in new

        os.kill(self.proc.pid, signal.SIGHUP)  # the parent, which forwards it
        wait_for(done, timeout, why=self.why)
        return self.log.read_text()[len(before):]

    def stop(self, timeout: float = 15.0) -> int:
        os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout)

    def nft_tables(self) -> str:
        return self.net.run(self.ns, ["nft", "list", "tables"]).stdout

    def close(self) -> None:
        if self.proc.poll() is None:
            stop_group(self.proc)
        with contextlib.suppress(Exception):
            if "halb" in self.nft_tables():  # a daemon that died leaves its tables
                for family in ("ip", "netdev"):
                    self.net.run(self.ns, ["nft", "delete", "table", family, "halb"])
        self._logf.close()
