"""proxy_cache end to end with `halb nginx` and two workers: the keys zone is shared (one
upstream request however the requests spread over the workers), proxy_cache_lock holds the
others while one fills, use_stale updating answers from the old copy meanwhile, the cache
survives a reload and a restart (the loader enters the files), a damaged file is a miss (never a crash), and
the cache manager keeps the files within max_size (least recently used first) and drops what
stays unused for `inactive`.

The backend here counts requests per path; its answer's size, delay and X-Accel-Expires come
from the query. Only 127.0.0.1 is used; every process is stopped, also on failure.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import socket
import socketserver
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from halbproc import Server, children, free_port, http_get, running

pytestmark = pytest.mark.slow


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self.lock:
            self.counts[url.path] += 1
            n = self.counts[url.path]
        if "delay" in q:
            time.sleep(float(q["delay"]))
        body = f"{url.path} n={n}\n".encode().ljust(int(q.get("size", "0")), b".")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        if "xae" in q:
            self.send_header("X-Accel-Expires", q["xae"])
        if "hdr" in q:  # a long header: the cache file's head is longer than a first read
            self.send_header("X-Big", "h" * int(q["hdr"]))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


class _Backend(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    server = _Backend(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def conf(port: int, up: int) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 2;
error_log logs/error.log notice;
pid logs/nginx.pid;
events {{ worker_connections 256; }}
http {{
    log_format cs '$pid $upstream_cache_status $uri $status';
    access_log logs/access.log cs;
    proxy_cache_path cache levels=1:2 keys_zone=z:1m max_size=40k;
    proxy_cache_path idle keys_zone=idle:64k inactive=1s;
    proxy_cache_path plain keys_zone=plain:64k;
    proxy_cache_valid 200 1h;
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://127.0.0.1:{up}; proxy_cache z; }}
        location /lock/ {{
            proxy_pass http://127.0.0.1:{up};
            proxy_cache z;
            proxy_cache_key $scheme$proxy_host$uri;
            proxy_cache_lock on;
            proxy_cache_use_stale updating;
        }}
        location /idle/ {{ proxy_pass http://127.0.0.1:{up}; proxy_cache idle; }}
        location /plain/ {{
            proxy_pass http://127.0.0.1:{up};
            proxy_cache plain;
            proxy_buffer_size 16k;
        }}
    }}
}}
"""


def statuses(srv: Server, uri: str, want: int) -> Counter[str]:
    """The cache statuses logged for a URI (waiting for the workers' once-a-second flush)."""
    deadline = time.monotonic() + 3
    while True:
        lines = [ln.split() for ln in srv.log("access.log").splitlines()]
        found = Counter(f[1] for f in lines if len(f) == 4 and f[2] == uri)
        if found.total() >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def pids(srv: Server, uri: str) -> set[str]:
    return {f[0] for f in (ln.split() for ln in srv.log("access.log").splitlines())
            if len(f) == 4 and f[2] == uri}


def burst(srv: Server, path: str, n: int) -> list[tuple[int, bytes]]:
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: http_get(srv.host, srv.port, path, timeout=10),
                             range(n)))


