"""The checker loop: runs health/state.py's probes in asyncio and publishes what it decides.

`HealthRunner(lvs)` is what keepalived's checker child does for the virtual servers: `start()`
applies the initial table (every real server present unless alpha, the sorry server when
quorum is missing) and starts the loop; the loop sleeps until the state machine's next deadline
or a finished probe, starts the probes that are due (each in its own task, so a slow one never
delays the others), feeds each result back into the state machine and carries out what comes
out: HealthChanged goes to `queue` (the only output other roles read), RunScript starts the
notify / quorum script without waiting for it (vrrp/notify.py's ScriptRunner: same user rules),
Log goes to `log`. `stop()` ends the probes and applies keepalived's shutdown (every destination
removed; with omega, notify_down / quorum_down, given 1 s).

Nothing here calls back into a consumer, and the queue carries plain frozen values, so the
runner can live in its own process (as keepalived's checker child) with the queue bridged by
whoever starts it. `set_enabled(service, on)` is ha_suspend's input (the VIP came or went).

`reload(lvs)` (SIGHUP) swaps in a new state machine with the old one's state carried over
(health/reload.py): a probe running for a checker that is kept goes on and its result counts
for the new checker; probes of removed checkers are cancelled.
"""

from __future__ import annotations

import asyncio
import random
import ssl as _ssl
import time
from collections.abc import Callable

from halb.config.keepalived_lvs_model import HTTP_GET, MISC_CHECK, SSL_GET, LvsConfig
from halb.config.keepalived_model import GlobalDefs
from halb.health.events import (
    Action,
    CheckerId,
    HealthChanged,
    Log,
    Probe,
    ProbeResult,
    RunScript,
)
from halb.health.probes.http import http_get
from halb.health.probes.misc import misc_check
from halb.health.probes.ssl import client_context
from halb.health.probes.tcp import tcp_check
from halb.health.reload import Reloaded, reload_state
from halb.health.state import HealthState
from halb.vrrp.notify import NOTIFY_TIMEOUT, ScriptError, ScriptRunner

STOP_SCRIPT_TIMEOUT = 1.0  # keepalived gives shutdown notifies TIMER_HZ


class HealthRunner:
    def __init__(self, lvs: LvsConfig, *, global_defs: GlobalDefs | None = None,
                 log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random) -> None:
        self.lvs = lvs
        self.global_defs = global_defs or GlobalDefs()
        self.log = log or (lambda _: None)
        self.clock = clock
        self.rng = rng
        self.state = HealthState(lvs, rng)
        self.queue: asyncio.Queue[HealthChanged] = asyncio.Queue()
        self.scripts = ScriptRunner(self.global_defs, self.log)
        self._tls: _ssl.SSLContext | None = None
        self._task: asyncio.Task[None] | None = None
        self._probes: dict[asyncio.Task[None], list[CheckerId]] = {}  # task -> [its checker]
        self._wake = asyncio.Event()

    async def start(self) -> None:
        if any(c.kind == SSL_GET for vs in self.lvs.virtual_servers
               for rs in vs.real_servers for c in rs.checkers):
            self._tls = client_context(self.lvs.ssl)
        self._apply(self.state.start(self.clock()))
        self._task = asyncio.create_task(self._loop(), name="health-runner")

    async def stop(self) -> None:
        tasks = list(self._probes) + ([self._task] if self._task is not None else [])
        self._task = None
        for task in tasks:
            task.cancel()
        if tasks:  # asyncio.wait: our own cancellation still reaches us
            await asyncio.wait(tasks)
        self._apply(self.state.stop())
        await self.scripts.drain(STOP_SCRIPT_TIMEOUT)
        await self.scripts.end()  # (still running after their second: ended)

    def reload(self, lvs: LvsConfig, global_defs: GlobalDefs | None = None) -> Reloaded:
        """Carry the state over to `lvs` (synchronous: nothing runs in between)."""
        done = reload_state(self.state, lvs, self.clock(), self.rng)
        for task, cid in list(self._probes.items()):
            new = done.ids.get(cid[0])
            if new is None:
                task.cancel()
                del self._probes[task]
            else:
                cid[0] = new
        self.lvs = lvs
        self.state = done.state
        if global_defs is not None:
            self.global_defs = self.scripts.g = global_defs
        if any(c.kind == SSL_GET for vs in lvs.virtual_servers
               for rs in vs.real_servers for c in rs.checkers):
            self._tls = client_context(lvs.ssl)
        self._apply(done.actions)
        self._wake.set()
        return done

    def set_enabled(self, service: str, enabled: bool) -> None:
        self._apply(self.state.set_enabled(service, enabled))
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            now = self.clock()
            for probe in self.state.due(now):
                cid = [probe.id]
                task = asyncio.create_task(self._probe(probe, cid))
                self._probes[task] = cid
                task.add_done_callback(self._done)
            deadline = self.state.next_deadline()
            self._wake.clear()
            timer = None
            if deadline is not None:
                timer = asyncio.get_running_loop().call_later(
                    max(0.0, deadline - self.clock()), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._probes.pop(task, None)

    async def _probe(self, probe: Probe, cid: list[CheckerId]) -> None:
        try:
            result = await self._run(probe)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a probe's bug must not stop the checker
            self.log(f"{probe.checker.kind} probe error for {probe.id[1]}: {e!r}")
            result = ProbeResult(ok=False, message=repr(e))
        if result.unavailable and result.message:
            self.log(result.message)
        self._apply(self.state.result(cid[0], result, self.clock()))
        self._wake.set()

    async def _run(self, probe: Probe) -> ProbeResult:
        kind = probe.checker.kind
        if kind == HTTP_GET:
            return await http_get(probe.checker, probe.url_index)
        if kind == SSL_GET:
            return await http_get(probe.checker, probe.url_index,
                                  self._tls or client_context(self.lvs.ssl))
        if kind == MISC_CHECK:
            return await misc_check(probe.checker, self.global_defs, self.log)
        return await tcp_check(probe.checker)

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, HealthChanged):
                self.queue.put_nowait(action)
            elif isinstance(action, RunScript):
                try:
                    resolved = self.scripts.resolve(action.script)
                except ScriptError as e:
                    self.log(str(e))
                    continue
                self.scripts.spawn(resolved, STOP_SCRIPT_TIMEOUT if action.stopping
                                   else NOTIFY_TIMEOUT)
            elif isinstance(action, Log):
                self.log(action.message)
