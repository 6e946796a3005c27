"""The nginx role's active health checker: nginx Plus's `health_check`, run outside requests.

One checker serves the whole server: the worker with index 0 runs it (the only worker with
`master_process off`), so a group is probed once per interval however many workers there are.
What it finds goes into the group's shared zone (balancing.shared: `healthy`, and `recovered`
for slow_start), under the zone's lock, so every worker's balancer skips an unhealthy server
on its next pick; nothing on the request path changes.

The decisions are health/nginx_check.py's (PURE): this module only probes. A probe connects to
the server (or `port=`; unix: sockets too, TLS when proxy_pass is https, without verification
as proxy_ssl_verify's default), sends the check request made by config/nginx_health.py, reads
the response within the location's proxy_connect_timeout / proxy_read_timeout and judges it.
Each probe is a task of its own, so a slow server never delays another's check; the checker
itself is one task sleeping until the next deadline. A probe's failure is logged with the
server and upstream; a change of health is logged as nginx Plus does ("peer is unhealthy while
checking status code, health check "" of peer 127.0.0.1:8081 in upstream "u"").
"""

from __future__ import annotations

import asyncio
import os
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from halb.balancing import Peer
from halb.config.nginx_health import HealthCheck
from halb.health.nginx_check import GroupHealth, ResponseReader, Transition, verdict
from halb.health.probes.tcp import close_stream
from halb.l7.log import ErrorLogger
from halb.l7.upstream import UpstreamGroup, Upstreams

READ_SIZE = 65536


@dataclass(slots=True)
class ProbeResult:
    ok: bool
    phrase: str  # what the check was doing: "checking status code", "connecting to upstream"
    error: str = ""  # an I/O error, in nginx's words


async def probe(hc: HealthCheck, peer: Peer, tls: ssl.SSLContext | None = None) -> ProbeResult:
    """Run one check against one server (I/O only; the verdict is nginx_check's)."""
    writer: asyncio.StreamWriter | None = None
    try:
        try:
            async with asyncio.timeout(hc.connect_timeout):
                if peer.host.startswith("unix:"):
                    reader, writer = await asyncio.open_unix_connection(peer.host[5:])
                else:
                    reader, writer = await asyncio.open_connection(
                        peer.host, hc.port or peer.port,
                        ssl=tls if hc.tls else None)
        except TimeoutError:
            return ProbeResult(False, "connecting to upstream",
                               "upstream timed out (110: Connection timed out)")
        except OSError as e:
            return ProbeResult(False, "connecting to upstream", f"connect() failed {_os(e)}")
        resp = ResponseReader()
        try:
            writer.write(hc.request)
            while True:
                async with asyncio.timeout(hc.read_timeout):
                    data = await reader.read(READ_SIZE)
                if not data:
                    resp.eof()
                    break
                if resp.feed(data):
                    break
        except TimeoutError:
            return ProbeResult(False, "reading response header from upstream",
                               "upstream timed out (110: Connection timed out)")
        except OSError as e:
            return ProbeResult(False, "reading response header from upstream",
                               f"recv() failed {_os(e)}")
        if resp.error:
            return ProbeResult(False, "reading response header from upstream", resp.error)
        ok, _ = verdict(hc, resp)  # a wrong answer is no I/O error: only a change is logged
        return ProbeResult(ok, "checking status code" if hc.match is None
                           else "checking response")
    finally:
        if writer is not None:
            await close_stream(writer)


def _os(e: OSError) -> str:
    """nginx's "(111: Connection refused)" (asyncio words its own strerror)."""
    if e.errno:
        return f"({e.errno}: {os.strerror(e.errno)})"
    return f"({e})"


def _client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Checked:
    """One upstream group under check: its peers and their health state."""

    def __init__(self, group: UpstreamGroup, now: float, rng: Callable[[], float]) -> None:
        self.group = group
        self.zone = group.zone
        self.peers = group.balancer.all_peers()
        self.checks: list[HealthCheck] = list(group.config.health_checks)
        self.health = GroupHealth(self.checks, [p.healthy for p in self.peers],
                                  [p.down for p in self.peers], now, rng)


class HealthChecker:
    """Runs every group's health checks and publishes the outcome to the groups' zones."""

    def __init__(self, upstreams: Upstreams, error_log: ErrorLogger,
                 clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random) -> None:
        self.upstreams = upstreams
        self.error_log = error_log
        self.clock = clock
        self.rng = rng
        self.groups: list[_Checked] = []
        self._tls: ssl.SSLContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    @staticmethod
    def wanted(upstreams: Upstreams) -> bool:
        return any(g.config.health_checks and g.zone is not None
                   for g in upstreams.groups.values())

    def start(self) -> None:
        now = self.clock()
        for group in self.upstreams.groups.values():
            if group.config.health_checks and group.zone is not None:
                self.groups.append(_Checked(group, now, self.rng))
        if any(hc.tls for g in self.groups for hc in g.checks):
            self._tls = _client_tls()
        if self.groups:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._run(), name="health-check")

    def close(self) -> None:
        """Stop checking (the zones keep the last state). Outside the running loop (a worker
        that is exiting) the cancelled tasks are also run to their end."""
        tasks = [*self._probes, *([self._task] if self._task else [])]
        for task in tasks:
            task.cancel()
        self._task = None
        self._probes.clear()
        loop = self._loop
        if tasks and loop is not None and not loop.is_running() and not loop.is_closed():
            loop.run_until_complete(asyncio.wait(tasks))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = self.clock()
            deadline: float | None = None
            for g in self.groups:
                for check, index in g.health.due(now):
                    task = loop.create_task(self._probe(g, check, index))
                    self._probes.add(task)
                    task.add_done_callback(self._probes.discard)
                d = g.health.next_deadline()
                if d is not None and (deadline is None or d < deadline):
                    deadline = d
            self._wake.clear()
            timer = None
            if deadline is not None:
                timer = loop.call_later(max(0.0, deadline - self.clock()), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    async def _probe(self, g: _Checked, check: int, index: int) -> None:
        hc, peer = g.checks[check], g.peers[index]
        try:
            result = await probe(hc, peer, self._tls)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug in one probe must not stop the checker
            result = ProbeResult(False, "checking", repr(e))
        where = self._where(g, hc, peer)
        if result.error:  # I/O errors, as the proxy logs them
            self.error_log.log("error", f"{result.error} while {result.phrase}, {where}")
        change = g.health.result(check, index, result.ok, self.clock(), result.phrase)
        if change is not None:
            self._publish(g, peer, change, where)
        self._wake.set()

    @staticmethod
    def _where(g: _Checked, hc: HealthCheck, peer: Peer) -> str:
        name = hc.match.name if hc.match is not None else ""
        return f'health check "{name}" of peer {peer.address} in upstream "{g.group.name}"'

    def _publish(self, g: _Checked, peer: Peer, change: Transition, where: str) -> None:
        zone = g.zone
        assert zone is not None
        with zone:
            peer.healthy = change.healthy
            if change.healthy and change.recovered and peer.slow_start > 0:
                peer.recovered = self.clock()
        if change.healthy:
            self.error_log.log("notice", f"peer is healthy while {change.reason}, {where}")
        else:
            self.error_log.log("warn", f"peer is unhealthy while {change.reason}, {where}")


__all__ = ["HealthChecker", "ProbeResult", "probe"]
