"""nginx Plus's `health_check` and `slow_start=` in `halb nginx`, end to end on loopback.

Backends written here (asyncio, one thread, 127.0.0.1 only) answer client requests with their
port and the check URI /hc in a mode the test switches: ok (200), 500, garbage (not HTTP),
hang (never answers) or slow (200 after a delay). `halb nginx` runs two workers; worker 0 is the
one checker and the other worker learns the outcome through the upstream zone, so the access
log's pids show that both skip an unhealthy server.

- servers failing their check (500, garbage, a hang bounded by proxy_read_timeout) get no
  client request, from the very start with `mandatory`; once one recovers it gets requests
  again; nothing the bad servers did disturbs the workers;
- slow_start: a recovered server's share grows over the ramp (measured in time windows,
  generous bounds);
- `mandatory persistent` keeps servers "up" across a reload, where plain `mandatory` makes
  them wait for their first check again (client requests meanwhile: 502).

The real nginx (open source) has neither directive, so there is no side-by-side here. Every
process and server started here is stopped, also on failure.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from halbproc import LoopBackends, Server, base_conf, children, free_port, http_get, running

pytestmark = pytest.mark.slow


class Backends(LoopBackends):
    """Several HTTP backends on 127.0.0.1 in one thread; `mode[port]` decides /hc."""

    def __init__(self, n: int) -> None:
        super().__init__([free_port() for _ in range(n)])
        self.mode = dict.fromkeys(self.ports, "ok")
        self.delay = 0.0  # for mode "slow"
        self.served: Counter[int] = Counter()  # client requests (not /hc) per port
        self.checks: Counter[int] = Counter()

    async def _serve(self, port: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            body = b"%d\n" % port
            status = 200
            if head.split(b" ", 2)[1] == b"/hc":
                self.checks[port] += 1
                mode = self.mode[port]
                if mode == "garbage":
                    writer.write(b"\x00\xffnot http at all\r\n\r\n")
                    return
                if mode == "hang":
                    await asyncio.sleep(30)
                    return
                if mode == "slow":
                    await asyncio.sleep(self.delay)
                status = 500 if mode == "500" else 200
            else:
                self.served[port] += 1
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                         % (status, len(body)) + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                IndexError, asyncio.CancelledError):  # cancelled: the hanging ones at the end
            pass
        finally:
            writer.close()


def conf(port: int, servers: str, location: str, generation: int = 1,
         master: bool = True) -> str:
    text = base_conf(port, workers=2, extra_main="" if master else "master_process off;")
    text = text.replace("access_log logs/access.log;", "log_format p '$pid $status';\n"
                        "    access_log logs/access.log p;\n"
                        f"    upstream u {{ zone z 64k; {servers} }}")
    return text.replace('location / { return 200 "generation 1\\n"; }',
                        f"location / {{ proxy_pass http://u; {location} }}\n"
                        f'        location = /gen {{ return 200 "{generation}"; }}')


@contextmanager
def halb(tmp: Path, servers: str, location: str, master: bool = True) -> Iterator[Server]:
    port = free_port()
    with running(tmp, conf(port, servers, location, master=master), port=port) as srv:
        yield srv


def wait_for(what: Callable[[], bool], timeout: float = 15.0, why: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting: {why}")
        time.sleep(0.02)


def logged(srv: Server, pattern: str, count: int = 1) -> Callable[[], bool]:
    return lambda: len(re.findall(pattern, srv.log())) >= count


def health(port: int, healthy: bool) -> str:
    word = "healthy" if healthy else "unhealthy"
    return rf'peer is {word} while [^\n]*of peer 127\.0\.0\.1:{port} in upstream "u"'


def get(srv: Server) -> int:
    try:
        return http_get(srv.host, srv.port, "/", timeout=5)[0]
    except OSError:
        return -1


def generation(srv: Server) -> bytes:
    try:
        return http_get(srv.host, srv.port, "/gen", timeout=5)[1]
    except OSError:
        return b""


def pids(srv: Server) -> set[str]:
    return {line.split()[0] for line in srv.log("access.log").splitlines()}


def test_failing_servers_get_no_requests_until_they_recover(tmp_path: Path) -> None:
    with Backends(4) as be:
        good, bad, garbage, hang = be.ports
        be.mode.update({bad: "500", garbage: "garbage", hang: "hang"})
        servers = " ".join(f"server 127.0.0.1:{p};" for p in be.ports)
        with halb(tmp_path, servers, "proxy_read_timeout 500ms; "
                  "health_check interval=200ms uri=/hc mandatory;") as srv:
            wait_for(lambda: len(children(srv.pid)) == 2, why="two workers")
            workers = children(srv.pid)
            wait_for(logged(srv, health(good, True)), why="the good server's first check")
            statuses = Counter(get(srv) for _ in range(40))
            assert statuses == {200: 40}
            assert set(be.served) == {good}  # never the others, not even while "checking"
            for port in (bad, garbage, hang):
                wait_for(logged(srv, health(port, False)), why=f"{port} found unhealthy")
            assert be.checks[bad] >= 1 and be.checks[hang] >= 1
            be.mode[bad] = "ok"
            wait_for(logged(srv, health(bad, True)), why="the recovered server's check")
            be.served.clear()
            statuses = Counter(get(srv) for _ in range(40))
            assert statuses == {200: 40}
            assert set(be.served) == {good, bad} and be.served[bad] >= 10, be.served
            assert children(srv.pid) == workers  # no worker died on the bad answers
            time.sleep(0.1)  # the access log's buffer
        log = srv.log()
        assert len(pids(srv)) == 2, "one worker served everything: the test proves nothing"
    assert re.search(r"upstream timed out \(110: Connection timed out\) while reading "
                     rf"response header from upstream, [^\n]*127\.0\.0\.1:{hang}", log)
    assert re.search(rf"upstream sent no valid HTTP/1.0 header [^\n]*127\.0\.0\.1:{garbage}",
                     log)
    assert len(re.findall(health(bad, False), log)) == 1  # a change is logged once


def test_slow_start_ramps_the_share_of_a_recovered_server(tmp_path: Path) -> None:
    ramp, N = 2.0, 20
    with Backends(2) as be:
        steady, slow = be.ports
        be.mode[slow] = "500"
        servers = f"server 127.0.0.1:{steady}; server 127.0.0.1:{slow} slow_start={ramp:g}s;"
        with halb(tmp_path, servers, "health_check interval=100ms uri=/hc;") as srv:
            wait_for(logged(srv, health(slow, False)), why="the slow_start server down")
            assert Counter(get(srv) for _ in range(10)) == {200: 10}
            assert be.served[slow] == 0
            be.mode[slow] = "ok"
            wait_for(logged(srv, health(slow, True)), why="the slow_start server back")
            t0 = time.monotonic()  # a little after the checker started the ramp
            windows: list[tuple[float, float, float]] = []  # (start, end, share of slow)
            while not windows or windows[-1][0] < ramp + 0.1:  # one window past the ramp
                be.served.clear()
                start = time.monotonic() - t0
                statuses = Counter(get(srv) for _ in range(N))
                assert statuses == {200: N}
                windows.append((start, time.monotonic() - t0, be.served[slow] / N))

    def share(t: float) -> float:  # weight t/ramp (at most 1) against 1
        w = min(1.0, max(0.0, t / ramp))
        return w / (1 + w)

    # each window's share lies between what the ramp gives at its start and at its end (the
    # ramp began up to a poll before t0), with a generous margin for the workers' interleaving
    for start, end, got in windows:
        assert share(start) - 0.15 <= got <= share(end + 0.2) + 0.15, windows
    first, last = windows[0][2], windows[-1][2]
    assert 0.35 <= last <= 0.65, windows  # the full weight: half
    assert first < last - 0.15, windows  # and it did ramp up


@pytest.mark.parametrize("persistent,master", [(True, True), (False, True), (True, False)],
                         ids=["persistent", "mandatory-only", "persistent-single-process"])
def test_persistent_keeps_servers_up_across_a_reload(tmp_path: Path, persistent: bool,
                                                     master: bool) -> None:
    with Backends(2) as be:
        be.mode.update(dict.fromkeys(be.ports, "slow"))
        be.delay = 1.2  # every check takes this long: a server "checking" stays so as long
        servers = " ".join(f"server 127.0.0.1:{p};" for p in be.ports)
        location = "health_check interval=1s uri=/hc mandatory" + \
            (" persistent;" if persistent else ";")
        with halb(tmp_path, servers, location, master) as srv:
            for port in be.ports:
                wait_for(logged(srv, health(port, True)), why="first checks")
            assert get(srv) == 200
            srv.write_conf(conf(srv.port, servers, location, generation=2, master=master))
            srv.signal(signal.SIGHUP)
            wait_for(lambda: generation(srv) == b"2", why="the new configuration serving")
            statuses = Counter(get(srv) for _ in range(15))
    if persistent:
        assert statuses == {200: 15}
    else:  # the new generation's servers wait for their first (slow) check
        assert statuses[502] >= 1, statuses
