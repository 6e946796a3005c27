"""MISC_CHECK: run the checker's script once, as keepalived's check_misc.c (I/O only).

The script runs without a shell (misc_path is already an argv), in its own process group, with
stdin/stdout/stderr on /dev/null, as its `user` (else global_defs script_user, else
keepalived_script when it exists, else root: vrrp/notify.py's ScriptRunner resolves it, with
keepalived's script security). After misc_timeout the group gets SIGTERM and, 2 s later,
SIGKILL: a timeout. A script keepalived would refuse (not found, not executable, unsafe) makes
the probe `unavailable`, so the checker never changes the server's state, as when keepalived
disables it; a script that exists but cannot be exec'd counts as exit 0, as keepalived's child
exits 0 then ("Script errors aren't server errors").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable

from halb.config.keepalived_lvs_model import Checker
from halb.config.keepalived_model import GlobalDefs, Script
from halb.health.events import ProbeResult
from halb.vrrp.notify import ScriptError, ScriptRunner

TERM_GRACE = 2.0  # keepalived: SIGTERM, then SIGKILL 2 s later


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def run_script(argv: tuple[str, ...], timeout: float,
                     ids: tuple[int, int] | None = None) -> ProbeResult:
    kwargs: dict[str, object] = {}
    if ids is not None and os.geteuid() == 0:
        kwargs = {"user": ids[0], "group": ids[1], "extra_groups": []}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
            **kwargs)  # type: ignore[arg-type]
    except OSError as e:
        return ProbeResult(exit_status=0, message=f"Error exec-ing command '{argv[0]}', error "
                                                   f"{e.errno}: {e.strerror}")
    timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout):
                code = await proc.wait()
        except TimeoutError:
            timed_out = True
            _kill(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(TERM_GRACE):
                    code = await proc.wait()
            except TimeoutError:
                _kill(proc.pid, signal.SIGKILL)
                code = await proc.wait()
    except asyncio.CancelledError:
        _kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(TERM_GRACE):
                await proc.wait()
        raise
    _kill(proc.pid, signal.SIGKILL)  # whatever the script left in its group goes with it
    if code < 0:
        return ProbeResult(signal=-code, timed_out=timed_out)
    return ProbeResult(exit_status=code)  # also a script that caught SIGTERM and exited


async def misc_check(checker: Checker, global_defs: GlobalDefs | None = None,
                     log: Callable[[str], None] | None = None) -> ProbeResult:
    runner = ScriptRunner(global_defs or GlobalDefs(), log or (lambda _: None))
    try:
        resolved = runner.resolve(Script(checker.misc_path, checker.user, checker.group))
    except ScriptError as e:
        return ProbeResult(unavailable=True, message=str(e))
    return await run_script(resolved.argv, checker.misc_timeout, resolved.ids)
