"""stub_status with two workers: the counters are the sum of both, a worker killed and replaced
keeps what it counted (the master folds its slot into the base), and a reload (HUP) does not
reset them (nginx's counters live in shared memory made once)."""

from __future__ import annotations

import os
import re
import signal
import socket
import time

from halbproc import children, free_port, http_get, running

CONF = """{user}worker_processes 2;
error_log logs/error.log notice;
pid logs/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok\\n"; }}
        location = /status {{ stub_status; }}
    }}
}}
"""


def status(port: int) -> tuple[int, int, int, int]:
    code, body = http_get("127.0.0.1", port, "/status")
    assert code == 200
    m = re.fullmatch(rb"Active connections: (\d+) \nserver accepts handled requests\n"
                     rb" (\d+) (\d+) (\d+) \nReading: \d+ Writing: \d+ Waiting: \d+ \n", body)
    assert m, body
    active, accepts, handled, requests = map(int, m.groups())
    return active, accepts, handled, requests


def settled(port: int) -> tuple[int, int, int, int]:
    """status() once nothing else is being accepted: the connection that found the port
    open (halbproc.running) may wait in the listen queue until a worker has started, and is
    counted when one accepts it. Five reads in a row (spread over both workers' sockets) that
    differ by only their own accepts."""
    prev = status(port)
    steady = 0
    for _ in range(100):
        cur = status(port)
        steady = steady + 1 if cur[1] - prev[1] == 1 else 0
        if steady == 4:
            return cur
        prev = cur
        time.sleep(0.02)
    raise AssertionError("the counters did not settle")


def wait_for(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_counters_are_shared_and_survive_a_dead_worker_and_a_reload(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    with running(tmp_path, CONF.format(user=user, port=port), port=port) as srv:
        wait_for(lambda: len(children(srv.pid)) == 2)
        _, a0, h0, r0 = settled(port)
        for _ in range(30):  # a connection each: both workers get some
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                while s.recv(4096):
                    pass
        _, a1, h1, r1 = status(port)
        assert (a1 - a0, h1 - h0, r1 - r0) == (31, 31, 31)  # whichever worker answers

        victim = children(srv.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in children(srv.pid) and len(children(srv.pid)) == 2)
        active, a2, _, r2 = status(port)
        assert (a2 - a1, r2 - r1) == (1, 1)  # the dead worker's counts were kept
        assert active == 1

        srv.signal(signal.SIGHUP)
        wait_for(lambda: "reconfiguring" in srv.log() and len(children(srv.pid)) == 2)
        time.sleep(0.3)
        _, a3, _, r3 = status(port)
        assert a3 > a2 and r3 > r2  # not reset by the reload
