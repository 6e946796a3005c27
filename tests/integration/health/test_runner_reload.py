"""health/runner.py reload on loopback: a probe running while the configuration is swapped
either counts for the checker it continues as (its index in the real server moved), or is
cancelled with the checker the new file removed — and nothing flaps either way.
"""

from __future__ import annotations

import asyncio
import functools
import pathlib
import time
from collections.abc import Callable, Coroutine

from halb.config.keepalived import load_text
from halb.config.keepalived_lvs import virtual_servers
from halb.config.keepalived_lvs_model import LvsConfig
from halb.health.runner import HealthRunner

VS = "[127.0.0.1]:tcp:80"


def aio(fn: Callable[..., Coroutine[object, object, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args: object, **kw: object) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kw), 60))

    return run


def lvs(port: int, checks: str) -> LvsConfig:
    return virtual_servers(load_text(f"""\
virtual_server 127.0.0.1 80 {{
 protocol TCP
 lb_algo rr
 lb_kind NAT
 delay_loop 30
 real_server 127.0.0.2 {port} {{
{checks}
 }}
}}
""", config_id="vm").config)


def misc(script: pathlib.Path) -> str:
    return f"  MISC_CHECK {{\n   misc_path {script}\n   misc_timeout 10\n   warmup 0\n  }}\n"


TCP = "  TCP_CHECK {\n   connect_timeout 1\n   warmup 0\n  }\n"


async def running(runner: HealthRunner) -> None:
    end = time.monotonic() + 10
    while not any(c.running for c in runner.state.checks.values()):
        assert time.monotonic() < end, "no probe started"
        await asyncio.sleep(0.02)


@aio
async def test_a_probe_running_across_a_reload(tmp_path: pathlib.Path) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.2", 0)
    port = server.sockets[0].getsockname()[1]
    name = f"[127.0.0.2]:tcp:{port}"
    release = tmp_path / "go"
    slow = tmp_path / "slow.sh"  # fails, once the test lets it finish
    slow.write_text(f"#!/bin/sh\nwhile [ ! -e {release} ]; do sleep 0.02; done\nexit 1\n")
    slow.chmod(0o755)
    logs: list[str] = []
    runner = HealthRunner(lvs(port, misc(slow)), log=logs.append, rng=lambda: 0.0)
    try:
        await runner.start()
        assert runner.queue.get_nowait().present  # added at start
        await running(runner)
        # a TCP_CHECK comes first now: the running MISC_CHECK is checker 1
        done = runner.reload(lvs(port, TCP + misc(slow)))
        assert done.ids == {(VS, name, 0): (VS, name, 1)}
        assert runner.queue.empty()
        release.touch()
        ev = await asyncio.wait_for(runner.queue.get(), 10)
        assert (ev.server, ev.present, ev.up) == (name, False, False)
        assert f"Misc check for [{name} VS {VS}] by [{slow}] failed (exited with status 1)." \
            in logs
    finally:
        await runner.stop()
        server.close()
        await server.wait_closed()


@aio
async def test_a_probe_of_a_removed_checker_is_cancelled(tmp_path: pathlib.Path) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.2", 0)
    port = server.sockets[0].getsockname()[1]
    slow = tmp_path / "slow.sh"
    slow.write_text("#!/bin/sh\nsleep 30\nexit 1\n")
    slow.chmod(0o755)
    runner = HealthRunner(lvs(port, TCP + misc(slow)), rng=lambda: 0.0)
    try:
        await runner.start()
        assert runner.queue.get_nowait().present
        await running(runner)
        probes = list(runner._probes)
        done = runner.reload(lvs(port, TCP))  # the MISC_CHECK is gone
        assert list(done.ids.values()) == [(VS, f"[127.0.0.2]:tcp:{port}", 0)]
        await asyncio.wait(probes, timeout=5)
        assert all(t.done() for t in probes)  # the TCP one finished, the MISC one cancelled
        assert any(t.cancelled() for t in probes)
        await asyncio.sleep(0.2)
        assert runner.queue.empty()  # the server stays as it was: no event
    finally:
        await runner.stop()
        server.close()
        await server.wait_closed()
