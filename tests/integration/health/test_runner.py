"""health/runner.py on loopback: real servers stopped and started again, the HealthChanged
stream, notify and quorum scripts, the sorry server, MISC_CHECK weights, shutdown.

Times are short (delay_loop 0.3 s) and every wait is bounded; the only timing asserted is the
issue's removal bound, with a generous margin.
"""

from __future__ import annotations

import asyncio
import functools
import pathlib
import time
from collections.abc import Callable, Coroutine

from halb.config.keepalived import load_text
from halb.config.keepalived_lvs import virtual_servers
from halb.health.events import HealthChanged
from halb.health.runner import HealthRunner

DELAY_LOOP, CONNECT_TIMEOUT, RETRY, DBR = 0.3, 0.3, 1, 0.2
BOUND = DELAY_LOOP + CONNECT_TIMEOUT * (RETRY + 1) + DBR * RETRY  # the issue's formula
MARGIN = 2.0  # scheduling on a busy 2-core machine


def aio(fn: Callable[..., Coroutine[object, object, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args: object, **kw: object) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kw), 60))

    return run


class Listener:
    """A TCP service on a loopback address that can be stopped and started again."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.host, self.port = host, port
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> Listener:
        async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.close()

        self.server = await asyncio.start_server(serve, self.host, self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


def notify_script(tmp: pathlib.Path) -> tuple[str, pathlib.Path]:
    log = tmp / "notify.log"
    script = tmp / "notify.sh"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    script.chmod(0o755)
    return str(script), log


async def wait_for(runner: HealthRunner, pred: Callable[[HealthChanged], bool],
                   timeout: float = 10.0, seen: list[HealthChanged] | None = None
                   ) -> HealthChanged:
    """The first event `pred` accepts; the ones before it go to `seen`."""
    deadline = time.monotonic() + timeout
    while True:
        ev = await asyncio.wait_for(runner.queue.get(), max(0.01, deadline - time.monotonic()))
        if pred(ev):
            return ev
        if seen is not None:
            seen.append(ev)


async def wait_file(path: pathlib.Path, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return path.read_text()
        await asyncio.sleep(0.02)
    raise AssertionError(f"{text!r} not in {path}")


def drain(runner: HealthRunner) -> list[HealthChanged]:
    out = []
    while not runner.queue.empty():
        out.append(runner.queue.get_nowait())
    return out


def tcp_rs(host: str, port: int, script: str) -> str:
    return f"""\
 real_server {host} {port} {{
  notify_up "{script} up {host}"
  notify_down "{script} down {host}"
  TCP_CHECK {{
   connect_timeout {CONNECT_TIMEOUT}
   retry {RETRY}
   delay_before_retry {DBR}
   warmup 0
  }}
 }}
"""


def runner_for(text: str, logs: list[str]) -> HealthRunner:
    cfg = virtual_servers(load_text(text, config_id="vm").config)
    assert [w.message for w in cfg.warnings if w.level == "warn"] == []
    return HealthRunner(cfg, log=logs.append, rng=lambda: 0.0)


@aio
async def test_a_stopped_service_is_removed_in_time_and_added_back(
        tmp_path: pathlib.Path) -> None:
    a, b = await Listener("127.0.0.2").start(), await Listener("127.0.0.3").start()
    script, log = notify_script(tmp_path)
    logs: list[str] = []
    runner = runner_for(f"virtual_server 127.0.0.1 80 {{\n protocol TCP\n lb_algo rr\n"
                        f" lb_kind NAT\n delay_loop {DELAY_LOOP}\n" +
                        tcp_rs("127.0.0.2", a.port, script) + tcp_rs("127.0.0.3", b.port, script)
                        + "}\n", logs)
    a_name = f"[127.0.0.2]:tcp:{a.port}"
    try:
        await runner.start()
        first = drain(runner)
        assert {(e.server, e.present, e.up) for e in first} == {
            (a_name, True, True), (f"[127.0.0.3]:tcp:{b.port}", True, True)}
        await asyncio.sleep(1.5)  # past BOOTSTRAP_DELAY: both checked and fine
        assert drain(runner) == []
        await a.stop()
        stopped = time.monotonic()
        ev = await wait_for(runner, lambda e: e.server == a_name)
        took = time.monotonic() - stopped
        assert (ev.present, ev.up, ev.weight, ev.serving) == (False, False, 0, False)
        assert took <= BOUND + MARGIN, f"removed after {took:.2f} s"
        assert "down 127.0.0.2" in await wait_file(log, "down 127.0.0.2")
        assert any(line.startswith("TCP_CHECK on service " + a_name) for line in logs)
        await a.start()
        ev = await wait_for(runner, lambda e: e.server == a_name)
        assert (ev.present, ev.up, ev.weight) == (True, True, 1)
        await wait_file(log, "up 127.0.0.2")
        assert drain(runner) == []  # the other server never changed
    finally:
        await runner.stop()
        await a.stop()
        await b.stop()
    assert {(e.server, e.present) for e in drain(runner)} == {
        (a_name, False), (f"[127.0.0.3]:tcp:{b.port}", False)}


@aio
async def test_sorry_server_and_quorum_scripts(tmp_path: pathlib.Path) -> None:
    a, b = await Listener("127.0.0.2").start(), await Listener("127.0.0.3").start()
    script, log = notify_script(tmp_path)
    logs: list[str] = []
    runner = runner_for(f"""\
