"""nginx vs `halb nginx`, side by side in one run: requests/s, CPU time per request, p99.

    .venv/bin/python benchmarks/l7_bench.py [--rounds 3] [--seconds 5] [--scenario all]

Each round starts nginx and halb on the same configuration (one worker each), alternating, with
the server pinned to CPU 0 and the load (wrk -t1 -c50, keep-alive) plus any backend pinned to
CPU 1. CPU time is the server's utime+stime from /proc over the measured run, so the figure is
"server CPU-seconds per request" and does not depend on how busy the other core is. Ratios are
halb / nginx from the same round; the report gives the median over rounds.

Scenarios: `return` (return 200 "hello"), `static` (a 1 KiB file), `proxy` (proxy_pass to an
nginx backend with upstream keep-alive). Loopback only; every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    cpu_seconds,
    free_port,
    print_side_by_side,
    process_tree,
    start_server,
    stop_server,
    wait_port,
)


def conf(port: int, scenario: str, www: Path, backend: int) -> str:
    body = {
        "return": 'location / { return 200 "hello\\n"; }',
        "static": f"location / {{ root {www}; }}",
        "proxy": ("location / { proxy_pass http://bk; proxy_http_version 1.1; "
                  'proxy_set_header Connection ""; }'),
    }[scenario]
    ups = (f"upstream bk {{ server 127.0.0.1:{backend}; keepalive 32; }}"
           if scenario == "proxy" else "")
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""{user} worker_processes 1; daemon off; error_log stderr crit; pid {{prefix}}/pid;
events {{ worker_connections 1024; }}
http {{ access_log off; {ups}
  server {{ listen 127.0.0.1:{port}; {body} }} }}
"""


def wrk(port: int, seconds: int) -> tuple[float, float]:
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{seconds}s",
                          "--latency", f"http://127.0.0.1:{port}/index.html"],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert m, out
    p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    if "Socket errors" in out or "Non-2xx" in out:
        print(out, file=sys.stderr)
    return rps, p99


def measure(kind: str, scenario: str, www: Path, backend: int, seconds: int) -> dict[str, float]:
    port = free_port()
    proc, prefix = start_server(kind, conf(port, scenario, www, backend), "0", "")
    try:
        wait_port(port)
        time.sleep(0.5)
        wrk(port, 1)  # warm up (and fill the upstream keep-alive cache)
        pids = process_tree(proc.pid)
        before = cpu_seconds(pids)
        t0 = time.monotonic()
        rps, p99 = wrk(port, seconds)
        elapsed = time.monotonic() - t0
        used = cpu_seconds(pids) - before
        requests = rps * seconds
        return {"rps": rps, "p99_ms": p99, "cpu_us_per_req": used / requests * 1e6,
                "cpu_util": used / elapsed}
    finally:
        stop_server(proc, prefix)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--scenario", default="all", choices=["all", "return", "static", "proxy"])
    args = ap.parse_args()
    scenarios = ["return", "static", "proxy"] if args.scenario == "all" else [args.scenario]
    www = Path(tempfile.mkdtemp(prefix="bench-www-"))
    (www / "index.html").write_bytes(b"x" * 1024)
    backend_port = free_port()
    bk_prefix = Path(tempfile.mkdtemp(prefix="bench-backend-"))
    (bk_prefix / "nginx.conf").write_text(
        f"daemon off; worker_processes 1; error_log stderr crit; pid {bk_prefix}/pid;"
        f"{'user root;' if os.geteuid() == 0 else ''}"
        f"events {{}} http {{ access_log off; server {{ listen 127.0.0.1:{backend_port}; "
        f'location / {{ return 200 "hello\\n"; }} }} }}')
    backend = subprocess.Popen(["taskset", "-c", "1", "nginx", "-p", f"{bk_prefix}/", "-c",
                                f"{bk_prefix}/nginx.conf"], start_new_session=True)
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    try:
        wait_port(backend_port)
        for scenario in scenarios:
            results[scenario] = {"nginx": [], "halb": []}
            for _ in range(args.rounds):
                for kind in ("nginx", "halb"):
                    results[scenario][kind].append(
                        measure(kind, scenario, www, backend_port, args.seconds))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(backend.pid, signal.SIGTERM)
        backend.wait(5)
        shutil.rmtree(www, ignore_errors=True)
        shutil.rmtree(bk_prefix, ignore_errors=True)
    print(f"# l7 benchmark: {args.rounds} rounds x {args.seconds}s, wrk -t1 -c50 keep-alive, "
          f"server on CPU0, load on CPU1, {os.cpu_count()} CPUs")
    print_side_by_side(results, "p99 ms", "p99_ms", ".2f")
    return 0


if __name__ == "__main__":
    sys.exit(main())
