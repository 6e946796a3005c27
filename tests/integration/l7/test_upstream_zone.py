"""`zone NAME [SIZE]` with two worker processes: what the zone makes global, end to end.

`halb nginx` (and, where installed, the real nginx on the same configuration, as the oracle)
runs `worker_processes 2` in front of a slow loopback backend written here (asyncio, answers
after a delay, counts the requests it is serving at once):

- max_conns=1 with a zone: across BOTH workers at most one request is at the backend; every
  other concurrent request gets nginx's 502 ("no live upstreams"). Without the zone the limit
  is per worker: up to two.
- max_fails=2 with a zone: the failures the workers see add up, so a dead peer costs two
  failed connects in total; without the zone each worker pays its own two.

The access log (`$pid $status $uri`) says which worker served what. Only 127.0.0.0/8 is used;
every process started here is stopped, also on failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from halbproc import (
    LoopBackends,
    Server,
    children,
    free_port,
    http_get,
    running,
    stop,
    wait_port,
)

pytestmark = pytest.mark.slow

NGINX = "/usr/sbin/nginx"
KINDS = ["halb", pytest.param("nginx", marks=[
    pytest.mark.peer,
    pytest.mark.skipif(not os.access(NGINX, os.X_OK), reason="nginx is not installed")])]


class SlowBackend(LoopBackends):
    """HTTP/1.x on 127.0.0.1: every request is answered after `delay` seconds; counts the
    requests in progress and the most seen at once."""

    def __init__(self, delay: float) -> None:
        super().__init__([free_port()])
        self.port = self.ports[0]
        self.delay = delay
        self.now = 0
        self.most = 0
        self.served = 0
        self.workers: Counter[str] = Counter()  # X-Worker of the requests that arrived

    def reset(self) -> None:
        self.most = self.served = 0
        self.workers.clear()

    async def _serve(self, port: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        m = re.search(rb"(?im)^x-worker:\s*(\d+)", head)
        self.workers[m.group(1).decode() if m else "?"] += 1
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(self.delay)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.now -= 1
            self.served += 1
            writer.close()


def conf(port: int, upstream: str) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 2;
error_log logs/error.log notice;
pid logs/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    log_format w '$pid $status $uri';
    access_log logs/access.log w;
    upstream u {{
        {upstream}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://u;
            proxy_set_header X-Worker $pid;
            proxy_connect_timeout 5s;
        }}
    }}
}}
"""


@contextlib.contextmanager
def serve(kind: str, tmp: Path, body: str) -> Iterator[Server]:
    port = free_port()
    text = conf(port, body)
    if kind == "halb":
        with running(tmp, text, port=port) as srv:
            yield srv
        return
    (tmp / "logs").mkdir(parents=True, exist_ok=True)
    srv = Server(tmp, port)
    srv.write_conf(text)
    srv.argv = [NGINX, "-p", f"{tmp}/", "-c", "nginx.conf", "-g", "daemon off;"]
    with open(tmp / "stderr.log", "ab") as err:
        srv.proc = subprocess.Popen(srv.argv, stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)
    try:
        wait_port(srv.host, port)
        yield srv
    finally:
        stop(srv)


def access(srv: Server) -> list[tuple[str, int, str]]:
    """(worker pid, status, uri) per request (read once the server has stopped)."""
    out = []
    for line in srv.log("access.log").splitlines():
        pid, status, uri = line.split(" ", 2)
        out.append((pid, int(status), uri))
    return out


