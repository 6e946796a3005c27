"""The lab's namespaces and its state file (root; iproute2's `ip`).

`State` is the record of everything the lab made, written (atomically) before each thing is
made: the namespace names and the processes (pid, process start time, process group) with
their roles. `halb lab down` reads it, so it removes everything also after a crash of the
controller; it also sweeps any namespace named with the lab's prefix that the record lost.

`build(state)` creates, from halb.lab.plan: a bridge namespace `<prefix>br` with br0, and one
namespace per host (`<prefix>client`, `<prefix>dir1`, ...) joined to it by a veth (eth0 in the
host, pN on the bridge), with the host's address; the nginx nodes also get the VIP on lo and
the seeds' arp_ignore=1 / arp_announce=2 (seed 002 §4-8, LVS-DR). Links live in namespaces and
go with them; nft tables too (the directors' halb tables are inside their namespaces).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field

from halb.lab import plan
from halb.testing.netns import ip, ns_exists

DEFAULT_DIR = "/run/halb-lab"


def sysctl(ns: str, key: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"],
                   check=True, capture_output=True, timeout=10)


def proc_start(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), None when it is gone: with the pid,
    it names one process (a pid can be reused)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


@dataclass
class Proc:
    role: str  # "dir1.keepalived", "ngx1.nginx", "web1.backend", ...
    ns: str
    pid: int
    start: int | None
    pgid: int

    def alive(self) -> bool:
        return self.start is not None and proc_start(self.pid) == self.start


@dataclass
class State:
    dir: str
    prefix: str = plan.DEFAULT_PREFIX
    mode: str = "halb"
    namespaces: list[str] = field(default_factory=list)
    procs: dict[str, Proc] = field(default_factory=dict)
    created: float = 0.0

    @property
    def path(self) -> pathlib.Path:
        return pathlib.Path(self.dir) / "state.json"

    def ns(self, host: str) -> str:
        return f"{self.prefix}{host}"

    def save(self) -> None:
        pathlib.Path(self.dir).mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = {"dir": self.dir, "prefix": self.prefix, "mode": self.mode,
                "namespaces": self.namespaces, "created": self.created,
                "procs": {k: asdict(v) for k, v in self.procs.items()}}
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, dir: str) -> State | None:
        path = pathlib.Path(dir) / "state.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        procs = {k: Proc(**v) for k, v in data.get("procs", {}).items()}
        return cls(dir=data.get("dir", dir), prefix=data.get("prefix", plan.DEFAULT_PREFIX),
                   mode=data.get("mode", "halb"), namespaces=list(data.get("namespaces", [])),
                   procs=procs, created=float(data.get("created", 0.0)))


def _add_ns(state: State, name: str) -> None:
    if ns_exists(name):
        kill_ns(name)
        ip("netns", "del", name, check=False)
    state.namespaces.append(name)
    state.save()  # recorded before it exists: down removes it even if we die right now
    ip("netns", "add", name)
    ip("-n", name, "link", "set", "lo", "up")


def build(state: State) -> None:
    """Namespaces, bridge, veths, addresses and sysctls of the plan."""
    bridge = state.ns("br")
    _add_ns(state, bridge)
    ip("-n", bridge, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0",
       "forward_delay", "0")
    ip("-n", bridge, "link", "set", "br0", "up")
    for i, h in enumerate(plan.HOSTS):
        ns = state.ns(h.name)
        _add_ns(state, ns)
        port = f"p{i}"
        ip("-n", bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0",
           "netns", ns)
        ip("-n", bridge, "link", "set", port, "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{h.addr}/{plan.PREFIXLEN}", "dev", "eth0")
        if h.role == "client":
            for extra in plan.CLIENT_EXTRA:
                ip("-n", ns, "addr", "add", f"{extra}/{plan.PREFIXLEN}", "dev", "eth0")
        if h.role == "nginx":  # seed 002 4-6 / 4-8: the VIP on lo, ARP kept quiet about it
            ip("-n", ns, "addr", "add", f"{plan.VIP}/32", "dev", "lo")
            for dev in ("all", "default", "lo", "eth0"):
                sysctl(ns, f"net.ipv4.conf.{dev}.arp_ignore", "1")
                sysctl(ns, f"net.ipv4.conf.{dev}.arp_announce", "2")
        ip("-n", ns, "link", "set", "eth0", "up")
    wait_links(state)


def wait_links(state: State, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    for h in plan.HOSTS:
        ns = state.ns(h.name)
        while "LOWER_UP" not in ip("-n", ns, "link", "show", "eth0").stdout:
            if time.monotonic() > end:
                raise RuntimeError(f"{ns}/eth0 did not come up")
            time.sleep(0.02)


def kill_ns(name: str) -> None:
    for pid in ip("netns", "pids", name, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def lab_namespaces(prefix: str) -> list[str]:
    """Every namespace whose name has the lab's prefix (the sweep of `down`)."""
    out = ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines()
            if line.split() and line.split()[0].startswith(prefix)]


def stop_proc(p: Proc, sig: int = signal.SIGTERM, wait: float = 10.0) -> bool:
    """Signal a recorded process's group and wait until it is gone (SIGKILL after `wait`);
    True if it was running."""
    if not p.alive():
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pgid, sig)
    end = time.monotonic() + wait
    while p.alive() and time.monotonic() < end:
        _reap(p.pid)
        time.sleep(0.02)
    if p.alive():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pgid, signal.SIGKILL)
        end = time.monotonic() + 5
        while p.alive() and time.monotonic() < end:
            _reap(p.pid)
            time.sleep(0.02)
    return True


def _reap(pid: int) -> None:
    """Collect the process if it is an exited child of this controller (it started it)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def teardown(state: State) -> list[str]:
    """Stop every recorded process, then every process left in a lab namespace, then delete
    the namespaces (links and nft tables go with them). Returns what was removed."""
    removed: list[str] = []
    for role, p in list(state.procs.items()):
        if stop_proc(p, signal.SIGTERM, 3.0):
            removed.append(f"process {role} ({p.pid})")
    state.procs = {}
    names = list(dict.fromkeys([*reversed(state.namespaces), *lab_namespaces(state.prefix)]))
    for name in names:
        kill_ns(name)
    for name in names:
        if ns_exists(name):
            ip("netns", "del", name, check=False)
            removed.append(f"namespace {name}")
    state.namespaces = []
    return removed
