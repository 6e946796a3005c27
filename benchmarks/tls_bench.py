"""nginx vs `halb nginx` over TLS, side by side: handshakes/s and requests/s.

    .venv/bin/python benchmarks/tls_bench.py [--rounds 2] [--seconds 4]

Both servers get the same configuration (one worker, `return 200 "hello"` on `listen ssl`, an
EC P-256 certificate made here with the openssl CLI, nginx 1.22's defaults: TLS 1.2). The
server runs on CPU 0 and wrk (-t1 -c50) on CPU 1, as in l7_bench.py. Scenarios:

- `keepalive`: requests on kept-alive TLS connections (the record layer's cost);
- `handshake`: every request on a new connection (`Connection: close`): a full TLS handshake
  per request, so req/s is handshakes/s.

Ratios are halb / nginx from the same round; the report gives the median over rounds. Loopback
only; every process is stopped at the end; a run takes about rounds x 4 x (seconds + 2) s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
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


def make_cert(d: Path) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / "k.pem"), "-out",
                    str(d / "c.pem"), "-days", "2", "-subj", "/CN=bench.test"],
                   check=True, capture_output=True, timeout=30)


def conf(port: int, certs: Path) -> str:
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""{user} worker_processes 1; daemon off; error_log stderr crit; pid {{prefix}}/pid;
events {{ worker_connections 1024; }}
http {{ access_log off;
  server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {certs}/c.pem;
           ssl_certificate_key {certs}/k.pem; location / {{ return 200 "hello\\n"; }} }} }}
"""


def wrk(port: int, seconds: int, close: bool) -> tuple[float, int]:
    argv = ["taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{seconds}s"]
    if close:
        argv += ["-H", "Connection: close"]
    out = subprocess.run([*argv, f"https://127.0.0.1:{port}/"], capture_output=True,
                         text=True, timeout=seconds + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert m, out
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = (sum(int(x) for x in errors.groups()) if errors else 0) + \
        (int(non2xx.group(1)) if non2xx else 0)
    return float(m.group(1)), bad


def measure(kind: str, certs: Path, seconds: int, close: bool) -> dict[str, float]:
    port = free_port()
    proc, prefix = start_server(kind, conf(port, certs), "0", "tls-")
    try:
        wait_port(port)
        time.sleep(0.5)
        wrk(port, 1, close)  # warm up
        pids = process_tree(proc.pid)
        before = cpu_seconds(pids)
        rps, bad = wrk(port, seconds, close)
        used = cpu_seconds(pids) - before
        return {"rps": rps, "cpu_us_per_req": used / max(1.0, rps * seconds) * 1e6,
                "errors": bad}
    finally:
        stop_server(proc, prefix)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=4)
    args = ap.parse_args()
    certs = Path(tempfile.mkdtemp(prefix="bench-tls-certs-"))
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    try:
        make_cert(certs)
        for scenario, close in (("keepalive", False), ("handshake", True)):
            results[scenario] = {"nginx": [], "halb": []}
            for _ in range(args.rounds):
                for kind in ("nginx", "halb"):
                    results[scenario][kind].append(measure(kind, certs, args.seconds, close))
    finally:
        shutil.rmtree(certs, ignore_errors=True)
    print(f"# TLS benchmark: {args.rounds} rounds x {args.seconds}s, wrk -t1 -c50, TLS 1.2 "
          f"ECDHE-ECDSA (P-256), server on CPU0, load on CPU1, {os.cpu_count()} CPUs")
    print_side_by_side(results, "errors", "errors", ".0f")
    return 0


if __name__ == "__main__":
    sys.exit(main())
