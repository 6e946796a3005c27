"""What one proxied TCP connection costs the user-space data plane, in CPU (no root, loopback),
two versions of halb side by side.

    .venv/bin/python benchmarks/l4_userspace_cpu.py [--against OTHER/src] [--bursts 10]
                                                    [--seconds 1] [--profile [--keep-alive]] [--haproxy]

nginx (one worker, `return 200`) is the real server on 127.6.0.11; each version of halb runs a
`Director` over `UserspaceDataPlane` (uvloop) in a process of its own on 127.6.0.10, one port
each: this tree's src, and `--against` (another tree's src, e.g. main's: before / after). wrk
(`-t1 -c32`) is the client, in short bursts that alternate between the two versions, with
`Connection: close` (one request per connection) and over keep-alive. Reported per version: the
director process's CPU time (user + system, from /proc) per connection and per keep-alive
request, summed over the bursts — on a loaded machine the CPU spent per unit is steadier than
wall-clock rates, and alternating short bursts spreads the load of others over both versions.
`--haproxy` adds HAProxy in tcp mode (one thread) on the same backend as a third column, the
issue's reference. The CPU time is split into user and system time. `--profile` runs this
tree's director under cProfile (wall-clock timer: the os.times() ticks of 10 ms were too coarse
to tell functions apart; time blocked in epoll_wait shows under the loop's run) for one burst of
connections (`--keep-alive`: of keep-alive requests) and prints the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pathlib
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time

from common import cpu_times

ROOT = pathlib.Path(__file__).resolve().parents[1]
VIP, RS = "127.6.0.10", "127.6.0.11"


def nginx_conf(tmp: pathlib.Path, port: int) -> str:
    return (f"daemon off; worker_processes 1; error_log {tmp}/nginx.err crit; "
            f"pid {tmp}/nginx.pid; events {{ worker_connections 4096; }} http {{ "
            f"access_log off; keepalive_requests 1000000; server {{ listen {RS}:{port} "
            "backlog=4096; location / { return 200 \"rs1\\n\"; } } }")


def serve(port: int, backend: int, profile: bool) -> None:
    """The child: a director on VIP:port until stdin closes (with --profile: then the stats)."""
    from halb.l4.dataplane.userspace import UserspaceDataPlane
    from halb.l4.director import Director
    from halb.l4.model import Command, DestSpec, Forward, Op, Proto, ServiceKey, ServiceSpec
    from halb.runtime.loop import new_event_loop

    async def main() -> None:
        director = Director(UserspaceDataPlane())
        await director.start()
        key = ServiceKey(Proto.TCP, VIP, port)
        await director.execute(Command(Op.ADD_SERVICE, service=ServiceSpec(key, "rr")))
        await director.execute(Command(Op.ADD_DEST, service=ServiceSpec(key),
                                       dest=DestSpec(RS, backend, Forward.MASQ)))
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        await director.stop()

    prof = cProfile.Profile(time.perf_counter) if profile else None
    if prof is not None:
        prof.enable()
    new_event_loop().run_until_complete(main())
    if prof is not None:
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats(os.environ.get("PROFILE_SORT", "tottime")).print_stats(int(os.environ.get("PROFILE_TOP", "30")))


def haproxy_conf(port: int, backend: int) -> str:
    return (f"global\n    maxconn 8000\n    nbthread 1\ndefaults\n    mode tcp\n"
            f"    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n"
            f"listen l4\n    bind {VIP}:{port}\n    server rs1 {RS}:{backend}\n")


def wrk(port: int, seconds: int, close: bool) -> int:
    argv = ["wrk", "-t1", "-c32", f"-d{seconds}s"]
    if close:
        argv += ["-H", "Connection: close"]
    out = subprocess.run([*argv, f"http://{VIP}:{port}/"], capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    m = re.search(r"(\d+) requests in", out)
    if m is None:
        raise RuntimeError(out)
    return int(m.group(1))


def wait_listen(port: int) -> None:
    import socket

    for _ in range(100):
        try:
            socket.create_connection((VIP, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {VIP}:{port}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--against", help="another tree's src directory (the 'before')")
    p.add_argument("--bursts", type=int, default=10)
    p.add_argument("--seconds", type=int, default=1)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--keep-alive", action="store_true",
                   help="with --profile: profile keep-alive requests instead of connections")
    p.add_argument("--haproxy", action="store_true",
                   help="also HAProxy in tcp mode (one thread) on the same backend")
    p.add_argument("--serve", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], args.profile)
        return 0
    from common import free_port

    trees = {"this": str(ROOT / "src")}
    if args.against and not args.profile:
        trees["against"] = args.against
    backend = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        (pathlib.Path(tmp) / "nginx.conf").write_text(nginx_conf(pathlib.Path(tmp), backend))
        nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c",
                                  f"{tmp}/nginx.conf"], stderr=subprocess.DEVNULL)
        procs: dict[str, tuple[subprocess.Popen[str], int]] = {}
        try:
            for name, src in trees.items():
                port = free_port()
                argv = [sys.executable, __file__, "--serve", str(port), str(backend)]
                if args.profile:
                    argv.append("--profile")
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=dict(os.environ, PYTHONPATH=src))
                procs[name] = (proc, port)
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"{name}: the director did not start")
            if args.haproxy and not args.profile:
                port = free_port()
                (pathlib.Path(tmp) / "haproxy.cfg").write_text(haproxy_conf(port, backend))
                procs["haproxy"] = (subprocess.Popen(
                    [shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f",
                     f"{tmp}/haproxy.cfg"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    text=True), port)
                trees["haproxy"] = "tcp mode, nbthread 1"
                wait_listen(port)
            for _, port in procs.values():
                wrk(port, 1, close=True)  # warm up
            if args.profile:
                n = wrk(procs["this"][1], args.seconds * args.bursts, close=not args.keep_alive)
                what = "keep-alive requests" if args.keep_alive else "connections"
                print(f"{n} {what} profiled (stats on stderr)")
                return 0
            totals = {(n, c): [0.0, 0.0, 0] for n in procs for c in (True, False)}
            for b in range(args.bursts):
                order = list(procs) if b % 2 == 0 else list(reversed(procs))
                for close in (True, False):
                    for name in order:
                        proc, port = procs[name]
                        u0, s0 = cpu_times([proc.pid])
                        n = wrk(port, args.seconds, close)
                        u1, s1 = cpu_times([proc.pid])
                        t = totals[(name, close)]
                        t[0] += u1 - u0
                        t[1] += s1 - s0
                        t[2] += int(n)
            for (name, close), (user, system, n) in totals.items():
                what = "connection" if close else "keep-alive request"
                print(f"{name:8s} {trees[name]}: {(user + system) / n * 1e6:6.1f} us CPU per "
                      f"{what} (user {user / n * 1e6:.1f} + system {system / n * 1e6:.1f}; "
                      f"{n} in {args.bursts} x {args.seconds} s)")
        finally:
            for proc, _ in procs.values():
                if proc.stdin is not None:
                    proc.stdin.close()
                else:
                    proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            nginx.terminate()
            nginx.wait(5)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.exit(main())
