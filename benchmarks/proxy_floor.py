"""The floor under any Python proxy here: the leanest uvloop proxy, beside nginx, in one run.

    .venv/bin/python benchmarks/proxy_floor.py [--rounds 2] [--seconds 4] [--spin 0,30,60]

The same set-up as benchmarks/proxy.py (two nginx backends on CPU 1, wrk -t1 -c50 on CPU 1,
the proxy on CPU 0, keep-alive both sides, an access log line per request) with, instead of
`halb nginx`, a 40-line uvloop proxy that does nothing a reverse proxy must (no parsing beyond
the head's end and Content-Length, no balancing, no headers) — what the event loop and the
system calls of one proxied request cost from Python. --spin N makes it burn N µs of user time
per request, to show how the kernel's share grows as the proxy gets slower (the load's CPU
idles more, and every wake-up of an idle vCPU costs more): the reason a µs saved in halb's
Python saves more than a µs of CPU per request. Loopback only; every process is stopped.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_times, free_port, launch, process_tree, stop, wait_port
from proxy import PYTHON, backend_conf, measure, run_wrk

FLOOR = r'''
import asyncio, collections, sys, time, uvloop
PORT, BACK, LOG, SPIN = int(sys.argv[1]), [int(p) for p in sys.argv[2].split(",")], \
    open(sys.argv[3], "ab", buffering=0), float(sys.argv[4]) * 1e-6
idle, turn = collections.deque(), [0]
HEAD = b"GET / HTTP/1.1\r\nHost: backends\r\n\r\n"

class Up(asyncio.Protocol):
    def connection_made(self, t): self.t, self.client, self.buf = t, None, b""
    def data_received(self, d):
        if self.buf: d = self.buf + d
        i = d.find(b"\r\n\r\n")
        j = d.find(b"Content-Length: ", 0, i)
        if i < 0 or len(d) < i + 4 + int(d[j + 16:d.find(b"\r", j)]):
            self.buf = d
            return
        self.buf = b""
        end = time.perf_counter() + SPIN
        while time.perf_counter() < end: pass
        self.client.t.write(d)
        LOG.write(b'127.0.0.1 - - [%s] "GET / HTTP/1.1" 200 %d "-" "-"\n'
                  % (time.strftime("%d/%b/%Y:%H:%M:%S +0000").encode(), len(d) - i - 4))
        self.client = None
        idle.append(self)

class Client(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d):
        if d.find(b"\r\n\r\n") < 0: return
        if idle:
            up = idle.pop(); up.client = self; up.t.write(HEAD)
        else:
            loop.create_task(self.connect())
    async def connect(self):
        turn[0] += 1
        t, up = await loop.create_connection(Up, "127.0.0.1", BACK[turn[0] % len(BACK)])
        up.client = self
        t.write(HEAD)

loop = uvloop.new_event_loop()
loop.run_until_complete(loop.create_server(Client, "127.0.0.1", PORT))
loop.run_forever()
'''


def run_floor(script: Path, backends: list[int], spin: float, seconds: int,
              log: Path) -> dict[str, float]:
    port = free_port()
    proc = launch([PYTHON, str(script), str(port), ",".join(map(str, backends)), str(log),
                   str(spin)], "0")
    try:
        wait_port(port)
        time.sleep(0.3)
        run_wrk(port, 1, 50)
        pids = process_tree(proc.pid)
        u0, s0 = cpu_times(pids)
        res = run_wrk(port, seconds, 50)
        u1, s1 = cpu_times(pids)
        n = res["requests"]
        return {"rps": n / res["seconds"], "cpu_us": (u1 - u0 + s1 - s0) / n * 1e6,
                "user_us": (u1 - u0) / n * 1e6, "sys_us": (s1 - s0) / n * 1e6,
                "p99": res["p99"], "errors": res["errors"]}
    finally:
        stop(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--spin", default="0", help="µs of user time per request, comma separated")
    args = ap.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} is required", file=sys.stderr)
            return 2
    spins = [float(s) for s in args.spin.split(",")]
    work = Path(tempfile.mkdtemp(prefix="proxy-floor-"))
    script = work / "floor.py"
    script.write_text(FLOOR)
    ports = [free_port(), free_port()]
    procs = []
    print(f"# proxy floor: {args.rounds} rounds x {args.seconds}s, wrk -t1 -c50, proxy on CPU0")
    print("| round | server | req/s | CPU µs/req | user | system | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for i, port in enumerate(ports):
            d = work / f"backend{i}"
            d.mkdir()
            (d / "nginx.conf").write_text(backend_conf(d, port, str(i + 1)))
            procs.append(launch(["nginx", "-p", f"{d}/", "-c", f"{d}/nginx.conf"], "1"))
        for port in ports:
            wait_port(port)
        for rnd in range(1, args.rounds + 1):
            res = measure("nginx", ports, args.seconds, 50)
            print(f"| {rnd} | nginx | {res['rps']:.0f} | {res['cpu_us']:.1f} | | | "
                  f"{res['p99']:.2f} | {res['errors']} |", flush=True)
            for spin in spins:
                f = run_floor(script, ports, spin, args.seconds, work / "access.log")
                print(f"| {rnd} | floor spin {spin:g} µs | {f['rps']:.0f} | {f['cpu_us']:.1f} | "
                      f"{f['user_us']:.1f} | {f['sys_us']:.1f} | {f['p99']:.2f} | "
                      f"{f['errors']} |", flush=True)
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
