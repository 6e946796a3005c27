"""The master process of the nginx role: binds, forks workers, and turns signals into actions.

As nginx's master: HUP re-reads the configuration (on error the old one keeps running and the
error is logged with file:line), binds what is new, starts workers on the new configuration and
asks the old ones to drain (QUIT). USR1 reopens the logs and forwards to the workers. QUIT drains
everything and exits; TERM and INT stop at once. A worker that dies unexpectedly is replaced.

Upstream zones (`zone NAME [SIZE]`, balancing.shared) belong to a generation: the master makes
them before forking the generation's workers, a respawned worker maps the same ones, a reload
makes new ones (nginx does not reuse upstream zones across reloads), and when a worker dies
holding a zone's lock the master frees it.

Signal handlers only queue the signal (uvicorn's supervisor habit); the loop dispatches them by
name. The loop is synchronous: the master never runs an event loop, so forking is clean.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from halb.balancing.shared import Zone
from halb.config.errors import ConfigError
from halb.config.model import Listen, NginxConfig
from halb.l7 import cache_zone as cache_zones
from halb.l7.log import ErrorLogger, log_paths
from halb.l7.stub_status import StatusZone
from halb.l7.upstream import create_zones
from halb.runtime.listeners import ListenerSet, to_bind
from halb.runtime.process import die_with_parent, lookup_user, remove_pid, write_pid
from halb.runtime.worker import WORKER_SIGNALS, Worker

Loader = Callable[[], NginxConfig]

SIGNALS = (signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1,
           signal.SIGUSR2, signal.SIGWINCH, signal.SIGCHLD)
RESPAWN_BACKOFF = 0.25  # a worker that died within a second of starting waits this long


@dataclass
class Generation:
    number: int
    config: NginxConfig
    sockets: list[tuple[Listen, socket.socket]]
    ids: tuple[int, int] | None
    workers: dict[int, int] = field(default_factory=dict)  # pid -> worker index
    started: dict[int, float] = field(default_factory=dict)  # pid -> start time
    # upstream zones (shared peer state) of this generation, made before its workers fork;
    # a reload makes new ones, as nginx's upstream zones are not reused (noreuse)
    zones: dict[str, Zone] = field(default_factory=dict)

    def close_zones(self) -> None:
        for zone in self.zones.values():
            zone.close()
        self.zones = {}


class Master:
    def __init__(self, config: NginxConfig, loader: Loader, error_log: ErrorLogger,
                 listeners: ListenerSet) -> None:
        self.loader = loader
        self.error_log = error_log
        self.listeners = listeners
        self.signals: deque[int] = deque()
        self.current = Generation(0, config, [], None)
        self.old: list[Generation] = []
        self.respawn: list[tuple[float, int]] = []  # (when, index) for the current generation
        self.stale_sockets: list[socket.socket] = []
        self.exiting: str | None = None  # "quit" or "terminate"
        self.terminate_deadline = 0.0
        self.pid_path = config.pid
        self._wakeup_r, self._wakeup_w = os.pipe()
        self.loaders: set[int] = set()  # cache loader processes
        # stub_status counters: made once, before the first fork; they survive reloads
        self.status = StatusZone()

    # -- setup --------------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.current.config
        sockets, _ = self.listeners.update(to_bind(cfg))
        self.current.sockets = sockets
        self.current.ids = lookup_user(cfg.user)
        self.current.zones = _zones(cfg)
        # made before the workers fork; the loader fills them while the workers serve
        cache_zones.open_zones(_cache_paths(cfg), self.current.ids, load=False)
        os.set_blocking(self._wakeup_w, False)
        os.set_blocking(self._wakeup_r, False)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        for sig in SIGNALS:
            signal.signal(sig, self._on_signal)
        write_pid(self.pid_path)
        self.error_log.log("notice", "start worker processes")
        for i in range(cfg.worker_processes):
            self.spawn(self.current, i)
        self.start_loader(self.current.ids)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    # -- workers ------------------------------------------------------------------------------

    def spawn(self, gen: Generation, index: int) -> None:
        # Signals stay blocked across fork: a worker that gets QUIT before it has installed its
        # handlers must not die of the default action; it unblocks them once they are in place.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
        slot = self.status.allocate()
        pid = os.fork()
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if pid == 0:  # the worker
            code = 1
            try:
                self._in_child()
                mine = {id(s) for _, s in gen.sockets}
                for s in self.listeners.sockets.values():
                    if id(s) not in mine:
                        s.close()
                for s in self.stale_sockets:
                    s.close()
                for other in (self.current, *self.old):
                    if other is not gen:
                        other.close_zones()
                code = Worker(gen.config, gen.sockets, index, gen.ids,
                              ErrorLogger(gen.config.error_log), owns_sockets=True,
                              zones=gen.zones, status=(self.status, slot)).run()
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        self.status.assign(pid, slot)
        gen.workers[pid] = index
        gen.started[pid] = time.monotonic()
        self.error_log.log("notice", f"start worker process {pid}")

    def _in_child(self) -> None:
        """Right after fork, in a worker or the cache loader: the master's signal handling
        and wake-up pipe are not the child's; it dies with the master."""
        signal.set_wakeup_fd(-1)
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)
        die_with_parent(signal.SIGTERM)

    def start_loader(self, ids: tuple[int, int] | None) -> None:
        """nginx's cache loader process: enters the files of the cold cache zones, then
        exits (the zones are shared memory: what it enters, the workers see)."""
        if not any(zone.cold for zone in cache_zones.ZONES.values()):
            return
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self._in_child()
                for s in (*self.listeners.sockets.values(), *self.stale_sockets):
                    s.close()
                cache_zones.load_cold(ids)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        self.loaders.add(pid)
        self.error_log.log("notice", f"start cache loader process {pid}")

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._exited(pid, status)

    def _exited(self, pid: int, status: int) -> None:
        if os.WIFSIGNALED(status):
            how = f"exited on signal {os.WTERMSIG(status)}"
            level = "alert"
        else:
            code = os.WEXITSTATUS(status)
            how = f"exited with code {code}"
            level = "notice" if code == 0 else "alert"
        loader = pid in self.loaders
        self.loaders.discard(pid)
        what = "cache loader process" if loader else "worker process"
        self.error_log.log(level, f"{what} {pid} {how}")
        self._unlock_zones(pid)
        for name in cache_zones.worker_exited(pid):
            self.error_log.log("alert", f'shared memory zone "{name}" was locked by {pid}')
        if loader:
            return
        self.status.retire(pid)
        cur = self.current
        if pid in cur.workers:
            index = cur.workers.pop(pid)
            lived = time.monotonic() - cur.started.pop(pid, 0.0)
            if self.exiting is None:
                delay = RESPAWN_BACKOFF if lived < 1.0 else 0.0
                self.respawn.append((time.monotonic() + delay, index))
            return
        for gen in self.old:
            if gen.workers.pop(pid, None) is not None:
                gen.started.pop(pid, None)
        for gen in self.old:
            if not gen.workers:
                gen.close_zones()
        self.old = [g for g in self.old if g.workers]
        if not self.old:
            for s in self.stale_sockets:
                s.close()
            self.stale_sockets = []

    def _unlock_zones(self, pid: int) -> None:
        """A worker that died holding a zone's lock must not wedge the others (nginx's
        ngx_unlock_mutexes: "shared memory zone ... was locked by PID")."""
        for gen in (self.current, *self.old):
            for zone in gen.zones.values():
                if zone.force_unlock(pid):
                    self.error_log.log("alert", f'shared memory zone "{zone.name}" was locked '
                                       f"by {pid}")

    def signal_all(self, sig: int, generations: list[Generation] | None = None) -> None:
        for gen in generations if generations is not None else [self.current, *self.old]:
            for pid in list(gen.workers):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    def alive(self) -> int:
        return len(self.current.workers) + sum(len(g.workers) for g in self.old)

    # -- signals ------------------------------------------------------------------------------

    def handle_hup(self) -> None:
        self.error_log.log("notice", "signal 1 (SIGHUP) received, reconfiguring")
        try:
            config = self.loader()
            # the new generation's own: nginx does not reuse them (health_check ... persistent
            # starts a server "up" that the current generation has healthy)
            zones = _zones(config, self.current)
            sockets, stale = self.listeners.update(to_bind(config))
            ids = lookup_user(config.user)
            # kept when unchanged, as nginx; new ones are loaded once the workers run
            cache_zones.open_zones(_cache_paths(config), ids, load=False)
        except ConfigError as e:
            self.error_log.log(e.level, str(e))
            return
        except OSError as e:  # no memory / semaphores for the zones
            self.error_log.log("emerg", f"could not create upstream zones: {e}")
            return
        try:
            new_log = ErrorLogger(config.error_log)
        except OSError as e:
            self.error_log.log("emerg", f"could not open error log file: {e}")
            return
        self.error_log.close()
        self.error_log = new_log
        self.error_log.log("notice", "reconfiguring")
        old = self.current
        self.current = Generation(old.number + 1, config, sockets, ids, zones=zones)
        self.respawn = []
        self.stale_sockets.extend(stale)
        for i in range(config.worker_processes):
            self.spawn(self.current, i)
        self.start_loader(ids)
        if old.workers:
            self.old.append(old)
            self.signal_all(signal.SIGQUIT, [old])
        else:
            old.close_zones()
        if self.pid_path != config.pid:
            remove_pid(self.pid_path)
            self.pid_path = config.pid
            with contextlib.suppress(ConfigError):
                write_pid(self.pid_path)

    def handle_usr1(self) -> None:
        """ngx_reopen_files in the master: every log file of the configuration is opened again
        (created if it was moved away) and given to the workers' user, then the workers are
        told to reopen theirs (the seeds' cut_my_log.sh: mv the logs, kill -USR1 master)."""
        self.error_log.log("notice", "signal 10 (SIGUSR1) received, reopening logs")
        self.error_log.log("notice", "reopening logs")
        self.error_log.reopen()
        ids = self.current.ids
        for path in self._log_paths():
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                                 0o644))
                if ids is not None:
                    os.chown(path, ids[0], -1)
            except OSError as e:
                self.error_log.log("emerg", f'open() "{path}" failed ({e.errno}: {e.strerror})')
        self.signal_all(signal.SIGUSR1)

    def _log_paths(self) -> list[str]:
        return log_paths(self.current.config)

    def handle_quit(self) -> None:
        if self.exiting is None:
            self.error_log.log("notice", "gracefully shutting down")
            self.exiting = "quit"
            self.respawn = []
            self.listeners.close()
        self.signal_all(signal.SIGQUIT)

    def handle_term(self) -> None:
        self.error_log.log("notice", "exiting")
        self.exiting = "terminate"
        self.respawn = []
        self.terminate_deadline = time.monotonic() + 2.0
        self.listeners.close()
        self.signal_all(signal.SIGTERM)

    handle_int = handle_term

    def handle_winch(self) -> None:
        self.error_log.log("notice", "gracefully shutting down worker processes")
        self.signal_all(signal.SIGQUIT)

    def handle_usr2(self) -> None:
        self.error_log.log("notice", "binary upgrade (USR2) is not supported; use HUP")

    def handle_chld(self) -> None:
        self.reap()

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.start()
            while True:
                while self.signals:
                    sig = self.signals.popleft()
                    name = signal.Signals(sig).name[3:].lower()
                    getattr(self, f"handle_{name}")()
                self.reap()
                now = time.monotonic()
                if cache_zones.ZONES:  # the cache manager: inactive and max_size
                    cache_zones.manage_all(now)
                due = [i for when, i in self.respawn if when <= now]
                self.respawn = [(w, i) for w, i in self.respawn if w > now]
                for i in due:
                    if self.exiting is None:
                        self.spawn(self.current, i)
                if self.exiting is not None and self.alive() == 0:
                    return 0
                if self.exiting == "terminate" and now > self.terminate_deadline:
                    self.signal_all(signal.SIGKILL)
                timeout = 0.5
                if self.respawn:
                    timeout = max(0.0, min(w for w, _ in self.respawn) - now)
                with contextlib.suppress(InterruptedError):
                    select.select([self._wakeup_r], [], [], timeout)
                with contextlib.suppress(BlockingIOError, OSError):
                    while os.read(self._wakeup_r, 512):
                        pass
        finally:
            if self.exiting is None:
                self.signal_all(signal.SIGTERM)
            for pid in self.loaders:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            self.listeners.close()
            remove_pid(self.pid_path)
            self.error_log.log("notice", "exit")


def _cache_paths(config: NginxConfig) -> Any:
    return config.http.conf.extra.get("proxy_cache_path") if config.http is not None else None


def _zones(config: NginxConfig, previous: Generation | None = None) -> dict[str, Zone]:
    old = None
    if previous is not None and previous.config.http is not None:
        old = (previous.zones, previous.config.http.upstreams)
    return create_zones(config.http.upstreams if config.http is not None else None, old)


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True