def burst(srv: Server, n: int, tag: str) -> list[int]:
    """n requests at once, each on its own connection; their statuses."""
    def one(i: int) -> int:
        try:
            return http_get(srv.host, srv.port, f"/{tag}/{i}", timeout=10)[0]
        except OSError:
            return -1

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("zone", [True, False], ids=["zone", "no-zone"])
def test_max_conns(kind: str, zone: bool, tmp_path: Path) -> None:
    with SlowBackend(delay=0.8) as backend:
        body = ("zone z 64k;\n" if zone else "") + \
            f"server 127.0.0.1:{backend.port} max_conns=1;"
        rounds: list[tuple[int, Counter[int]]] = []
        with serve(kind, tmp_path, body) as srv:
            for r in range(6):
                backend.reset()
                statuses = burst(srv, 24, f"r{r}")
                rounds.append((backend.most, Counter(statuses)))
                if not zone and backend.most == 2 and r >= 1:
                    break
            logs = srv.log()
        served = access(srv)
    limit = 1 if zone else 2
    for most, statuses in rounds:
        assert set(statuses) <= {200, 502}, statuses
        assert statuses[200] >= 1 and statuses[502] >= 1, statuses
        # what reached the backend is what was answered 200, the rest never left the proxy
        # (nginx and halb alike: 1 x 200 + 23 x 502 with the zone, 2 + 22 without when both
        # workers take part; a slow machine may spread a burst over two delays)
        assert statuses[200] <= 2 * limit
        assert most <= limit
        if most == 2:
            assert statuses[200] == 2
    workers = {pid for pid, _, _ in served}
    assert len(workers) == 2, "the bursts reached only one worker: the test proves nothing"
    if zone:
        assert max(most for most, _ in rounds) == 1
        # both workers answered 502 while the other one's request held the only slot
        assert {pid for pid, status, _ in served if status == 502} == workers
    else:
        assert max(most for most, _ in rounds) == 2  # one at the backend per worker
    assert "no live upstreams while connecting to upstream" in logs


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("zone", [True, False], ids=["zone", "no-zone"])
def test_max_fails_add_up_across_workers(kind: str, zone: bool, tmp_path: Path) -> None:
    dead = free_port()  # nothing listens there: connect() is refused at once
    with SlowBackend(delay=0.0) as backend:
        opts = "max_fails=2 fail_timeout=60s"
        body = ("zone z 64k;\n" if zone else "") + \
            f"server 127.0.0.1:{dead} {opts};\nserver 127.0.0.1:{backend.port} {opts};"
        with serve(kind, tmp_path, body) as srv:
            statuses: list[int] = []
            # two clients, one request at a time each: both workers get requests, and no two
            # attempts on the dead peer are ever in flight together
            for r in range(12):
                statuses += burst(srv, 2, f"f{r}")
                time.sleep(0.02)
            log = srv.log()
        served = access(srv)
    assert statuses == [200] * len(statuses)  # the failed attempt went on to the live peer
    failures = Counter(m.group(1) for m in re.finditer(
        r"\[error\] (\d+)#\d+: \*\d+ connect\(\) failed \(111: Connection refused\) while "
        r"connecting to upstream", log))
    per_worker = Counter(pid for pid, _, _ in served)
    assert len(per_worker) == 2, f"only one worker served: {per_worker}"
    if zone:
        assert sum(failures.values()) == 2, failures  # once failed, failed for every worker
    else:
        # each worker's round robin: a (fails), b, a (fails again): then it is marked failed
        for pid, n in per_worker.items():
            assert failures[pid] == min(2, (n + 1) // 2), (failures, per_worker)
        assert sum(failures.values()) > 2 or min(per_worker.values()) < 3


CONNECT_FAILED = re.compile(r"\[error\] (\d+)#\d+: \*\d+ connect\(\) failed \(111: ")


@pytest.mark.parametrize("kind", KINDS)
def test_a_reload_starts_with_a_fresh_zone(kind: str, tmp_path: Path) -> None:
    """nginx does not reuse an upstream zone across a reload (noreuse): the new workers try
    the dead peer again and count its failures from zero."""
    dead = free_port()
    with SlowBackend(delay=0.0) as backend:
        opts = "max_fails=2 fail_timeout=60s"
        body = f"zone z 64k;\nserver 127.0.0.1:{dead} {opts};\n" \
            f"server 127.0.0.1:{backend.port} {opts};"
        with serve(kind, tmp_path, body) as srv:
            for r in range(6):
                assert burst(srv, 2, f"a{r}") == [200, 200]
            assert len(CONNECT_FAILED.findall(srv.log())) == 2
            old = set(children(srv.pid))
            srv.signal(signal.SIGHUP)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                now = set(children(srv.pid))
                if len(now) == 2 and not now & old:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the new generation did not replace the old one")
            for r in range(6):
                assert burst(srv, 2, f"b{r}") == [200, 200]
            log = srv.log()
    after = [pid for pid in CONNECT_FAILED.findall(log) if int(pid) in now]
    assert len(after) == 2  # the new generation's own two failures, nothing carried over
