"""ScriptRunner.drain: a stopping daemon returns only once every spawned script's process was
started (keepalived has forked its notify_stop scripts before it exits), however long starting
takes; it does not wait for them to finish unless asked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from halb.config.keepalived_model import GlobalDefs
from halb.vrrp import notify
from halb.vrrp.notify import Resolved, ScriptRunner


class _Proc:
    def __init__(self, done: asyncio.Event) -> None:
        self.done = done

    async def wait(self) -> int:
        await self.done.wait()  # (still running when the daemon goes)
        return 0


def test_drain_waits_until_every_spawned_script_is_started(
        monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[str, ...]] = []
    done: list[asyncio.Event] = []

    async def slow_exec(*argv: str, **kwargs: Any) -> _Proc:
        for _ in range(int(argv[1])):  # a busy machine: the fork takes a few iterations
            await asyncio.sleep(0.01)
        started.append(argv)
        return _Proc(done[0])

    monkeypatch.setattr(notify.asyncio, "create_subprocess_exec", slow_exec)

    async def main() -> None:
        done.append(asyncio.Event())
        runner = ScriptRunner(GlobalDefs(), lambda message: None)
        runner.spawn(Resolved(("/bin/stop", "3"), None, "root"), 30.0)
        runner.spawn(Resolved(("/bin/generic", "5"), None, "root"), 30.0)
        await runner.drain()
        assert sorted(started) == [("/bin/generic", "5"), ("/bin/stop", "3")]
        assert len(runner.tasks) == 2  # (started, not waited for)
        done[0].set()
        await asyncio.wait_for(asyncio.gather(*runner.tasks), 5)

    asyncio.run(main())
