"""ScriptRunner.spawn, the notify scripts' runner: a script is started before spawn returns
(keepalived forks it), keeps running when the daemon's loop ends (keepalived does not kill its
notify scripts at exit), is ended after its timeout (SIGTERM to its session) and reaped."""

from __future__ import annotations

import asyncio
import pathlib
import signal
import time

from halb.config.keepalived_model import GlobalDefs
from halb.vrrp.notify import Resolved, ScriptRunner


def _script(tmp: pathlib.Path, body: str) -> str:
    path = tmp / "s.sh"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_a_notify_script_outlives_the_daemon(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    script = _script(tmp_path, f"sleep 0.3; echo \"$1\" > {out}")
    runners: list[ScriptRunner] = []

    async def main() -> None:
        runner = ScriptRunner(GlobalDefs(), lambda message: None)
        runners.append(runner)
        runner.spawn(Resolved((script, "stop"), None, "root"), 30.0)
        assert len(runner.spawned) == 1
        await runner.drain()  # (what a stopping daemon does: returns at once)

    asyncio.run(main())  # the loop ends, the script is still sleeping
    end = time.monotonic() + 5
    while not out.exists() and time.monotonic() < end:
        time.sleep(0.02)
    assert out.read_text() == "stop\n"
    for spawned in runners[0].spawned:
        spawned.proc.wait(5)  # (reaped here: the daemon's process would have exited)


def test_a_notify_script_is_ended_after_its_timeout_and_reaped(tmp_path: pathlib.Path) -> None:
    script = _script(tmp_path, "exec sleep 30")

    async def main() -> None:
        runner = ScriptRunner(GlobalDefs(), lambda message: None)
        runner.spawn(Resolved((script,), None, "root"), 0.2)
        (spawned,) = runner.spawned
        started = time.monotonic()
        await runner.drain(wait=5)
        assert not runner.spawned and time.monotonic() - started < 4
        assert spawned.proc.returncode == -signal.SIGTERM

    asyncio.run(main())


def test_a_script_that_cannot_start_is_logged(tmp_path: pathlib.Path) -> None:
    logged: list[str] = []

    async def main() -> None:
        runner = ScriptRunner(GlobalDefs(), logged.append)
        runner.spawn(Resolved((str(tmp_path / "missing"),), None, "root"), 1.0)
        assert not runner.spawned

    asyncio.run(main())
    assert logged and logged[0].startswith(f"Error exec-ing command '{tmp_path}/missing', "
                                           "error 2: ")
