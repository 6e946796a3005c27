"""`halb keepalived -C --dataplane userspace` on loopback (no root): the checker child builds
the L4 table from virtual_server blocks, serves the ipvsadm control socket, removes a real
server whose service stopped and adds it back, and removes everything on SIGTERM.

Real servers: `halb.testing.l4peers serve` on 127.6.0.11 / .12 (answering "A" / "B"); the VIP
127.6.0.10; checks short (delay_loop 1, connect_timeout 1, retry 1, delay_before_retry 0.3).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

PY = sys.executable
VIP = "127.6.0.10"
RS = {"A": "127.6.0.11", "B": "127.6.0.12"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((VIP, 0))
        return int(s.getsockname()[1])


def wait_for(what: Callable[[], object], timeout: float, why: Callable[[], str]) -> None:
    end = time.monotonic() + timeout
    while not what():
        if time.monotonic() > end:
            raise AssertionError(f"still false after {timeout}s\n{why()}")
        time.sleep(0.05)


def conf(port: int) -> str:
    servers = "".join(f"""
    real_server {addr} {port} {{
        weight 2
        TCP_CHECK {{
            connect_timeout 1
            retry 1
            delay_before_retry 0.3
        }}
    }}""" for addr in RS.values())
    return f"""virtual_server {VIP} {port} {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
{servers}
}}
"""


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, start_new_session=True, **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def serve(self, name: str, port: int) -> subprocess.Popen[bytes]:
        proc = self.start([PY, "-m", "halb.testing.l4peers", "serve", "--name", name,
                           "--host", RS[name], "--port", str(port)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        for proc in reversed(p.procs):
            p.kill(proc)


def test_keepalived_checker_on_loopback(procs: Procs, tmp_path: pathlib.Path) -> None:
    port = free_port()
    servers = {name: procs.serve(name, port) for name in RS}
    (tmp_path / "k.conf").write_text(conf(port))
    sock = str(tmp_path / "ipvsadm.sock")
    log = tmp_path / "k.log"
    with open(log, "w") as logf:
        ka = procs.start([PY, "-m", "halb", "keepalived", "-n", "-l", "-C", "--dataplane",
                          "userspace", "--ipvsadm-socket", sock, "-f", str(tmp_path / "k.conf"),
                          "-p", str(tmp_path / "k.pid"), "-c", str(tmp_path / "c.pid")],
                         stdout=logf, stderr=logf)
    env = dict(os.environ, HALB_IPVSADM_SOCKET=sock)

    def listing() -> str:
        out = subprocess.run([PY, "-m", "halb", "ipvsadm", "-L", "-n"], capture_output=True,
                             text=True, env=env, timeout=30)
        return out.stdout

    def why() -> str:
        return f"{listing()}\n{log.read_text()}"

    def names(n: int) -> list[str | None]:
        out = subprocess.run([PY, "-m", "halb.testing.l4peers", "probe", "--to",
                              f"{VIP}:{port}", "--count", str(n), "--timeout", "2"],
                             capture_output=True, text=True, timeout=60)
        return list(json.loads(out.stdout)["names"])

    wait_for(lambda: f"{RS['B']}:{port}" in listing(), 20, why)
    text = listing()
    assert f"TCP  {VIP}:{port} rr" in text, text
    assert f"  -> {RS['A']}:{port}" in text and "Masq    2" in text, text
    assert sorted(n or "" for n in names(4)) == ["A", "A", "B", "B"]

    wait_for(lambda: f"TCP connection to [{RS['A']}]:tcp:{port} success." in log.read_text(),
             10, why)
    procs.kill(servers["A"])
    wait_for(lambda: f"{RS['A']}:{port}" not in listing(), 1 + 1 * 2 + 0.3 + 5, why)
    assert names(4) == ["B"] * 4
    servers["A"] = procs.serve("A", port)
    wait_for(lambda: f"{RS['A']}:{port}" in listing(), 1 + 1 + 5, why)
    assert sorted(n or "" for n in names(4)) == ["A", "A", "B", "B"]

    os.killpg(ka.pid, signal.SIGTERM)
    assert ka.wait(15) == 0
    assert not os.path.exists(sock)
    assert names(1) == [None]  # the VIP's listener is gone
    assert f"Removing service [{RS['A']}]:tcp:{port}" in log.read_text()
