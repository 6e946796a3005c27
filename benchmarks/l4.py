"""L4 benchmark: the kernel (nftables) and user-space data planes against a backend reached
straight and against HAProxy in tcp mode, alternating rounds in one run (root).

    .venv/bin/python benchmarks/l4.py [--modes nat,dr] [--rounds 3] [--seconds 3]
                                      [--connections 32]

Set-up (issue 5): halb.testing.l4net's namespaces on 198.18.0.0/15. One backend, nginx with
one worker answering `return 200` on real server rs1 (the same backend for every path):

* direct     the client connects to the backend itself (NAT: over its own leg on the back LAN;
             DR: on the shared LAN), no director on the way;
* routed     the client connects to a second address of the backend (198.18.2.11) routed
             through the director, which only forwards (with conntrack, as the director's
             namespace has it loaded): the same hops as the NAT path without halb's rules, to
             tell the cost of the extra hop from the cost of the rules;
* nftables   `halb ipvsadm --start-director --dataplane nftables`, VIP 198.18.0.100:80, one
             real server (-m in "nat" mode: DNAT and back through the director; -g in "dr"
             mode: netdev ingress forward, replies straight to the client);
* userspace  `--dataplane userspace`, VIP 198.18.0.101:80, -m (a full proxy);
* haproxy    HAProxy `mode tcp`, one thread, on 198.18.0.102:80.

Each round runs every path in turn with wrk (pinned to CPU 1): requests/s over keep-alive
connections (`wrk -t1 -cN`), then connections/s (the same with `Connection: close`, so each
request opens a new TCP connection). nginx, the directors and HAProxy share CPU 0. Reported:
the median of the rounds per path, and the ratios the issue sets targets for: nftables / direct
>= 0.9 and userspace / haproxy >= 0.6, plus the CPU time each proxy process spends per
keep-alive request and per connection (halb nftables: the director process only; the kernel's
forwarding is not in it). Every
namespace and process is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from common import cpu_seconds, process_tree  # noqa: E402

from halb.testing.l4net import CLIENT_BACK, L4Net  # noqa: E402
from halb.testing.netns import Topology  # noqa: E402

HALB = [sys.executable, "-m", "halb"]
TARGETS = {("nftables", "direct"): 0.9, ("userspace", "haproxy"): 0.6}
ROUTED = "198.18.2.11"
TARGETS_ORDER = ("direct", "routed", "nftables", "userspace", "haproxy")
VIPS = {"nftables": "198.18.0.100", "userspace": "198.18.0.101", "haproxy": "198.18.0.102"}


def make_director(dataplane: str = "userspace") -> object:
    """--director-factory for the benchmark's directors (the CLI hands the data plane name)."""
    from halb.l4.director import Director

    if dataplane == "nftables":
        from halb.l4.dataplane.nftables import NftablesDataPlane

        return Director(NftablesDataPlane())
    from halb.l4.dataplane.userspace import UserspaceDataPlane

    return Director(UserspaceDataPlane())


def nginx_conf(tmp: pathlib.Path) -> str:
    return (f"user root; daemon off; worker_processes 1; error_log {tmp}/nginx.err crit; "
            f"pid {tmp}/nginx.pid; events {{ worker_connections 8192; }} http {{ "
            "access_log off; keepalive_requests 1000000; server { listen 0.0.0.0:80 "
            "reuseport backlog=8192; location / { return 200 \"rs1\\n\"; } } }")


def haproxy_conf(backend: str) -> str:
    return f"""global
    maxconn 8000
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen l4
    bind {VIPS['haproxy']}:80
    server rs1 {backend}:80
"""


