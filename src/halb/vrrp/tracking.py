"""What instances track: vrrp_script runs and interface link state (I/O; the arithmetic is in
priority.py).

* `ScriptTracker` runs one vrrp_script every `interval` seconds (measured from the start of the
  previous run; a run still going at the next tick delays it), without a shell, as its user, with
  `timeout` (default: the interval; a timeout counts as a failure). Exit 0 is success. Each
  outcome goes through priority.ScriptState (rise/fall); a change from OK to KO or back is logged
  in keepalived's words ("VRRP_Script(chk) failed (exited with status 1)", "... succeeded",
  "... timed_out") and published to the subscribers. A script that cannot be run (missing, not
  executable, unsafe under enable_script_security) is disabled at start, as keepalived does
  ("Disabling track script chk since not found/accessible"), and then changes nothing.
* `LinkWatcher` follows interface state over an rtnetlink socket (RTMGRP_LINK): on any link
  message the watched interfaces' flags are read (up and running = OK) and changes published.
  A missing interface counts as down.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import time
from collections.abc import Callable

from halb.config.keepalived_model import VrrpScript
from halb.vrrp.notify import Resolved, ScriptError, ScriptRunner
from halb.vrrp.priority import ScriptState

SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
IFF_RUNNING = 0x40
RTMGRP_LINK = 1

Listener = Callable[[str, bool], None]  # (name, ok)


class ScriptTracker:
    def __init__(self, script: VrrpScript, runner: ScriptRunner) -> None:
        self.script = script
        self.runner = runner
        self.state = ScriptState(script.rise, script.fall, script.init_fail)
        self.listeners: list[Listener] = []
        self.disabled = False
        self.runs = 0
        self._task: asyncio.Task[None] | None = None
        self._resolved: Resolved | None = None
        self.last_status: int | None = None

    @property
    def name(self) -> str:
        return self.script.name

    @property
    def ok(self) -> bool:
        return self.state.ok

    def start(self) -> None:
        try:
            self._resolved = self.runner.resolve(self.script.script)
        except ScriptError as e:
            self.runner.log(str(e))
            self.runner.log(f"Disabling track script {self.name} since not found/accessible")
            self.disabled = True
            self.state.ok = True
            return
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        assert self._resolved is not None
        interval = max(0.001, self.script.interval)
        timeout = self.script.effective_timeout or interval
        nxt = time.monotonic()
        while True:
            started = time.monotonic()
            status = await self.runner.run(self._resolved, timeout)
            self.runs += 1
            self.report(status)
            nxt = max(nxt + interval, started)
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    def report(self, status: int | None) -> None:
        """One run's exit status (None: timed out / could not run)."""
        if status != self.last_status and status is not None:
            self.runner.log(f"Script `{self.name}` now returning {status}")
        self.last_status = status
        if not self.state.report(status == 0):
            return
        if self.state.ok:
            self.runner.log(f"VRRP_Script({self.name}) succeeded")
        elif status is None:
            self.runner.log(f"VRRP_Script({self.name}) timed_out")
        else:
            self.runner.log(f"VRRP_Script({self.name}) failed (exited with status {status})")
        for listener in list(self.listeners):
            listener(self.name, self.state.ok)


def link_ok(ifname: str) -> bool:
    """Up and running (carrier); False when the interface does not exist."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("256s", ifname.encode()[:15]))
        except OSError:
            return False
    flags = struct.unpack_from("H", res, 16)[0]
    return bool(flags & IFF_UP and flags & IFF_RUNNING)


class LinkWatcher:
    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.state: dict[str, bool] = {}
        self.listeners: list[Listener] = []
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, ifname: str) -> bool:
        if ifname not in self.state:
            self.state[ifname] = link_ok(ifname)
        return self.state[ifname]

    def start(self) -> None:
        if self._sock is not None:
            return
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        s.bind((0, RTMGRP_LINK))
        s.setblocking(False)
        self._sock = s
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(s.fileno(), self._readable)

    def stop(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                self._sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
        self.poll()

    def poll(self) -> None:
        for name, was in list(self.state.items()):
            now = link_ok(name)
            if now == was:
                continue
            self.state[name] = now
            self.log(f"Netlink reports {name} {'up' if now else 'down'}")
            for listener in list(self.listeners):
                listener(name, now)
