"""Log rotation the seeds' way: seed 002's cut_my_log.sh (mv access.log and error.log aside,
`kill -USR1 $(cat nginx.pid)`) run unchanged against halb, except for its two path variables.

Two workers, a buffered access log (what is buffered at the signal goes to the old file): every
request is logged exactly once, those before the rotation in the moved file, those after it in
the new one; then the same with `halb nginx -s reopen`. The buffers reach the files when halb
exits.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from halbproc import children, running

SEEDS = Path(__file__).resolve().parents[3] / ".." / "shared" / "seeds"
SEED_DIRS = [SEEDS, Path("/work/shared/seeds")]


def seed_script() -> str:
    for d in SEED_DIRS:
        for f in sorted(d.glob("002_*.txt")) if d.is_dir() else ():
            text = f.read_text()
            m = re.search(r"cut_my_log\.sh.*?```shell\n(.*?)```", text, re.S)
            if m:
                return m.group(1)
    pytest.skip("seed 002 (cut_my_log.sh) is not available")


def adapt(script: str, logs: Path) -> str:
    """Only the two paths change: the seed's LOG_PATH and PID point at this test's logs."""
    out = re.sub(r'(?m)^LOG_PATH=.*$', f'LOG_PATH="{logs}"', script)
    out = re.sub(r"(?m)^PID=.*$", f"PID={logs}/nginx.pid", out)
    assert out.count(str(logs)) == 2 and "kill -USR1 `cat $PID`" in out
    return out


CONF = """{user}worker_processes 2;
error_log logs/error.log notice;
pid logs/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log logs/access.log combined buffer=32k;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def hit(port: int, marks: range) -> None:
    for i in marks:  # a connection each: SO_REUSEPORT spreads them over both workers
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(f"GET /r?m={i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            while s.recv(4096):
                pass


def marks(path: Path) -> list[int]:
    return sorted(int(m) for m in re.findall(r"GET /r\?m=(\d+) ", path.read_text()))


def wait_for(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def reopened(path: Path, workers: list[int]) -> bool:
    text = path.read_text() if path.exists() else ""
    return all(re.search(rf"\[notice\] {w}#{w}: reopening logs", text) for w in workers)


def test_cut_my_log_rotates_without_losing_a_line(tmp_path: Path) -> None:
    from halbproc import free_port

    port = free_port()
    logs = tmp_path / "logs"
    user = "user root;\n" if os.geteuid() == 0 else ""
    script = tmp_path / "cut_my_log.sh"
    script.write_text(adapt(seed_script(), logs))
    with running(tmp_path, CONF.format(user=user, port=port), port=port) as srv:
        wait_for(lambda: len(children(srv.pid)) == 2)  # (the port listens before the fork)
        workers = children(srv.pid)
        hit(port, range(0, 40))
        assert not (logs / "access.log").read_text()  # buffered (32k)
        subprocess.run(["bash", str(script)], check=True, timeout=10)
        moved = [p for p in logs.iterdir() if p.name.startswith("access.")
                 and p.name != "access.log"]
        moved_err = [p for p in logs.iterdir() if p.name.startswith("error.")
                     and p.name != "error.log"]
        assert len(moved) == 1 and len(moved_err) == 1
        # the master makes the new files when it takes the signal (the script does not wait
        # for that); each worker says so in the file it leaves
        wait_for(lambda: (logs / "access.log").exists() and (logs / "error.log").exists())
        wait_for(lambda: reopened(moved_err[0], workers))
        assert marks(moved[0]) == list(range(0, 40))  # flushed into the old file on reopen
        hit(port, range(40, 80))

        # the same with the nginx command line: -s reopen
        os.rename(logs / "access.log", logs / "access.2.log")
        os.rename(logs / "error.log", logs / "error.2.log")
        subprocess.run([sys.executable, "-m", "halb", "nginx", "-p", f"{tmp_path}/", "-c",
                        "nginx.conf", "-s", "reopen"], check=True, timeout=20)
        wait_for(lambda: reopened(logs / "error.2.log", workers))
        hit(port, range(80, 90))
        srv.signal(signal.SIGQUIT)  # graceful exit: the buffers are written
        assert srv.proc is not None
        srv.proc.wait(timeout=10)
    assert marks(moved[0]) == list(range(0, 40))
    assert marks(logs / "access.2.log") == list(range(40, 80))
    assert marks(logs / "access.log") == list(range(80, 90))
    # nothing was lost in the error logs either: the master's lines follow the moves
    assert "signal 10 (SIGUSR1) received" in moved_err[0].read_text()
    assert "signal 10 (SIGUSR1) received" in (logs / "error.2.log").read_text()
    assert "exit" in (logs / "error.log").read_text()