class Bench(Topology):
    def __init__(self, mode: str, tmp: pathlib.Path, connections: int, seconds: int) -> None:
        self.mode = mode
        self.tmp = tmp
        self.connections = connections
        self.seconds = seconds
        self.net = L4Net(mode, servers=1, clients=1, prefix=f"b4{mode[0]}", serve=False,
                         client_on_back=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def pinned(self, ns: str, cpu: str, argv: list[str], **kw: object
               ) -> subprocess.Popen[bytes]:
        return self.net.popen(ns, ["taskset", "-c", cpu, *argv], **kw)

    def build(self) -> None:
        net = self.net
        net.build()
        rs = net.servers[0]
        self.backend = rs.addr
        (self.tmp / "nginx.conf").write_text(nginx_conf(self.tmp))
        self.procs["nginx"] = self.pinned(rs.ns, "0", ["nginx", "-c", str(self.tmp / "nginx.conf")],
                                          stderr=subprocess.DEVNULL)
        for vip in (VIPS["userspace"], VIPS["haproxy"]):
            net.director(["ip", "addr", "add", f"{vip}/32", "dev", "eth0"])
        (self.tmp / "haproxy.cfg").write_text(haproxy_conf(rs.addr))
        self.procs["haproxy"] = self.pinned(net.director_ns, "0", [
            shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f",
            str(self.tmp / "haproxy.cfg")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "benchmarks"),
                                                          str(ROOT / "src")]))
        for dp in ("nftables", "userspace"):
            sock = str(self.tmp / f"{dp}.sock")
            log = open(self.tmp / f"{dp}.log", "w")  # noqa: SIM115 (lives with the process)
            self.procs[dp] = self.pinned(net.director_ns, "0", [
                *HALB, "ipvsadm", "--start-director", "--dataplane", dp, "--socket", sock,
                "--director-factory", "l4:make_director"], stdout=log, stderr=log, env=env)
            end = time.monotonic() + 20
            while "listening" not in (self.tmp / f"{dp}.log").read_text():
                if self.procs[dp].poll() is not None or time.monotonic() > end:
                    raise RuntimeError((self.tmp / f"{dp}.log").read_text())
                time.sleep(0.05)
            fwd = "-g" if dp == "nftables" and self.mode == "dr" else "-m"
            for args in (["-A", "-t", f"{VIPS[dp]}:80", "-s", "rr"],
                         ["-a", "-t", f"{VIPS[dp]}:80", "-r", f"{rs.addr}:80", fwd]):
                subprocess.run([*HALB, "ipvsadm", *args], check=True, timeout=30,
                               env=dict(os.environ, HALB_IPVSADM_SOCKET=sock))
        # the routed path: 198.18.2.11 on the backend's lo, reached through the director
        net.run(rs.ns, ["ip", "addr", "add", f"{ROUTED}/32", "dev", "lo"])
        net.run(net.client_ns, ["ip", "route", "add", f"{ROUTED}/32", "via", "198.18.0.1"])
        net.director(["ip", "route", "add", f"{ROUTED}/32", "via", rs.addr])
        if self.mode == "dr":  # the backend answers the client on the shared LAN
            net.run(rs.ns, ["ip", "route", "add", "default", "via", "198.18.0.1"])
        for target in TARGETS_ORDER:
            self.wrk(target, close=False, seconds=1)  # warm up; fails loudly if broken

    def url(self, target: str) -> str:
        if target == "direct":
            return f"http://{self.backend}/"
        if target == "routed":
            return f"http://{ROUTED}/"
        return f"http://{VIPS[target]}/"

    def wrk(self, target: str, close: bool, seconds: int | None = None) -> float:
        argv = ["taskset", "-c", "1", "wrk", "-t1", f"-c{self.connections}",
                f"-d{int(seconds or self.seconds)}s"]
        if close:
            argv += ["-H", "Connection: close"]
        argv.append(self.url(target))
        out = self.net.run(self.net.client_ns, argv, timeout=60 + (seconds or self.seconds))
        m = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
        errors = re.search(r"Socket errors: (.*)", out.stdout)
        if m is None or float(m.group(1)) == 0:
            raise RuntimeError(f"wrk against {target} failed: {out.stdout}{out.stderr}")
        if errors and target != "direct" and "timeout" in errors.group(1):
            print(f"  ({target}: {errors.group(1).strip()})", file=sys.stderr)
        return float(m.group(1))

    def proxy_cpu(self, target: str) -> float:
        proc = self.procs.get(target)
        return cpu_seconds(process_tree(proc.pid)) if proc else 0.0

    def close(self) -> None:
        self.net.close()  # kills everything started in its namespaces, then removes them


