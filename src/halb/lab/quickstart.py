"""`halb up`: the quickstart — demo backends and `halb nginx` in front of them, on loopback.

The plan comes from the nginx.conf itself (`plan()`): every server of every upstream block
becomes one `halb backend` named after its position (backend-1, backend-2, ...), the first
`listen` is the URL users open. Only loopback addresses are started: the quickstart never
listens anywhere else. The live summary reads the access log written in the `quickstart`
format ('$msec $status $request_time $upstream_addr': the served-by address last, since a
retried request lists several) — what halb nginx really did, not what the driver believes:

    http://127.0.0.1:8080/  42 req/s  (2xx 42, 5xx 0)  backend-1 34% up | backend-2 33% up | ...

`Summary` (pure) turns log lines into that line over a sliding window; `run()` owns the
processes: start the backends, wait for each to listen, start nginx in the foreground of its
own process group, print the summary every second, and on Ctrl-C / SIGTERM stop nginx then
the backends (TERM, then KILL after a grace period) so nothing is left running.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TextIO

from halb.config.model import NginxConfig

WINDOW = 5.0  # seconds of log the summary averages over


@dataclass(frozen=True)
class Backend:
    name: str
    host: str
    port: int

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Plan:
    url: str
    backends: tuple[Backend, ...]
    access_log: str | None


class PlanError(Exception):
    pass


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plan(config: NginxConfig) -> Plan:
    """What `halb up` starts for this configuration (raises PlanError when it cannot)."""
    if config.http is None:
        raise PlanError("the configuration has no http block")
    listens = [ls for ls in config.listens() if not ls.is_unix]
    if not listens:
        raise PlanError("the configuration listens nowhere")
    first = listens[0]
    host = "127.0.0.1" if first.is_wildcard else first.addr
    if not _loopback(host):
        raise PlanError(f"the quickstart listens on loopback only, not on {first}")
    url = f"http://{host}:{first.port}/" if ":" not in host else f"http://[{host}]:{first.port}/"
    backends: list[Backend] = []
    seen: set[tuple[str, int]] = set()
    for upstream in config.http.upstreams.values():
        if upstream.implicit:
            continue
        for server in upstream.servers:
            for h, p in server.addresses:
                if (h, p) in seen or h.startswith("unix:"):
                    continue
                if not _loopback(h):
                    raise PlanError(f"upstream {upstream.name}: {server.name} is not a loopback "
                                    "address; the quickstart starts backends on loopback only")
                seen.add((h, p))
                backends.append(Backend(f"backend-{len(backends) + 1}", h, p))
    if not backends:
        raise PlanError("no upstream server to start a backend for")
    log_path = None
    for log in config.http.conf.access_log or ():
        if log.path.is_static and not log.path.static.startswith("syslog:"):
            log_path = log.path.static
            break
    return Plan(url, tuple(backends), log_path)


# -- the summary (PURE) ---------------------------------------------------------------------


@dataclass
class Summary:
    """Access-log lines in the quickstart format → one status line over the last WINDOW s."""

    url: str
    backends: tuple[Backend, ...]
    window: float = WINDOW
    _events: deque[tuple[float, int, str]] = field(default_factory=deque)
    total: int = 0

    def feed(self, line: str) -> None:
        parts = line.split(None, 3)
        if len(parts) < 3:
            return
        try:
            when = float(parts[0])
            status = int(parts[1])
        except ValueError:
            return
        upstream = parts[3].strip() if len(parts) > 3 else "-"
        served_by = upstream.replace(" : ", ", ").split(", ")[-1]
        self._events.append((when, status, served_by))
        self.total += 1

    def line(self, now: float, health: dict[str, bool]) -> str:
        while self._events and self._events[0][0] < now - self.window:
            self._events.popleft()
        n = len(self._events)
        ok = sum(1 for _, s, _ in self._events if s < 400)
        errors = sum(1 for _, s, _ in self._events if s >= 500)
        by_addr: dict[str, int] = {}
        for _, _, addr in self._events:
            by_addr[addr] = by_addr.get(addr, 0) + 1
        shares = []
        for b in self.backends:
            share = 100 * by_addr.get(b.addr, 0) / n if n else 0
            state = "up" if health.get(b.name, False) else "DOWN"
            shares.append(f"{b.name} {share:3.0f}% {state}")
        rate = n / self.window
        return (f"{self.url}  {rate:6.1f} req/s  (ok {ok}, 5xx {errors}, total {self.total})  "
                + " | ".join(shares))


# -- processes -------------------------------------------------------------------------------


def healthy(b: Backend, timeout: float = 0.5) -> bool:
    """GET /health on the backend answers 200."""
    try:
        with socket.create_connection((b.host, b.port), timeout=timeout) as s:
            s.sendall(b"GET /health HTTP/1.0\r\nHost: quickstart\r\n\r\n")
            head = s.recv(64)
    except OSError:
        return False
    return head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))


def _stop(procs: Iterable[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
    procs = [p for p in procs if p.poll() is None]
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def _halb(*args: str) -> list[str]:
    return [sys.executable, "-m", "halb", *args]


class _Tail:
    """New complete lines of a file that may not exist yet (and may be rotated): `mark()`
    remembers where the file ends now, so only later lines are read."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._f: TextIO | None = None
        self._ino: int | None = None
        self._start = 0
        self._rest = ""

    def mark(self) -> None:
        if self.path is None:
            return
        try:
            st = os.stat(self.path)
        except OSError:
            return
        self._ino, self._start = st.st_ino, st.st_size

    def lines(self) -> list[str]:
        if self.path is None:
            return []
        try:
            ino = os.stat(self.path).st_ino
        except OSError:
            return []
        if self._f is None or ino != self._ino:
            if self._f is not None:
                self._f.close()
                self._start, self._rest = 0, ""  # rotated: the new file from its start
            self._f = open(self.path, encoding="utf-8", errors="replace")  # noqa: SIM115
            if ino == self._ino:
                self._f.seek(self._start)
            self._ino = ino
        text = self._rest + self._f.read()
        *done, self._rest = text.split("\n")
        return done

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def run(conf_file: str, prefix: str, config: NginxConfig, out: TextIO,
        *, interval: float = 1.0, tty: bool | None = None,
        should_stop: Callable[[], bool] = lambda: False) -> int:
    """Start everything, print the summary until interrupted, stop everything."""
    p = plan(config)
    tty = out.isatty() if tty is None else tty
    procs: list[subprocess.Popen[bytes]] = []
    nginx: subprocess.Popen[bytes] | None = None
    tail = _Tail(p.access_log)
    interrupted = False

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        for b in p.backends:
            procs.append(subprocess.Popen(
                _halb("backend", "--listen", b.addr, "--name", b.name, "-q"),
                stdin=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 15
        waiting = list(p.backends)
        while waiting:
            waiting = [b for b in waiting if not healthy(b, 0.2)]
            dead = [x for x in procs if x.poll() is not None]
            if dead:
                out.write("halb up: a backend exited at start (is its port in use?)\n")
                return 1
            if waiting and time.monotonic() > deadline:
                out.write("halb up: backends not answering: "
                          + ", ".join(b.addr for b in waiting) + "\n")
                return 1
            if waiting:
                time.sleep(0.05)
        tail.mark()  # only this run's requests count
        nginx = subprocess.Popen(_halb("nginx", "-p", prefix, "-c", conf_file,
                                       "-g", "daemon off;"),
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        procs.insert(0, nginx)
        names = ", ".join(f"{b.name} {b.addr}" for b in p.backends)
        out.write(f"halb up: {p.url}  (halb nginx in front of {names}; Ctrl-C stops)\n")
        out.flush()
        summary = Summary(p.url, p.backends)
        last_print = 0.0
        while not should_stop():
            code = nginx.poll()
            if code is not None:
                out.write(f"\nhalb up: halb nginx exited with status {code}\n")
                return code or 1
            for line in tail.lines():
                summary.feed(line)
            now = time.time()
            if now - last_print >= interval:
                health = {b.name: healthy(b) for b in p.backends}
                text = summary.line(now, health)
                out.write(("\r\x1b[2K" + text) if tty else text + "\n")
                out.flush()
                last_print = now
            time.sleep(min(0.2, interval))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, old_term)
        _stop(procs)
        tail.close()
    out.write(("\n" if tty else "") + "halb up: stopped (nginx and "
              f"{len(p.backends)} backends)\n")
    out.flush()
    return 0 if interrupted or should_stop() else 1