virtual_server 127.0.0.1 80 {{
 protocol TCP
 lb_algo rr
 lb_kind NAT
 delay_loop {DELAY_LOOP}
 quorum 2
 quorum_up "{script} quorum-up"
 quorum_down "{script} quorum-down"
 sorry_server 127.0.0.9 8080
""" + tcp_rs("127.0.0.2", a.port, script) + tcp_rs("127.0.0.3", b.port, script) + "}\n", logs)
    sorry = "[127.0.0.9]:tcp:8080"
    try:
        await runner.start()
        await wait_file(log, "quorum-up")  # quorum is gained at start: quorum_up runs
        drain(runner)
        await b.stop()
        before: list[HealthChanged] = []
        ev = await wait_for(runner, lambda e: e.server == sorry, seen=before)
        assert (ev.present, ev.up, ev.weight, ev.sorry) == (True, True, 1, True)
        await wait_file(log, "quorum-down")
        # the live server left the table for the sorry server but is still alive
        still = [e for e in before if e.server.startswith("[127.0.0.2]")]
        assert [(e.present, e.up) for e in still] == [(False, True)]
        await b.start()
        ev = await wait_for(runner, lambda e: e.server == sorry)
        assert (ev.present, ev.up) == (False, False)
        await asyncio.sleep(0.1)
        assert {(e.server.split(":")[0], e.present) for e in drain(runner)} >= {
            ("[127.0.0.2]", True)}
        assert (await wait_file(log, "quorum-up")).count("quorum-up") == 2
    finally:
        await runner.stop()
        await a.stop()
        await b.stop()


@aio
async def test_http_and_misc_dynamic_through_the_runner(tmp_path: pathlib.Path) -> None:
    weight_file = tmp_path / "weight"
    weight_file.write_text("0\n")
    misc = tmp_path / "weight.sh"
    misc.write_text(f"#!/bin/sh\nexit $(cat {weight_file})\n")
    misc.chmod(0o755)
    status = {"code": b"200 OK"}

    async def web(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            await r.readuntil(b"\r\n\r\n")
            w.write(b"HTTP/1.0 " + status["code"] + b"\r\n\r\nhello")
            await w.drain()
        finally:
            w.close()

    server = await asyncio.start_server(web, "127.0.0.2", 0)
    port = server.sockets[0].getsockname()[1]
    logs: list[str] = []
    runner = runner_for(f"""\
virtual_server 127.0.0.1 80 {{
 protocol TCP
 lb_algo wrr
 lb_kind NAT
 delay_loop {DELAY_LOOP}
 real_server 127.0.0.2 {port} {{
  weight 3
  HTTP_GET {{
   url {{
    path /health
   }}
   connect_timeout 0.5
   retry 0
   delay_before_retry 0.2
   warmup 0
  }}
  MISC_CHECK {{
   misc_path {misc}
   misc_dynamic
   misc_timeout 2
   warmup 0
  }}
 }}
}}
""", logs)
    name = f"[127.0.0.2]:tcp:{port}"
    try:
        await runner.start()
        assert [(e.present, e.weight) for e in drain(runner)] == [(True, 3)]
        weight_file.write_text("12\n")  # misc_dynamic: weight 12 - 2
        ev = await wait_for(runner, lambda e: e.server == name)
        assert (ev.present, ev.up, ev.weight) == (True, True, 10)
        status["code"] = b"503 Service Unavailable"
        ev = await wait_for(runner, lambda e: e.server == name)
        assert (ev.present, ev.up) == (False, False)
        status["code"] = b"200 OK"
        ev = await wait_for(runner, lambda e: e.server == name)
        assert (ev.present, ev.up, ev.weight) == (True, True, 10)
        assert any(line.startswith("HTTP_CHECK on service") for line in logs)
    finally:
        await runner.stop()
        server.close()
        await server.wait_closed()

