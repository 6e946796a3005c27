"""What the benchmarks share: loopback ports, waiting for a listener, a process tree's CPU time
(utime + stime from /proc, in seconds), starting / stopping a pinned process group (nginx or
`halb nginx` on one configuration text), and the halb-beside-nginx table of l7_bench / tls_bench."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


def process_tree(pid: int) -> list[int]:
    """A process and its direct children (nginx's or halb's master and workers)."""
    out = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    out.append(int(entry))
    return out


def cpu_times(pids: list[int]) -> tuple[float, float]:
    """The processes' (user, system) CPU time in seconds (utime, stime from /proc)."""
    user = system = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(stat[11])
            system += int(stat[12])
    return user / TICK, system / TICK


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_times(pids))


def launch(argv: list[str], cpu_list: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["taskset", "-c", cpu_list, *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def start_server(kind: str, text: str, cpu_list: str, tag: str
                 ) -> tuple[subprocess.Popen[bytes], Path]:
    """nginx or `halb nginx` ("nginx" / "halb") on `text` in a fresh prefix (`{prefix}` in the
    text becomes its path), pinned to cpu_list. The caller stops it and removes the prefix."""
    prefix = Path(tempfile.mkdtemp(prefix=f"bench-{tag}{kind}-"))
    (prefix / "nginx.conf").write_text(text.replace("{prefix}", str(prefix)))
    if kind == "nginx":
        argv = ["nginx", "-p", f"{prefix}/", "-c", f"{prefix}/nginx.conf"]
    else:
        argv = [PYTHON, "-m", "halb", "nginx", "-p", f"{prefix}/", "-c", "nginx.conf"]
    return launch(argv, cpu_list), prefix


def stop_server(proc: subprocess.Popen[bytes], prefix: Path) -> None:
    stop(proc)
    shutil.rmtree(prefix, ignore_errors=True)


def print_side_by_side(results: dict[str, dict[str, list[dict[str, float]]]], label: str,
                       key: str, fmt: str) -> None:
    """One row per scenario and server: medians over the rounds of req/s, CPU µs/req and
    `key` (headed `label`, printed with `fmt`), with halb's ratios to nginx from the same
    rounds (median)."""
    print(f"| scenario | server | req/s | server CPU µs/req | {label} | ratio halb/nginx "
          "(req/s, CPU/req) |")
    print("|---|---|---|---|---|---|")
    for scenario, by in results.items():
        med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in by.items()}
        ratios = [(h["rps"] / n["rps"], h["cpu_us_per_req"] / n["cpu_us_per_req"])
                  for h, n in zip(by["halb"], by["nginx"], strict=True)]
        rr = statistics.median(r[0] for r in ratios)
        rc = statistics.median(r[1] for r in ratios)
        for kind in ("nginx", "halb"):
            m = med[kind]
            extra = f"{rr:.2f} , {rc:.2f}" if kind == "halb" else ""
            print(f"| {scenario} | {kind} | {m['rps']:.0f} | {m['cpu_us_per_req']:.1f} | "
                  f"{format(m[key], fmt)} | {extra} |")
