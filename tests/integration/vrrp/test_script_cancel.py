"""A vrrp_script run cancelled while its script runs (the VRRP child stopping: SIGTERM, maybe
sent by the script itself, as the seeds' check_nginx does with `killall keepalived`) kills the
script and ends the tracker's loop; it used to be swallowed, so the loop ran the script again
and the child never exited (found by `halb lab run nginx_check`)."""

from __future__ import annotations

import asyncio
import os
import pathlib

from halb.config.keepalived_model import GlobalDefs
from halb.vrrp.notify import Resolved, ScriptRunner


def test_cancel_kills_the_script_and_propagates(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pid"
    script = tmp_path / "slow.sh"
    script.write_text(f"#!/bin/sh\necho $$ > {marker}\nexec sleep 30\n")
    script.chmod(0o755)
    runner = ScriptRunner(GlobalDefs(), lambda line: None)

    async def main() -> bool:
        task = asyncio.ensure_future(runner.run(Resolved((str(script),), None, "root"), 20.0))
        while not marker.exists() or not marker.read_text().strip():
            await asyncio.sleep(0.01)
        task.cancel()
        try:
            await asyncio.wait_for(task, 5)
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(main()), "the cancellation was swallowed"
    pid = int(marker.read_text())
    try:
        os.kill(pid, 0)
        alive = pathlib.Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except ProcessLookupError:
        alive = False
    assert not alive
