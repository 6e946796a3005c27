"""health/daemon.py's Checker.reload over an in-memory director (no root, no traffic): only the
difference reaches the director, a service the data plane could not take yet is retried with
its new settings, and a file that does not load changes nothing.
"""

from __future__ import annotations

import asyncio
import errno
import pathlib

from halb.config.keepalived import FatalConfigError, load_text
from halb.config.keepalived_lvs import virtual_servers
from halb.health.daemon import Checker
from halb.l4.model import Op
from halb.testing.fake_director import FakeDirector


def text(*vips: tuple[str, str]) -> str:
    return "".join(f"""virtual_server {vip} 80 {{
 protocol TCP
 lb_algo {algo}
 lb_kind NAT
 delay_loop 30
 real_server 127.0.0.2 80 {{
  TCP_CHECK {{
   connect_timeout 1
   warmup 30
  }}
 }}
}}
""" for vip, algo in vips)


def test_reload_with_a_pending_service(tmp_path: pathlib.Path) -> None:
    async def main() -> None:
        logs: list[str] = []
        first = load_text(text(("127.0.0.10", "rr"), ("127.0.0.20", "rr"))).config
        director = FakeDirector()
        checker = Checker(virtual_servers(first), director, logs.append,
                          socket=str(tmp_path / "ipvsadm.sock"))
        director.fail_next(errno.EADDRNOTAVAIL)  # .10 cannot be taken yet (no VIP)
        stop = asyncio.Event()
        ready = asyncio.Event()
        task = asyncio.create_task(checker.serve(stop, ready.set))
        await asyncio.wait_for(ready.wait(), 10)
        await asyncio.sleep(0)  # the start's events reach the director
        assert [c.service.key.addr for c in checker.pending] == ["127.0.0.10"]
        director.executed.clear()

        new = load_text(text(("127.0.0.10", "wlc"), ("127.0.0.20", "rr"),
                             ("127.0.0.30", "rr"))).config
        assert await checker.reload(lambda: new)
        ops = [(c.op, c.service.key.addr) for c in director.executed if c.service]
        assert (Op.ADD_SERVICE, "127.0.0.30") in ops
        assert all(addr != "127.0.0.20" for _, addr in ops)  # unchanged: not touched
        assert [c.service.scheduler for c in checker.pending] == ["wlc"]
        for _ in range(200):  # the retry (every second) takes it, with the new scheduler
            if not checker.pending:
                break
            await asyncio.sleep(0.05)
        assert checker.pending == []
        view = director.table.services
        assert {k.addr: s.spec.scheduler for k, s in view.items()} == {
            "127.0.0.10": "wlc", "127.0.0.20": "rr", "127.0.0.30": "rr"}
        assert all(len(s.dests) == 1 for s in view.values())

        def broken() -> None:
            raise FatalConfigError("*** Configuration line starting `lb_algo` is missing a "
                                   "parameter", None)

        director.executed.clear()
        assert not await checker.reload(broken)
        assert director.executed == []
        assert logs[-1].startswith("Reload failed, the running configuration is kept: ***")
        stop.set()
        await asyncio.wait_for(task, 10)
        assert director.table.services == {}

    asyncio.run(asyncio.wait_for(main(), 30))
