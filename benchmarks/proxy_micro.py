"""The proxy's per-request Python, measured without sockets: calls and CPU µs per request.

    .venv/bin/python benchmarks/proxy_micro.py [--requests 20000] [--rounds 3]
                                               [--src PATH ...] [--profile tottime]

Twenty HttpConnections (fed by fake client transports) proxy keep-alive GETs through
proxy_pass to an upstream of two peers with `keepalive 32`: in each round every client sends a
request, the loop turns once (what is held to the end of an iteration goes), every upstream
connection that got a request answers, and the loop turns again, as a worker under load
handles many requests per iteration. What is left is the Python that halb runs for each
proxied request and its share of two loop iterations (no syscalls; the access log, combined,
is written to a temporary file once per iteration as in the server). Reports per request:

- calls: every function call cProfile sees (Python functions and builtins), and the Python ones
  alone; bytecodes: the Python bytecodes executed (sys.settrace opcode events, 200 requests,
  the harness's own included): deterministic, the figures to compare while the machine is busy;
- µs: CPU time (time.process_time) per request over --requests requests.

With several --src (source trees holding a `halb` package, e.g. an export of an older commit:
`git archive COMMIT src | tar -x -C /tmp/base`), each round runs every tree in turn, in a child
process, so the CPU figures are measured alternately in one run; the medians are printed.
--profile KEY prints the top of cProfile's table for the first tree (sorted by KEY).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """events {{}} http {{ access_log {log} combined; keepalive_requests 100000000;
 upstream b {{ server 127.0.0.1:19101; server 127.0.0.1:19102; keepalive 32;
              keepalive_requests 100000000; }}
 server {{ listen 127.0.0.1:9; location / {{ proxy_pass http://b; proxy_http_version 1.1;
          proxy_set_header Connection ""; }} }} }}"""
REQUEST = (b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:18400\r\nUser-Agent: wrk\r\n"
           b"Accept: */*\r\n\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 21 Nov 2026 06:11:07 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 8\r\nConnection: keep-alive\r\n\r\n"
            b"backend\n")
BATCH = 20  # client connections, each with a request per round of two loop iterations


def _fakes() -> Any:
    """This repository's halb/testing/fakes.py, loaded by its path: the trees under --src may be
    older than that module (it imports nothing of halb)."""
    spec = importlib.util.spec_from_file_location(
        "halb_micro_fakes", ROOT / "src" / "halb" / "testing" / "fakes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child(requests: int, profile: str) -> dict[str, float]:
    """Run in a process whose sys.path starts with the tree under test."""
    import cProfile
    import pstats

    from halb.config.nginx import load_text
    from halb.l7.http import HttpConnection
    from halb.l7.log import ErrorLogger
    from halb.l7.server import HttpServer
    from halb.l7.upstream import UpstreamConnection
    from halb.runtime.loop import new_event_loop

    FakeTransport = _fakes().FakeTransport
    tmp = tempfile.mkdtemp(prefix="halb-micro-")
    log = os.path.join(tmp, "access.log")
    cfg = load_text(CONFIG.format(log=log))
    loop = new_event_loop()  # uvloop, as the server runs
    srv = HttpServer(cfg, loop, ErrorLogger(()), 0)
    group = srv.upstreams.get("b")
    assert group is not None
    ups = []
    for peer in group.balancer.peers:
        for _ in range(BATCH // 2 + 1):
            up = UpstreamConnection(peer, group)
            ut = FakeTransport()
            up.connection_made(ut)  # type: ignore[arg-type]
            ups.append((up, ut))
            group.put_idle(up)
    clients = []
    for i in range(BATCH):
        conn = HttpConnection(srv, i + 1)
        client = FakeTransport()
        conn.connection_made(client)  # type: ignore[arg-type]
        clients.append((conn, client))

    def run(n: int) -> None:
        """n // BATCH rounds, in the running loop: in one iteration every client sends a
        request; in the next, every upstream connection that got one answers (what is held
        to the end of an iteration goes in between, as in the server)."""
        left = n // BATCH
        asking = True
        failed: list[str] = []

        def step() -> None:
            nonlocal left, asking
            if asking:
                for conn, _client in clients:
                    conn.data_received(REQUEST)
            else:
                answered = 0
                for up, ut in ups:
                    if up.owner is not None:
                        ut.out.clear()
                        up.data_received(RESPONSE)
                        answered += 1
                if answered != BATCH:
                    failed.append(f"{answered} upstream connections got a request")
                    loop.stop()
                    return
                left -= 1
                if not left:
                    loop.call_soon(loop.stop)  # (after what this iteration held)
                    return
            asking = not asking
            loop.call_soon(step)

        loop.call_soon(step)
        loop.run_forever()
        if failed:
            raise RuntimeError(failed[0])

    run(200)
    answer = b"".join(b"".join(client.out) for _conn, client in clients)
    if not answer.startswith(b"HTTP/1.1 200 OK\r\n") or not answer.endswith(b"backend\n") \
            or answer.count(b"HTTP/1.1 200 OK") != 200:
        raise RuntimeError(f"unexpected answer: {answer[:300]!r}")

    def clear() -> None:
        for _conn, client in clients:
            client.out.clear()

    clear()
    t0 = time.process_time()
    run(requests)
    cpu = time.process_time() - t0
    if sum(len(client.out) for _conn, client in clients) < requests:
        raise RuntimeError("requests were not all answered")
    clear()
    n_prof = min(requests, 5000)
    prof = cProfile.Profile()
    prof.enable()
    run(n_prof)
    prof.disable()
    stats = pstats.Stats(prof)
    total = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
    python = sum(v[1] for k, v in stats.stats.items()  # type: ignore[attr-defined]
                 if k[0] != "~")
    if profile:
        stats.sort_stats(profile).print_stats(40)
    n_ops = 200
    ops = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal ops
        if event == "call":
            frame.f_trace_opcodes = True
        elif event == "opcode":
            ops += 1
        return tracer

    sys.settrace(tracer)
    try:
        run(n_ops)
    finally:
        sys.settrace(None)
    with open(log, "rb") as f:
        lines = f.read().count(b"\n")
    if lines != 200 + requests + n_prof + n_ops:
        raise RuntimeError(f"{lines} access log lines")
    os.unlink(log)
    os.rmdir(tmp)
    return {"us": cpu / requests * 1e6, "calls": total / n_prof, "py_calls": python / n_prof,
            "ops": ops / n_ops}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--src", action="append", help="a source tree (default: this repo's src)")
    ap.add_argument("--profile", default="", help="print cProfile's top, sorted by this key")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.requests, args.profile)))
        return 0
    srcs = [str(Path(s).resolve()) for s in (args.src or [str(ROOT / "src")])]
    rows: dict[str, list[dict[str, float]]] = {s: [] for s in srcs}
    for rnd in range(args.rounds):
        for i, src in enumerate(srcs):
            cmd = [sys.executable, __file__, "--child", "--requests", str(args.requests)]
            if args.profile and rnd == 0 and i == 0:
                cmd += ["--profile", args.profile]
            env = {**os.environ, "PYTHONPATH": src}
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True,
                                 timeout=600).stdout
            lines = out.strip().splitlines()
            if len(lines) > 1:
                print("\n".join(lines[:-1]))
            rows[src].append(json.loads(lines[-1]))
    print(f"# proxy_micro: {args.rounds} rounds x {args.requests} keep-alive proxied GETs, "
          "fake transports (no syscalls), access_log combined")
    print(f"{'source tree':<40} {'calls/req':>10} {'py calls/req':>13} {'bytecodes/req':>14} "
          f"{'cpu us/req':>11}")
    for src, rs in rows.items():
        us = statistics.median(r["us"] for r in rs)
        print(f"{src[-40:]:<40} {rs[0]['calls']:>10.1f} {rs[0]['py_calls']:>13.1f} "
              f"{rs[0]['ops']:>14.0f} {us:>11.1f}  (rounds: {', '.join(format(r['us'], '.1f') for r in rs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