def run(mode: str, rounds: int, seconds: int, connections: int) -> dict[str, object]:
    targets = list(TARGETS_ORDER)
    rps: dict[str, list[float]] = {t: [] for t in targets}
    cps: dict[str, list[float]] = {t: [] for t in targets}
    cpu: dict[str, list[float]] = {t: [] for t in targets}
    ccpu: dict[str, list[float]] = {t: [] for t in targets}
    with tempfile.TemporaryDirectory() as tmp, Bench(mode, pathlib.Path(tmp), connections,
                                                     seconds) as b:
        for r in range(rounds):
            order = targets if r % 2 == 0 else list(reversed(targets))
            for t in order:
                before = b.proxy_cpu(t)
                got = b.wrk(t, close=False)
                rps[t].append(got)
                cpu[t].append((b.proxy_cpu(t) - before) / (got * seconds) * 1e6)
                before = b.proxy_cpu(t)
                got = b.wrk(t, close=True)
                cps[t].append(got)
                ccpu[t].append((b.proxy_cpu(t) - before) / (got * seconds) * 1e6)
            print(f"[{mode}] round {r + 1}: " + "  ".join(
                f"{t} {rps[t][-1]:.0f} req/s {cps[t][-1]:.0f} conn/s" for t in targets),
                file=sys.stderr)
    return {"rps": {t: statistics.median(v) for t, v in rps.items()},
            "cps": {t: statistics.median(v) for t, v in cps.items()},
            "cpu": {t: statistics.median(v) for t, v in cpu.items()},
            "ccpu": {t: statistics.median(v) for t, v in ccpu.items()}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default="nat,dr")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=3)
    p.add_argument("--connections", type=int, default=32)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/l4.py needs root (network namespaces, nftables)", file=sys.stderr)
        return 2
    for tool in ("wrk", "nginx", "haproxy", "nft", "taskset"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            print(f"benchmarks/l4.py needs {tool}", file=sys.stderr)
            return 2
    assert CLIENT_BACK  # the direct path's client address (l4net)
    print(f"L4 benchmark: {args.rounds} rounds x {args.seconds:g} s, wrk -t1 "
          f"-c{args.connections}; medians")
    for mode in args.modes.split(","):
        res = run(mode, args.rounds, args.seconds, args.connections)
        rps, cps, cpu, ccpu = res["rps"], res["cps"], res["cpu"], res["ccpu"]  # type: ignore[assignment]
        print(f"\nmode {mode} ({'-m, DNAT' if mode == 'nat' else '-g, netdev forward'} for "
              "nftables)")
        print(f"{'path':10s} {'req/s':>10s} {'conn/s':>10s} {'CPU us/req':>11s} "
              f"{'CPU us/conn':>12s}  (the proxy process's user + system time)")
        for t in rps:  # type: ignore[union-attr]
            cpu_txt = f"{cpu[t]:11.1f} {ccpu[t]:12.1f}" if t in VIPS else \
                f"{'-':>11s} {'-':>12s}"  # type: ignore[index]
            print(f"{t:10s} {rps[t]:10.0f} {cps[t]:10.0f} {cpu_txt}")  # type: ignore[index]
        for a, base in (("nftables", "routed"),):
            print(f"{a}/{base}: req/s {rps[a] / rps[base]:.2f}x, "  # type: ignore[index]
                  f"conn/s {cps[a] / cps[base]:.2f}x (the cost of halb's rules alone)")  # type: ignore[index]
        for (a, base), target in TARGETS.items():
            r1 = rps[a] / rps[base]  # type: ignore[index]
            r2 = cps[a] / cps[base]  # type: ignore[index]
            verdict = "meets" if min(r1, r2) >= target else "misses"
            print(f"{a}/{base}: req/s {r1:.2f}x, conn/s {r2:.2f}x (target >= {target}x: "
                  f"{verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
