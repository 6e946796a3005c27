"""Scripts as keepalived runs them: who runs them, and the notify_* scripts on state changes.

Owns the process side of keepalived's notify.c for the VRRP role:

* `ScriptRunner.resolve` finds a script's executable (absolute, or on PATH) and the user it runs
  as: its own `user`, else global_defs `script_user`, else `keepalived_script` when that user
  exists, else root. With `enable_script_security`, a script that would run as root from a path
  a non-root user could change is refused ("Unsafe permissions found for script ...").
* `ScriptRunner.run` starts argv without a shell (keepalived splits the script string into words
  itself), in its own session, stdin/stdout/stderr on /dev/null, as that user; after `timeout`
  seconds it sends SIGTERM and, a second later, SIGKILL. It returns the exit status (None on a
  timeout or when the script could not be started).
* `Notifier.state_changed` starts what notify_args.commands says for a state change: an
  instance's (or a sync group's) notify_master / notify_backup / notify_fault / notify_stop as
  written, then the generic `notify` with keepalived's four extra arguments (INSTANCE|GROUP, the
  name, MASTER|BACKUP|FAULT|STOP|DELETED, the priority). Both start at once without waiting for
  each other, as keepalived forks them (`ScriptRunner.spawn`: started before it returns, watched
  through a pidfd); each has NOTIFY_TIMEOUT, and outlives the daemon if it is still running when
  the daemon exits (keepalived does not kill its notify scripts either).
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import shutil
import signal
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from halb.config.keepalived_model import GlobalDefs, Script
from halb.vrrp.notify_args import Scripts, commands

NOTIFY_TIMEOUT = 30.0  # halb's choice: keepalived leaves notify scripts running unbounded
KILL_GRACE = 1.0  # SIGTERM, then SIGKILL this much later
DEFAULT_USER = "keepalived_script"

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Resolved:
    """A script ready to run: the full argv and the (uid, gid) to run as (None: as we are)."""

    argv: tuple[str, ...]
    ids: tuple[int, int] | None
    user: str


class ScriptError(Exception):
    """A script that keepalived would disable; the message is keepalived's."""


