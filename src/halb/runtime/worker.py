"""A worker process of the nginx role: one event loop serving the inherited listeners.

Signals, as nginx's workers take them: QUIT drains (stop accepting, finish requests in flight,
close idle keep-alive connections, exit), TERM and INT exit at once, USR1 reopens the logs.
The same function runs in-process when `master_process off` (there HUP reloads in place).
"""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
from collections.abc import Callable, Mapping
from typing import Any

from halb.config.model import Listen, NginxConfig
from halb.l7.log import ErrorLogger
from halb.l7.server import HttpServer
from halb.l7.upstream import create_zones
from halb.runtime.loop import new_event_loop
from halb.runtime.process import drop_privileges

WORKER_SIGNALS = {signal.SIGQUIT, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP,
                  signal.SIGWINCH}

Reloader = Callable[[], "tuple[NginxConfig, list[tuple[Listen, socket.socket]]] | None"]


class Worker:
    def __init__(self, config: NginxConfig, sockets: list[tuple[Listen, socket.socket]],
                 index: int = 0, ids: tuple[int, int] | None = None,
                 error_log: ErrorLogger | None = None, reloader: Reloader | None = None,
                 owns_sockets: bool = False, zones: Mapping[str, Any] | None = None,
                 status: tuple[Any, int] | None = None) -> None:
        self.config = config
        self.sockets = sockets
        self.index = index
        self.ids = ids
        self.error_log = error_log or ErrorLogger(config.error_log)
        self.reloader = reloader
        self.owns_sockets = owns_sockets  # a forked worker closes its inherited copies on stop
        self.zones = zones  # upstream zones (shared peer state) made by the master before fork
        # stub_status counters: (the master's zone, this worker's slot); its own when alone
        self.status = status
        self.loop = new_event_loop()
        self.server: HttpServer | None = None
        self.stopped: asyncio.Future[None] = self.loop.create_future()
        self.draining: set[asyncio.Task[None]] = set()

    def run(self) -> int:
        asyncio.set_event_loop(self.loop)
        try:
            self.server = HttpServer(self.config, self.loop, self.error_log, self.index,
                                     self.zones, self.status)
            if self.status is None:  # single process: a reload keeps the counters
                self.status = (self.server.status_zone, 1)
            user = self.config.user[0] if self.config.user else "nobody"
            drop_privileges(self.ids, user)
            self.loop.run_until_complete(self.server.start(self.sockets))
            for sig, fn in ((signal.SIGQUIT, self.quit), (signal.SIGTERM, self.terminate),
                            (signal.SIGINT, self.terminate), (signal.SIGUSR1, self.reopen),
                            (signal.SIGHUP, self.reload), (signal.SIGWINCH, self.quit)):
                self.loop.add_signal_handler(sig, fn)
            # a forked worker starts with these blocked (see Master.spawn); what arrived
            # meanwhile is delivered when they are unblocked, which must happen while the loop
            # runs: uvloop only listens to its signal wake-up fd inside run_until_complete
            self.loop.call_soon(signal.pthread_sigmask, signal.SIG_UNBLOCK, WORKER_SIGNALS)
            # what start-up built (configuration, tables, modules) lives as long as the worker:
            # out of the collector's sight, so that its passes see only the requests' objects
            gc.collect()
            gc.freeze()
            self.loop.run_until_complete(self.stopped)
            return 0
        finally:
            if self.server is not None:
                self.server.close()
            self.loop.close()

    def quit(self) -> None:
        if self.server is None or self.stopped.done():
            return
        self.error_log.log("notice", "gracefully shutting down")
        self._release_sockets()
        timeout = self.config.worker_shutdown_timeout
        task = self.loop.create_task(self.server.drain(timeout))
        task.add_done_callback(lambda _: self._stop())

    def _release_sockets(self) -> None:
        if self.owns_sockets:
            for _, sock in self.sockets:
                sock.close()

    def terminate(self) -> None:
        self._release_sockets()
        if self.server is not None:
            self.server.close_listeners()
            self.server.abort_all()
        self._stop()

    def _stop(self) -> None:
        if not self.stopped.done():
            self.error_log.log("notice", "exiting")
            self.stopped.set_result(None)

    def reopen(self) -> None:
        if self.server is not None:
            self.error_log.log("notice", "reopening logs")
            self.server.reopen_logs()

    def reload(self) -> None:
        """Only in single-process mode: a new server on the new configuration, the old drains."""
        if self.reloader is None or self.server is None:
            return
        result = self.reloader()
        if result is None:
            return
        config, sockets = result
        old = self.server
        self.config = config
        assert config.http is not None and old.config.http is not None
        zones = create_zones(config.http.upstreams,  # health_check persistent: carry "up"
                             (old.upstreams.zones, old.config.http.upstreams))
        self.server = HttpServer(config, self.loop, self.error_log, self.index, zones,
                                 status=self.status)
        old.close_listeners()
        started = self.loop.create_task(self.server.start(sockets))

        def drain_old(_: object) -> None:
            task = self.loop.create_task(old.drain(config.worker_shutdown_timeout))
            self.draining.add(task)
            task.add_done_callback(lambda t: (self.draining.discard(t), old.close()))

        started.add_done_callback(drain_old)
