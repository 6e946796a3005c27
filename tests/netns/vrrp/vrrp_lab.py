"""Helpers of the VRRP netns tests: keepalived.conf text, the timer formulas, and `Cluster`,
which starts halb or keepalived on the nodes of a halb.testing.netns.Lan, samples every 50 ms
which online nodes hold the VIP, and measures takeovers (kept in TIMINGS for the summary).
`Cluster` also reloads a node (SIGHUP with a new file), reads halb's keepalived.stats /
keepalived.data dumps (each node has its own TMPDIR) and waits for log lines; `Recorder` is a
notify script that writes down every argv it is started with.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

from halb.testing.netns import Lan

HALB = [sys.executable, "-m", "halb"]
TIMINGS: list[tuple[str, float, float]] = []  # (what, measured, bound)
# a daemon's start on a loaded machine (CI: 5 s for a Python one): a liveness bound, never timed;
# timed protocol steps count from Cluster.wait_ready
STARTING = 30.0


def skew(version: int, priority: int, advert_int: float) -> float:
    if version == 2:
        return (256 - priority) / 256
    return (256 - priority) * advert_int / 256


def mdi(version: int, priority: int, advert_int: float) -> float:
    return 3 * advert_int + skew(version, priority, advert_int)


def instance_conf(*, version: int = 2, state: str = "BACKUP", priority: int = 100,
                  vrid: int = 51, advert_int: float = 1, vip: str = "198.18.0.100",
                  ifname: str = "eth0", extra: str = "", auth: bool = True,
                  scripts: str = "") -> str:
    auth_block = ("    authentication {\n        auth_type PASS\n        auth_pass 1111\n    }\n"
                  if auth and version == 2 else "")
    return f"""global_defs {{
    router_id halb_test
    vrrp_version {version}
    vrrp_garp_master_delay 1
}}
{scripts}
vrrp_instance VI_1 {{
    state {state}
    interface {ifname}
    virtual_router_id {vrid}
    priority {priority}
    advert_int {advert_int}
{auth_block}    virtual_ipaddress {{
        {vip}
    }}
{extra}
}}
"""


class Recorder:
    """A notify script (sh) that appends one line per start to `path`: its arguments, each in
    brackets, so word boundaries show ("[master][two words][$HOME;x]")."""

    def __init__(self, tmp: pathlib.Path, name: str = "record.sh") -> None:
        self.path = tmp / f"{name}.out"
        self.script = tmp / name
        self.script.write_text(f"#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done "
                               f">> {self.path}.$$\necho >> {self.path}.$$\n"
                               f"cat {self.path}.$$ >> {self.path}\nrm -f {self.path}.$$\n")
        self.script.chmod(0o755)

    def lines(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        return [line[1:-1].split("][") for line in self.path.read_text().splitlines()
                if line.startswith("[")]

    def wait(self, count: int, timeout: float) -> list[list[str]]:
        end = time.monotonic() + timeout
        while len(self.lines()) < count:
            if time.monotonic() > end:
                raise AssertionError(f"{self.path}: {len(self.lines())} of {count} notify "
                                     f"runs in {timeout:.1f}s: {self.lines()}")
            time.sleep(0.02)
        return self.lines()


class Cluster:
    """Daemons on the nodes of a Lan, with a VIP sampler."""

    def __init__(self, lan: Lan, tmp: pathlib.Path, vip: str = "198.18.0.100") -> None:
        self.lan = lan
        self.tmp = tmp
        self.vip = vip
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.keepalived: str | None = None  # the binary, set by tests that run it
        self.conf_paths: dict[str, pathlib.Path] = {}
        self.impls: dict[str, str] = {}

    def start(self, node: str, impl: str, conf: str) -> subprocess.Popen[bytes]:
        path = self.tmp / f"{node}-{len(self.conf_paths)}.conf"
        path.write_text(conf)
        self.conf_paths[node] = path
        self.impls[node] = impl
        pids = [str(self.tmp / f"{node}.{k}.pid") for k in ("main", "vrrp", "check")]
        if impl == "halb":
            argv = [*HALB, "keepalived", "-n", "-l", "-D", "-P", "-f", str(path), "-p", pids[0],
                    "-r", pids[1]]
        else:
            assert self.keepalived is not None, "request the keepalived_binary fixture"
            argv = [self.keepalived, "-n", "-l", "-D", "-P", "-f", str(path), "-p", pids[0],
                    "-r", pids[1], "-c", pids[2]]
        log = open(self.tmp / f"{node}.log", "ab")  # noqa: SIM115 - kept for the process
        log.write(f"--- {impl}: {' '.join(argv)}\n".encode())
        log.flush()
        env = {**os.environ, "TMPDIR": str(self.tmpdir(node))}
        proc = self.lan.popen(node, argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.procs[node] = proc
        return proc

    def tmpdir(self, node: str) -> pathlib.Path:
        path = self.tmp / f"{node}.tmp"
        path.mkdir(exist_ok=True)
        return path

    def vrrp_pid(self, node: str) -> int:
        return int((self.tmp / f"{node}.vrrp.pid").read_text().split()[0])

    def reload(self, node: str, conf: str) -> None:
        """Write `conf` over the node's file and SIGHUP its main process."""
        self.conf_paths[node].write_text(conf)
        self.procs[node].send_signal(signal.SIGHUP)

    def dump(self, node: str, what: str = "stats", timeout: float = 5.0) -> str:
        """halb's keepalived.stats / keepalived.data of `node` (SIGUSR2 / SIGUSR1 to the main
        process, which forwards it to the VRRP child)."""
        path = self.tmpdir(node) / f"keepalived.{what}"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.procs[node].send_signal(signal.SIGUSR2 if what == "stats" else signal.SIGUSR1)
        end = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > end:
                raise AssertionError(f"{node} wrote no {path.name}\n{self.log(node)[-2000:]}")
            time.sleep(0.02)
        return path.read_text()

    def wait_log(self, node: str, text: str | tuple[str, ...], timeout: float,
                 after: int = 0) -> int:
        """Wait until the node's log has `text` (or one of them) at or after offset `after`;
        its offset."""
        texts = (text,) if isinstance(text, str) else text
        end = time.monotonic() + timeout
        while True:
            log = self.log(node)
            found = [i for i in (log.find(t, after) for t in texts) if i >= 0]
            if found:
                return min(found)
            if time.monotonic() > end:
                raise AssertionError(f"{node}: no {text!r} in {timeout:.1f}s\n{log[-3000:]}")
            time.sleep(0.02)

    def wait_ready(self, node: str, timeout: float, after: int = 0) -> float:
        """Wait until the node's daemon has started its instances (its first "Entering ...
        STATE" line at or after offset `after`); the monotonic time it was seen. A start's
        length is the machine's load (Python imports), not the protocol: timed protocol steps
        count from here."""
        self.wait_log(node, ("Entering BACKUP STATE", "Entering MASTER STATE"), timeout, after)
        return time.monotonic()

    def log(self, node: str) -> str:
        path = self.tmp / f"{node}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, node: str, wait: bool = True) -> float:
        """Graceful stop (SIGTERM to the main process); returns the signal time. With
        wait=False the exit is awaited later by `reap` (keepalived takes ~1 s to exit)."""
        proc = self.procs.pop(node)
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        self._stopping.append((node, proc))
        if wait:
            self.reap()
        return t

    def reap(self) -> None:
        while self._stopping:
            node, proc = self._stopping.pop()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                Lan.kill(proc)
                raise AssertionError(f"{node} did not stop on SIGTERM") from None

    def crash(self, node: str) -> float:
        self.procs.pop(node, None)
        t = self.lan.crash(node)
        for kind in ("main", "vrrp", "check"):  # a rebooted host starts with an empty /run
            (self.tmp / f"{node}.{kind}.pid").unlink(missing_ok=True)
        return t

    # -- observing ------------------------------------------------------------------------------

    def holders(self) -> list[str]:
        return self.lan.holders(self.vip)

    def wait_holder(self, node: str, timeout: float, since: float | None = None,
                    alone: bool = True) -> float:
        """Seconds from `since` (now) until `node` holds the VIP (alone: and nobody else)."""
        start = time.monotonic() if since is None else since
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            h = self.holders()
            if node in h and (not alone or h == [node]):
                return time.monotonic() - start
            time.sleep(0.01)
        raise AssertionError(f"{node} did not take {self.vip} in {timeout:.1f}s; holders "
                             f"{self.holders()}\n" + "\n".join(
                                 f"== {n}\n{self.log(n)[-3000:]}" for n in self.lan_nodes()))

    def lan_nodes(self) -> list[str]:
        return [n.name for n in self.lan.nodes]

    def hold_steady(self, node: str, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert self.holders() == [node], f"holders {self.holders()}, expected [{node}]"
            time.sleep(0.1)

    def sample(self) -> None:
        def run() -> None:
            while not self._stop.is_set():
                self.samples.append((time.monotonic(), tuple(self.holders())))
                self._stop.wait(0.05)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def samples_since(self, t: float) -> list[tuple[float, tuple[str, ...]]]:
        return [(ts, h) for ts, h in list(self.samples) if ts >= t]

    def longest_overlap(self) -> float:
        """The longest time two online nodes held the VIP at once, from the samples."""
        longest, since = 0.0, None
        for t, holders in self.samples:
            if len(holders) > 1:
                since = t if since is None else since
                longest = max(longest, t - since)
            else:
                since = None
        return longest

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)


