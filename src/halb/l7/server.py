"""A worker's HTTP server: listeners → connections, the shared per-worker state, and drain.

One HttpServer per worker process (and per configuration generation). It owns the routing table
built from the configuration, the set of live connections (for worker_connections and graceful
shutdown), and the access logs.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING

from halb.config.model import AccessLog, ErrorLog, Listen, LocConf, NginxConfig
from halb.config.template import Var
from halb.l7.cork import Held
from halb.l7.health import HealthChecker
from halb.l7.http import HttpConnection
from halb.l7.log import AccessLogs, ErrorLogger
from halb.l7.request import Request
from halb.l7.routing import ListenTable
from halb.l7.stub_status import ACCEPTED, HANDLED, CountingConnection, StatusZone

if TYPE_CHECKING:
    from halb.balancing.shared import Zone


def wants_counting(config: NginxConfig) -> bool:
    """Connections and requests are counted per transition only for a configuration that can
    show them: a stub_status location, or $connections_* in a log format or an if= condition."""
    for conf in config.confs():
        if conf.extra.get("stub_status"):
            return True
        for log in conf.access_log or ():
            if log.condition is not None and _counts(log.condition.parts):
                return True
    http = config.http
    return http is not None and any(_counts(f.template.parts) for f in http.log_formats.values())


def _counts(parts: tuple[object, ...]) -> bool:
    return any(isinstance(p, Var) and p.name.startswith("connections_") for p in parts)


class HttpServer:
    def __init__(self, config: NginxConfig, loop: asyncio.AbstractEventLoop,
                 error_log: ErrorLogger, worker: int = 0,
                 zones: Mapping[str, Zone] | None = None,
                 status: tuple[StatusZone, int] | None = None) -> None:
        assert config.http is not None
        self.config = config
        self.loop = loop
        self.error_log = error_log
        self.listen_table = ListenTable(config.http)
        from halb.l7 import proxy  # noqa: F401  (registers the proxy_pass content handler)
        from halb.l7.upstream import Upstreams

        self.held = Held(loop)  # what waits for the end of the iteration (l7/cork.py)
        # zones: the upstream zones of this configuration generation, made before the fork
        self.upstreams = Upstreams(dict(config.http.upstreams), loop, zones,
                                   trim_later=self.held.trim_later)
        self.worker = worker
        self.health: HealthChecker | None = None  # nginx Plus health_check: worker 0 runs it
        self.connections: set[HttpConnection] = set()
        self.max_connections = config.worker_connections
        self.numbers = itertools.count(1 + worker * 10_000_000)
        self.access_logs = AccessLogs(loop, self._log_failure)
        self.servers: list[asyncio.base_events.Server] = []
        # stub_status: this worker's slot of the shared counters (its own zone when alone)
        self.status_zone, slot = status if status is not None else (StatusZone.private(), 1)
        self.status_slot = self.status_zone.slot(slot)
        self.protocol: type[HttpConnection] = \
            CountingConnection if wants_counting(config) else HttpConnection
        # error_log in http / server / location: the log of the requests they handle
        self.error_logs: dict[tuple[ErrorLog, ...], ErrorLogger] = {}
        seen: set[tuple[AccessLog, ...]] = set()
        for conf in config.confs():
            if conf.access_log and conf.access_log not in seen:
                seen.add(conf.access_log)
                self.access_logs.prepare(conf.access_log)
            if conf.error_log and conf.error_log not in self.error_logs:
                self.error_logs[conf.error_log] = ErrorLogger(conf.error_log)

    async def start(self, sockets: list[tuple[Listen, socket.socket]]) -> None:
        """Serve on duplicates of the given sockets (the event loop closes what it serves on;
        the originals stay with their owner, so a reload keeps the accept queue open)."""
        from halb.l7.tls_accept import serve  # ssl / proxy_protocol / realip when configured

        for listen, sock in sockets:
            self.servers.append(await serve(self, listen, sock))
        if self.worker == 0 and HealthChecker.wanted(self.upstreams):
            self.health = HealthChecker(self.upstreams, self.error_log)
            self.health.start()

    def _log_failure(self, level: str, message: str) -> None:
        self.error_log.log(level, message)

    # -- connections --------------------------------------------------------------------------

    def register(self, conn: HttpConnection) -> bool:
        counters = self.status_slot
        counters[ACCEPTED] += 1
        if len(self.connections) >= self.max_connections:
            self.error_log.log("alert", f"{self.max_connections} worker_connections are not "
                               "enough")
            return False
        counters[HANDLED] += 1
        self.connections.add(conn)
        return True

    def unregister(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)

    def error_log_for(self, conf: LocConf | None) -> ErrorLogger:
        if conf is None or not conf.error_log:
            return self.error_log
        return self.error_logs.get(conf.error_log) or self.error_log

    def access_log(self, r: Request) -> None:
        conf = r.conf or (r.server.conf if r.server else None)
        if conf is None:
            assert self.config.http is not None
            conf = self.config.http.conf
        if conf.access_log:
            self.access_logs.log(conf.access_log, r)

    # -- lifecycle ----------------------------------------------------------------------------

    def close_listeners(self) -> None:
        for srv in self.servers:
            srv.close()
        self.servers = []

    async def drain(self, timeout: float | None) -> None:
        """Graceful stop: no new connections, finish what is in flight, close idle ones."""
        self.close_listeners()
        if self.health is not None:  # the next generation's worker 0 checks from now on
            self.health.close()
        for conn in list(self.connections):
            conn.shutdown()
        deadline = None if timeout is None else self.loop.time() + timeout
        while self.connections:
            if deadline is not None and self.loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        self.abort_all()

    def abort_all(self) -> None:
        for conn in list(self.connections):
            conn._force_close()

    def close(self) -> None:
        if self.health is not None:
            self.health.close()
        self.upstreams.close()
        self.access_logs.close()
        for log in self.error_logs.values():
            log.close()

    def reopen_logs(self) -> None:
        self.access_logs.reopen()
        self.error_log.reopen()
        for log in self.error_logs.values():
            log.reopen()