def files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def wait_until(cond: object, timeout: float = 6.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_shared_restart_damaged_and_limits(tmp_path: Path, backend: int) -> None:
    port = free_port()
    text = conf(port, backend)
    with running(tmp_path, text, port=port) as srv:
        # one fill, then HITs from both workers (20 connections spread over them)
        assert srv.get("/s")[1] == b"/s n=1\n"
        for _ in range(20):
            assert srv.get("/s") == (200, b"/s n=1\n")
        # the port listens before the master forks the workers: under load one worker can take
        # the first 20 alone, so ask on until both have answered (their HITs are logged)
        assert wait_until(lambda: srv.get("/s") == (200, b"/s n=1\n")
                          and len(pids(srv, "/s")) == 2, timeout=15), \
            "both workers should have served (reuseport)"
        assert _Handler.counts["/s"] == 1
        served = statuses(srv, "/s", 22).total()  # one MISS, then HITs
        # inactive=1s: the manager (in the master) removes the unused file
        assert srv.get("/idle/x")[0] == 200
        assert len(files(tmp_path / "idle")) == 1
        assert wait_until(lambda: not files(tmp_path / "idle")), "inactive entry not removed"
    # a restart: the loader enters the file again; a temporary file a dead worker left is
    # removed
    (cached,) = files(tmp_path / "cache")
    assert cached.name == __import__("hashlib").md5(
        f"http127.0.0.1:{backend}/s".encode()).hexdigest()
    (cached.parent / (cached.name + ".999.1")).write_bytes(b"partial")
    with running(tmp_path, text, port=port) as srv:
        assert srv.get("/s") == (200, b"/s n=1\n")
        assert _Handler.counts["/s"] == 1
        assert not (cached.parent / (cached.name + ".999.1")).exists()
        # a stored head longer than the first read of a file
        big = srv.get("/plain/hdr?hdr=7000")
        assert srv.get("/plain/hdr?hdr=7000") == big == (200, b"/plain/hdr n=1\n")
        # a damaged file is a miss, and is replaced
        cached.write_bytes(b"garbage" * 10)
        assert srv.get("/s") == (200, b"/s n=2\n")
        assert srv.get("/s") == (200, b"/s n=2\n")
        # a damaged header that claims a 4 GiB head: a miss too, and replaced
        data = bytearray(cached.read_bytes())
        data[8 + 24:8 + 28] = (0xFFFFFFF0).to_bytes(4, "little")  # body_start, after MAGIC
        cached.write_bytes(bytes(data))
        assert srv.get("/s") == (200, b"/s n=3\n")
        assert srv.get("/s") == (200, b"/s n=3\n")
        # max_size=40k: ten 10k answers; the manager evicts the least recently used
        for i in range(10):
            assert srv.get(f"/big/{i}?size=10000")[0] == 200

        def within() -> bool:
            return sum(p.stat().st_size for p in files(tmp_path / "cache")) <= 40 * 1024

        assert wait_until(within), "max_size not enforced"
        assert srv.get("/big/9?size=10000")[1].startswith(b"/big/9 n=1")  # kept (recent)
        assert srv.get("/big/0?size=10000")[1].startswith(b"/big/0 n=2")  # evicted
        # the first server: one MISS, then HITs from both workers; the second: a HIT, then
        # for each damaged file a MISS and a HIT
        assert statuses(srv, "/s", served + 5) == Counter({"MISS": 3, "HIT": served + 2})
        log = srv.log()
    assert "Traceback" not in log and "[alert]" not in log, log
    # the files were entered by nginx's "cache loader process", a child that then exits
    assert re.search(r"cache loader process \d+ exited with code 0", log), log


def test_lock_updating_and_large_hits(tmp_path: Path, backend: int) -> None:
    port = free_port()
    with running(tmp_path, conf(port, backend), port=port) as srv:
        # proxy_cache_lock: one request fills, the others (both workers) wait, then HIT
        answers = burst(srv, "/lock/a?delay=0.6", 6)
        assert answers == [(200, b"/lock/a n=1\n")] * 6
        assert _Handler.counts["/lock/a"] == 1
        # an expired copy (X-Accel-Expires: @1) while a slow refresh runs: UPDATING
        assert srv.get("/lock/u?xae=@1")[1] == b"/lock/u n=1\n"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(http_get, srv.host, srv.port, "/lock/u?xae=@1&delay=0.5", 10)
            assert wait_until(lambda: _Handler.counts["/lock/u"] == 2, 3)
            assert srv.get("/lock/u?xae=@1") == (200, b"/lock/u n=1\n")
            assert slow.result() == (200, b"/lock/u n=2\n")
        # a reload keeps the zone: the new workers find what the old ones stored
        old = set(children(srv.pid))
        srv.signal(signal.SIGHUP)
        assert wait_until(lambda: len(children(srv.pid)) == 2 and
                          not old & set(children(srv.pid))), "the reload did not finish"
        assert srv.get("/lock/a") == (200, b"/lock/a n=1\n")
        assert statuses(srv, "/lock/a", 7) == Counter({"MISS": 1, "HIT": 6})
        assert statuses(srv, "/lock/u", 3) == Counter({"MISS": 1, "EXPIRED": 1, "UPDATING": 1})
        # a 3 MB answer is written to the cache while it streams and served from the file in
        # pieces; clients that leave in the middle of a HIT cost nothing to the others
        first = srv.get("/plain/big?size=3000000")
        assert first[0] == 200 and len(first[1]) == 3_000_000
        assert srv.get("/plain/big?size=3000000") == first
        assert _Handler.counts["/plain/big"] == 1
        for _ in range(4):  # read a little of a HIT, then go away
            with socket.create_connection((srv.host, port), timeout=5) as s:
                s.sendall(b"GET /plain/big?size=3000000 HTTP/1.1\r\nHost: t\r\n\r\n")
                assert s.recv(65536).startswith(b"HTTP/1.1 200 OK")
        assert srv.get("/plain/big?size=3000000") == first
        assert _Handler.counts["/plain/big"] == 1
        log = srv.log()
    assert "Traceback" not in log and "[alert]" not in log, log
