"""2 GiB through the proxy in both directions, in constant memory.

A backend (a subprocess) checksums what it receives and generates what it sends; the client
does the same on its side. While the bytes flow, the worker's resident memory is sampled: it
must stay within a fixed margin of where it started, whatever the size (request bodies beyond
client_body_buffer_size go to an unlinked temp file, responses are read no faster than the
client takes them).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from halbproc import children, free_port, running, wait_port

pytestmark = pytest.mark.slow

GIB = 1 << 30
BLOCK = bytes(range(256)) * 4096  # 1 MiB of a fixed pattern
MARGIN = 64 * 1024 * 1024  # allowed RSS growth of the worker

BACKEND = r'''
import asyncio, sys, zlib
BLOCK = bytes(range(256)) * 4096
class H(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t; self.buf = b""; self.left = None; self.crc = 0; self.n = 0; self.chunked = False
    def data_received(self, d):
        if self.left is None:
            self.buf += d
            if b"\r\n\r\n" not in self.buf:
                return
            head, _, d = self.buf.partition(b"\r\n\r\n")
            line = head.split(b"\r\n")[0].split()
            hdrs = {k.strip().lower(): v.strip() for k, _, v in
                    (h.partition(b":") for h in head.split(b"\r\n")[1:])}
            if line[0] == b"GET":
                n = int(line[1].split(b"=")[1])
                self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
                self.send_left = n
                self.pump()
                return
            self.left = int(hdrs.get(b"content-length", b"0"))
        self.crc = zlib.crc32(d, self.crc); self.n += len(d); self.left -= len(d)
        if self.left <= 0:
            out = b"%d %d" % (self.n, self.crc)
            self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
            self.left = None; self.buf = b""; self.crc = 0; self.n = 0
    def pump(self):
        while self.send_left > 0 and self.t.get_write_buffer_size() < (1 << 20):
            piece = BLOCK[: min(len(BLOCK), self.send_left)]
            self.t.write(piece); self.send_left -= len(piece)
    def resume_writing(self):
        if getattr(self, "send_left", 0) > 0:
            self.pump()
async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(H, "127.0.0.1", int(sys.argv[1]))
    await srv.serve_forever()
asyncio.run(main())
'''


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.05)


def worker_of(master: int) -> int:
    """The worker process (the master listens before it forks its workers)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kids = children(master)
        if kids:
            return kids[0]
        time.sleep(0.02)
    raise AssertionError("no worker process started")


def warm_up(port: int) -> None:
    """One small request first, so the baseline is a worker that has served."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /source?n=10 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass


def read_response(s: socket.socket) -> tuple[bytes, socket.socket]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    return buf, s


@pytest.fixture
def backend(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    script = tmp_path / "backend.py"
    script.write_text(BACKEND)
    proc = subprocess.Popen([sys.executable, str(script), str(port)])
    try:
        wait_port("127.0.0.1", port)
        yield port
    finally:
        proc.kill()
        proc.wait(5)


def proxy_conf(port: int, backend: int, extra: str = "") -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_max_body_size 0;
    upstream up {{ server 127.0.0.1:{backend}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://up; proxy_read_timeout 120s; {extra} }}
    }}
}}
"""


@pytest.mark.parametrize("mode", ["buffered", "unbuffered"])
def test_two_gib_upload_in_constant_memory(tmp_path: Path, backend: int, mode: str) -> None:
    port = free_port()
    extra = "proxy_request_buffering off; proxy_http_version 1.1;" if mode == "unbuffered" else ""
    with running(tmp_path / "halb", proxy_conf(port, backend, extra), port=port) as srv:
        worker = worker_of(srv.pid)
        warm_up(port)
        base = rss(worker)
        sampler = Sampler(worker)
        sampler.start()
        size = 2 * GIB
        crc = 0
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
            sent = 0
            while sent < size:
                s.sendall(BLOCK)
                crc = zlib.crc32(BLOCK, crc)
                sent += len(BLOCK)
            head, _ = read_response(s)
        sampler.stop.set()
        sampler.join()
        assert head.startswith(b"HTTP/1.1 200"), head
        body = head.partition(b"\r\n\r\n")[2]
        assert body == b"%d %d" % (size, crc)
        assert sampler.peak - base < MARGIN, (base, sampler.peak)


def test_two_gib_download_in_constant_memory(tmp_path: Path, backend: int) -> None:
    port = free_port()
    with running(tmp_path / "halb", proxy_conf(port, backend), port=port) as srv:
        worker = worker_of(srv.pid)
        warm_up(port)
        base = rss(worker)
        sampler = Sampler(worker)
        sampler.start()
        size = 2 * GIB
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /source?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % size)
            head, _ = read_response(s)
            got = len(head.partition(b"\r\n\r\n")[2])
            first = head.partition(b"\r\n\r\n")[2]
            crc = zlib.crc32(first)
            while got < size:
                chunk = s.recv(1 << 20)
                assert chunk, got
                crc = zlib.crc32(chunk, crc)
                got += len(chunk)
        sampler.stop.set()
        sampler.join()
        assert head.startswith(b"HTTP/1.1 200")
        assert got == size
        expected = 0
        for _ in range(size // len(BLOCK)):
            expected = zlib.crc32(BLOCK, expected)
        assert crc == expected
        assert sampler.peak - base < MARGIN, (base, sampler.peak)
