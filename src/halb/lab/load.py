"""The lab's load driver: a steady, bounded HTTP load with one record per request.

Run inside the client namespace (`ip netns exec <prefix>client python -m halb.lab.load ...`):
`--rate` requests per second for `--duration` seconds (both bounded: at most 500/s, 120 s),
each on a new connection (a browser after the previous page: the case a VIP failover is
about), from the `--source` addresses in turn (several clients, for LVS persistence and
ip_hash) to the `--target` ADDR:PORT in turn (two VIPs for the dual master), path `--path`.

Each request gives one JSON line on `--out` (written as it completes, flushed every 0.2 s):

    {"i": 17, "t": <monotonic start>, "lat": 0.0031, "status": 200, "backend": "web2",
     "peer": "198.18.0.11", "src": "198.18.0.201", "target": "198.18.0.100:80"}

`status` is the HTTP status or what went wrong: "refused", "reset", "timeout" (no answer within
`--timeout`), "unreachable", "closed" (no status line), "error:<errno name>". `backend` and
`peer` come from the answer's X-Backend / X-Backend-Peer headers (halb backend: the node that
answered and the proxy that asked it). The last line is {"done": true, "scheduled": N}: a
request scheduled but never recorded is a lost one. The time base is CLOCK_MONOTONIC, the same
in every process of the host, so the controller can line records up with its own events.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import sys
import time
from typing import IO, Any

MAX_RATE = 500.0
MAX_DURATION = 120.0


def parse_answer(data: bytes) -> tuple[int | str, str | None, str | None]:
    """(status, X-Backend, X-Backend-Peer address) of a raw HTTP response."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return "closed", None, None
    backend = peer = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        if key == "x-backend":
            backend = value.strip()
        elif key == "x-backend-peer":
            peer = value.strip().rsplit(":", 1)[0]
    return int(parts[1]), backend, peer


def _error(e: OSError) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, ConnectionResetError | BrokenPipeError):
        return "reset"
    if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable"
    return f"error:{errno.errorcode.get(e.errno or 0, str(e.errno))}"


async def request(i: int, target: str, src: str | None, path: str, timeout: float
                  ) -> dict[str, Any]:
    host, port = target.rsplit(":", 1)
    t0 = time.monotonic()
    rec: dict[str, Any] = {"i": i, "t": t0, "src": src, "target": target,
                           "backend": None, "peer": None}
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, int(port), local_addr=(src, 0) if src else None)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: halb-lab\r\n"
                         "Connection: close\r\n\r\n".encode())
            data = await reader.read(-1)
        rec["status"], rec["backend"], rec["peer"] = parse_answer(data)
    except TimeoutError:
        rec["status"] = "timeout"
    except OSError as e:
        rec["status"] = _error(e)
    finally:
        if writer is not None:
            writer.close()
    rec["lat"] = round(time.monotonic() - t0, 6)
    return rec


async def drive(rate: float, duration: float, targets: list[str], sources: list[str],
                path: str, timeout: float, out: IO[str]) -> int:
    """Run the load; returns the number of requests scheduled."""
    loop = asyncio.get_running_loop()
    count = int(rate * duration)
    start = loop.time()
    pending: set[asyncio.Task[dict[str, Any]]] = set()
    buffered: list[str] = []
    last_flush = start

    def done(task: asyncio.Task[dict[str, Any]]) -> None:
        pending.discard(task)
        if not task.cancelled() and task.exception() is None:
            buffered.append(json.dumps(task.result()))

    for i in range(count):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        src = sources[i % len(sources)] if sources else None
        task = asyncio.ensure_future(request(i, targets[i % len(targets)], src, path, timeout))
        pending.add(task)
        task.add_done_callback(done)
        if loop.time() - last_flush > 0.2 and buffered:
            out.write("\n".join(buffered) + "\n")
            out.flush()
            buffered.clear()
            last_flush = loop.time()
    if pending:
        await asyncio.wait(set(pending), timeout=timeout + 2)
    if buffered:
        out.write("\n".join(buffered) + "\n")
    out.write(json.dumps({"done": True, "scheduled": count}) + "\n")
    out.flush()
    return count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m halb.lab.load")
    p.add_argument("--target", action="append", required=True, metavar="ADDR:PORT")
    p.add_argument("--source", action="append", default=[], metavar="ADDR")
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--path", default="/")
    p.add_argument("--out", default="-")
    a = p.parse_args(argv)
    if not 0 < a.rate <= MAX_RATE or not 0 < a.duration <= MAX_DURATION:
        p.error(f"--rate must be in (0, {MAX_RATE:g}] and --duration in (0, {MAX_DURATION:g}]")
    from halb.runtime.loop import new_event_loop

    out = sys.stdout if a.out == "-" else open(a.out, "w")  # noqa: SIM115 - closed below
    loop = new_event_loop()
    try:
        loop.run_until_complete(drive(a.rate, a.duration, a.target, a.source, a.path,
                                      a.timeout, out))
    finally:
        loop.close()
        if out is not sys.stdout:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
