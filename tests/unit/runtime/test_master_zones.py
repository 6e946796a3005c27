"""The master and upstream zones: a generation's zones are made with it (before its workers
fork), a reload makes new ones, and a worker that dies holding a zone's lock is unlocked
(nginx's "shared memory zone ... was locked by PID")."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from typing import Any

import pytest

from halb.config.nginx import load_text
from halb.runtime.listeners import ListenerSet
from halb.runtime.master import Generation, Master, _zones

CONF = """events {}
http {
    upstream z { zone shared 64k; server 127.0.0.1:1; server 127.0.0.1:2; }
    upstream p { server 127.0.0.1:3; }
}
"""


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def log(self, level: str, message: str) -> None:
        self.lines.append((level, message))

    def close(self) -> None:
        pass


@pytest.fixture
def master() -> Any:
    cfg = load_text(CONF)
    m = Master(cfg, lambda: cfg, Log(), ListenerSet())  # type: ignore[arg-type]
    m.current.zones = _zones(cfg)
    yield m
    os.close(m._wakeup_r)
    os.close(m._wakeup_w)


def test_a_generation_has_one_zone_per_zoned_upstream(master: Master) -> None:
    zones = master.current.zones
    assert list(zones) == ["z"]
    assert zones["z"].name == "shared" and zones["z"].slots == 2
    gen = Generation(1, master.current.config, [], None, zones=_zones(master.current.config))
    assert gen.zones["z"] is not zones["z"]  # a reload: new zones
    gen.close_zones()
    assert gen.zones == {}


def test_a_worker_dying_with_the_lock_is_unlocked(master: Master) -> None:
    zone = master.current.zones["z"]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            zone.acquire()
            os.write(w, b"x")
            time.sleep(30)
        finally:
            os._exit(1)
    try:
        master.current.workers[pid] = 0
        master.current.started[pid] = time.monotonic()
        assert select.select([r], [], [], 10)[0]
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert zone.holder == pid
        master._exited(pid, status)
        assert zone.holder == 0
        assert ("alert", f'shared memory zone "shared" was locked by {pid}') \
            in master.error_log.lines  # type: ignore[attr-defined]
        with zone:  # usable again
            pass
        assert master.respawn  # and the worker is replaced as usual
    finally:
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(r)
        os.close(w)


def test_a_worker_exiting_normally_touches_no_lock(master: Master) -> None:
    zone = master.current.zones["z"]
    with zone:
        master._exited(4_000_000, 0)  # some other pid
        assert zone.holder == os.getpid()  # held by this process: not the dead one's
    assert not any("locked" in m for _, m in master.error_log.lines)  # type: ignore[attr-defined]
