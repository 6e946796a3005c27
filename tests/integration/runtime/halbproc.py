"""Start `halb nginx` (or nginx) as a real process for tests, and always stop it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port}")


def children(pid: int) -> list[int]:
    """Direct children of a process (its workers)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return sorted(out)


def http_get(host: str, port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, bytes]:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


class LoopBackends:
    """Test backends on 127.0.0.1:`ports`, served by an asyncio loop in a thread: a subclass
    answers in `_serve(port, reader, writer)`. The with-block starts them; its end closes the
    listeners and cancels the answers still pending (e.g. ones made to hang)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.servers: list[asyncio.base_events.Server] = []

    def __enter__(self) -> Self:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _serve(self, port: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        for port in self.ports:
            self.servers.append(self.loop.run_until_complete(asyncio.start_server(
                lambda r, w, port=port: self._serve(port, r, w), "127.0.0.1", port)))
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            for s in self.servers:
                s.close()
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            if tasks:
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.close()


@dataclass
class Server:
    prefix: Path
    port: int
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    argv: list[str] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def write_conf(self, body: str) -> None:
        self.conf.write_text(body)

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def get(self, path: str = "/") -> tuple[int, bytes]:
        return http_get(self.host, self.port, path)

    def log(self, name: str = "error.log") -> str:
        p = self.prefix / "logs" / name
        return p.read_text() if p.exists() else ""


def base_conf(port: int, body: str = "", workers: int = 2, extra_main: str = "",
              host: str = "127.0.0.1") -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes {workers};
error_log logs/error.log notice;
pid logs/nginx.pid;
{extra_main}
events {{ worker_connections 1024; }}
http {{
    access_log logs/access.log;
    server {{
        listen {host}:{port};
        location / {{ return 200 "generation 1\\n"; }}
        {body}
    }}
}}
"""


@contextlib.contextmanager
def running(tmp: Path, conf: str | None = None, daemon_off: bool = True,
            port: int | None = None) -> Iterator[Server]:
    port = port or free_port()
    (tmp / "logs").mkdir(parents=True, exist_ok=True)
    srv = Server(tmp, port)
    srv.write_conf(conf if conf is not None else base_conf(port))
    argv = [sys.executable, "-m", "halb", "nginx", "-p", f"{tmp}/", "-c", "nginx.conf"]
    if daemon_off:
        argv += ["-g", "daemon off;"]
    srv.argv = argv
    with open(tmp / "stderr.log", "ab") as err:
        srv.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)
    try:
        wait_port(srv.host, port)
        yield srv
    finally:
        stop(srv)


def stop(srv: Server) -> None:
    proc = srv.proc
    if proc is None:
        return
    pids = [proc.pid, *children(proc.pid)]
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    for pid in pids:  # workers must be gone too
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