class ScriptRunner:
    def __init__(self, g: GlobalDefs, log: Log) -> None:
        self.g = g
        self.log = log
        self.spawned: set[Spawned] = set()  # notify scripts still running

    def user_of(self, script: Script) -> tuple[str, str | None]:
        if script.user:
            return script.user, script.group
        if self.g.script_user:
            return self.g.script_user, self.g.script_group
        try:
            pwd.getpwnam(DEFAULT_USER)
        except KeyError:
            return "root", None
        return DEFAULT_USER, None

    def resolve(self, script: Script) -> Resolved:
        if not script.argv:
            raise ScriptError("empty script")
        exe = script.argv[0]
        path = exe if "/" in exe else shutil.which(exe)
        if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise ScriptError(f"WARNING - script '{exe}' not accessible/executable")
        user, group = self.user_of(script)
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise ScriptError(f"Unable to set uid to user {user}") from None
        gid = pw.pw_gid
        if group:
            try:
                gid = grp.getgrnam(group.lstrip(":")).gr_gid
            except KeyError:
                raise ScriptError(f"Unable to set gid to group {group}") from None
        if self.g.enable_script_security and pw.pw_uid == 0 and unsafe(path):
            raise ScriptError(f"Unsafe permissions found for script '{path}' - disabling.")
        ids = None if (pw.pw_uid, gid) == (os.geteuid(), os.getegid()) else (pw.pw_uid, gid)
        return Resolved((path, *script.argv[1:]), ids, user)

    async def run(self, resolved: Resolved, timeout: float) -> int | None:
        """Run a script to its end (track scripts): its status, or None when it could not be
        started or ran out of `timeout` (SIGTERM to its session, SIGKILL KILL_GRACE later)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *resolved.argv, **_exec_args(resolved))  # type: ignore[arg-type]
        except OSError as e:
            self._exec_failed(resolved, e)
            return None
        try:
            return await asyncio.wait_for(proc.wait(), timeout)
        except (TimeoutError, asyncio.CancelledError) as e:
            _signal(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), KILL_GRACE)
            except (TimeoutError, asyncio.CancelledError):
                _signal(proc.pid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await proc.wait()
            if isinstance(e, asyncio.CancelledError):
                raise  # a stopping tracker: its loop must end (it would run the script again)
            return None

    def spawn(self, resolved: Resolved, timeout: float) -> None:
        """Start a notify script now (as keepalived forks it) and let it run: SIGTERM to its
        session after `timeout`, SIGKILL KILL_GRACE later; reaped when it exits."""
        try:
            proc = subprocess.Popen(resolved.argv,
                                    **_exec_args(resolved))  # type: ignore[call-overload]
        except OSError as e:
            self._exec_failed(resolved, e)
            return
        Spawned(self, proc, timeout)

    def _exec_failed(self, resolved: Resolved, e: OSError) -> None:
        self.log(f"Error exec-ing command '{resolved.argv[0]}', error {e.errno}: {e.strerror}")

    async def drain(self, wait: float = 0.0) -> None:
        """With `wait`, let the running notify scripts finish for up to that long."""
        if wait > 0 and self.spawned:
            await asyncio.wait([s.done for s in self.spawned], timeout=wait)

    async def end(self) -> None:
        """End the scripts still running (SIGTERM to their sessions, SIGKILL KILL_GRACE later)
        and reap them (the checker's stop, once they had their time)."""
        left = list(self.spawned)
        for spawned in left:
            spawned.end()
        if left:
            await asyncio.wait([s.done for s in left], timeout=KILL_GRACE + 1.0)


class Spawned:
    """A running notify script: its exit seen through a pidfd (then reaped), its timeout."""

    def __init__(self, runner: ScriptRunner, proc: subprocess.Popen[bytes],
                 timeout: float) -> None:
        self.runner = runner
        self.proc = proc
        loop = asyncio.get_event_loop()
        self.loop = loop
        self.done: asyncio.Future[None] = loop.create_future()
        self.fd = os.pidfd_open(proc.pid)
        loop.add_reader(self.fd, self._exited)
        self.timer: asyncio.TimerHandle | None = loop.call_later(timeout, self._timeout)
        runner.spawned.add(self)

    def _exited(self) -> None:
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.proc.poll()  # (reaped)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.runner.spawned.discard(self)
        if not self.done.done():
            self.done.set_result(None)

    def end(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self._timeout()

    def _timeout(self) -> None:
        _signal(self.proc.pid, signal.SIGTERM)
        self.timer = self.loop.call_later(KILL_GRACE, self._kill)

    def _kill(self) -> None:
        self.timer = None
        _signal(self.proc.pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _exec_args(resolved: Resolved) -> dict[str, object]:
    """A script's process: no stdio, its own session (signalled as a group), as its user."""
    kwargs: dict[str, object] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
                                 "stderr": subprocess.DEVNULL, "start_new_session": True,
                                 "close_fds": True}
    if resolved.ids is not None and os.geteuid() == 0:
        kwargs.update(user=resolved.ids[0], group=resolved.ids[1], extra_groups=[])
    return kwargs


def unsafe(path: str) -> bool:
    """keepalived's script security: some directory or the file itself is writable by a
    non-root user (not owned by root, or group/other writable without the sticky bit)."""
    path = os.path.realpath(path)
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        p = "/".join(parts[:i]) or "/"
        try:
            st = os.stat(p)
        except OSError:
            return True
        is_dir = stat.S_ISDIR(st.st_mode)
        if st.st_uid != 0:
            return True
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (is_dir and
                                                              st.st_mode & stat.S_ISVTX):
            return True
    return False


class Notifier:
    """Runs notify scripts on state changes."""

    def __init__(self, runner: ScriptRunner, timeout: float = NOTIFY_TIMEOUT) -> None:
        self.runner = runner
        self.timeout = timeout

    def state_changed(self, kind: str, name: str, state: str, priority: int,
                      scripts: Scripts, deleted: bool = False) -> None:
        """kind is "INSTANCE" or "GROUP"; state MASTER|BACKUP|FAULT|STOP|DELETED."""
        for script, argv in commands(kind, name, state, priority, scripts, deleted=deleted):
            self._start(script, argv)

    def _start(self, script: Script, argv: tuple[str, ...]) -> None:
        try:
            resolved = self.runner.resolve(script)
        except ScriptError as e:
            self.runner.log(f"{e} ({script.command})")
            return
        self.runner.spawn(Resolved((resolved.argv[0], *argv[1:]), resolved.ids, resolved.user),
                          self.timeout)
