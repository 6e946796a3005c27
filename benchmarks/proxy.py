"""Reverse proxy benchmark: nginx vs `halb nginx`, same config, alternating rounds in one run.

    .venv/bin/python benchmarks/proxy.py [--rounds 5] [--seconds 8] [--connections 50] [--gzip]
                                         [--log combined|buffered|off]

Setup (issue 3): one worker each, `upstream` of two loopback backends served by nginx with
`keepalive 32`, proxy_http_version 1.1 + `Connection ""`, access_log on (combined, to a file).
The proxy under test runs on CPU 0; wrk and both backends on CPU 1. For each round the script
starts nginx and halb in turn and runs `wrk -t1 -cN -dS --latency` against each. It reports
requests/s, p50 / p99 latency, the proxy's CPU time per request (utime + stime of all its
processes from /proc, over the measured run) and the ratios halb / nginx per round and as a
median. --gzip: both proxies compress (seed 002 1-22: gzip on, gzip_min_length 1, gzip_types
text/plain) and wrk asks for it (Accept-Encoding: gzip). --log: the access log of both proxies,
`combined` (the default, a line per request), `buffered` (combined buffer=64k) or `off`, to see
what logging costs each. Loopback only; everything started is stopped.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_seconds, free_port, launch, process_tree, stop, wait_port

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
TARGETS = {"cpu": 1.6, "rps": 0.7, "p99": 2.0}


def user_line() -> str:
    return "user root;" if os.geteuid() == 0 else ""


def backend_conf(prefix: Path, port: int, name: str) -> str:
    return (f"{user_line()} daemon off; worker_processes 1; error_log stderr crit; "
            f"pid {prefix}/pid; events {{ worker_connections 4096; }} http {{ access_log off; "
            f"keepalive_requests 100000; server {{ listen 127.0.0.1:{port}; "
            f'location / {{ return 200 "backend {name}\\n"; }} }} }}')


LOGS = {"combined": "access_log {prefix}/access.log combined;",
        "buffered": "access_log {prefix}/access.log combined buffer=64k;",
        "off": "access_log off;"}


def proxy_conf(prefix: Path, port: int, backends: list[int], gzip: bool = False,
               log: str = "combined") -> str:
    servers = " ".join(f"server 127.0.0.1:{p};" for p in backends)
    gz = "gzip on; gzip_min_length 1; gzip_types text/plain;" if gzip else ""
    return f"""{user_line()} daemon off; worker_processes 1; error_log {prefix}/error.log error;
pid {prefix}/pid;
events {{ worker_connections 4096; }}
http {{
    {LOGS[log].format(prefix=prefix)}
    {gz}
    keepalive_requests 100000;
    upstream backends {{ {servers} keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def parse_latency(text: str, pct: str) -> float:
    m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)\b", text)
    assert m, text
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def run_wrk(port: int, seconds: int, conns: int, gzip: bool = False) -> dict[str, float]:
    extra = ["-H", "Accept-Encoding: gzip"] if gzip else []
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s",
                          *extra, "--latency", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)s", out)
    assert m, out
    errors = 0
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if e:
        errors += sum(int(x) for x in e.groups())
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if n:
        errors += int(n.group(1))
    return {"requests": int(m.group(1)), "seconds": float(m.group(2)),
            "p50": parse_latency(out, "50"), "p99": parse_latency(out, "99"),
            "errors": errors}


def measure(kind: str, backends: list[int], seconds: int, conns: int, gzip: bool = False,
            log: str = "combined") -> dict[str, float]:
    prefix = Path(tempfile.mkdtemp(prefix=f"proxy-bench-{kind}-"))
    port = free_port()
    (prefix / "nginx.conf").write_text(proxy_conf(prefix, port, backends, gzip, log))
    if kind == "nginx":
        argv = ["nginx", "-p", f"{prefix}/", "-c", f"{prefix}/nginx.conf"]
    else:
        argv = [PYTHON, "-m", "halb", "nginx", "-p", f"{prefix}/", "-c", "nginx.conf"]
    proc = launch(argv, "0")
    try:
        wait_port(port)
        time.sleep(0.5)
        run_wrk(port, 1, conns, gzip)  # warm-up: fills the upstream keep-alive cache
        pids = process_tree(proc.pid)
        before = cpu_seconds(pids)
        result = run_wrk(port, seconds, conns, gzip)
        used = cpu_seconds(pids) - before
        result["rps"] = result["requests"] / result["seconds"]
        result["cpu_us"] = used / result["requests"] * 1e6
        return result
    finally:
        stop(proc)
        shutil.rmtree(prefix, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--gzip", action="store_true", help="both proxies compress the answers")
    ap.add_argument("--log", choices=sorted(LOGS), default="combined",
                    help="the proxies' access log")
    args = ap.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} is required", file=sys.stderr)
            return 2
    backend_procs: list[subprocess.Popen[bytes]] = []
    backend_dirs: list[Path] = []
    ports = [free_port(), free_port()]
    rows: dict[str, list[dict[str, float]]] = {"nginx": [], "halb": []}
    try:
        for i, port in enumerate(ports):
            d = Path(tempfile.mkdtemp(prefix="proxy-bench-backend-"))
            backend_dirs.append(d)
            (d / "nginx.conf").write_text(backend_conf(d, port, str(i + 1)))
            backend_procs.append(launch(["nginx", "-p", f"{d}/", "-c", f"{d}/nginx.conf"], "1"))
        for port in ports:
            wait_port(port)
        for _ in range(args.rounds):
            for kind in ("nginx", "halb"):
                rows[kind].append(measure(kind, ports, args.seconds, args.connections,
                                          args.gzip, args.log))
    finally:
        for proc in backend_procs:
            stop(proc)
        for d in backend_dirs:
            shutil.rmtree(d, ignore_errors=True)
    report(rows, args)
    return 0


def report(rows: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    print(f"# proxy benchmark: {args.rounds} alternating rounds x {args.seconds}s, "
          f"wrk -t1 -c{args.connections}, proxy on CPU0, wrk + 2 nginx backends on CPU1, "
          f"{'gzip on, ' if args.gzip else ''}access_log {args.log}, "
          f"{os.cpu_count()} CPUs")
    print("| round | server | req/s | p50 ms | p99 ms | CPU µs/req | errors |")
    print("|---|---|---|---|---|---|---|")
    for i in range(len(rows["nginx"])):
        for kind in ("nginx", "halb"):
            r = rows[kind][i]
            print(f"| {i + 1} | {kind} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                  f"{r['cpu_us']:.1f} | {r['errors']:.0f} |")
    ratios = {
        "cpu": [h["cpu_us"] / n["cpu_us"] for h, n in zip(rows["halb"], rows["nginx"],
                                                           strict=True)],
        "rps": [h["rps"] / n["rps"] for h, n in zip(rows["halb"], rows["nginx"], strict=True)],
        "p99": [h["p99"] / n["p99"] for h, n in zip(rows["halb"], rows["nginx"], strict=True)],
    }
    print()
    print("| ratio halb / nginx (median of rounds) | value | target | met |")
    print("|---|---|---|---|")
    for key, label, better_low in (("cpu", "CPU per request", True),
                                   ("rps", "requests/s", False), ("p99", "p99 latency", True)):
        value = statistics.median(ratios[key])
        target = TARGETS[key]
        met = value <= target if better_low else value >= target
        sign = "<=" if better_low else ">="
        print(f"| {label} | {value:.2f} | {sign} {target} | {'yes' if met else 'no'} |")


if __name__ == "__main__":
    sys.exit(main())
