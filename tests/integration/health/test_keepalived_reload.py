"""SIGHUP reload of `halb keepalived -C --dataplane userspace` on loopback (no root): the same
file changes nothing (no flap, an open connection goes on), a new real server joins, a removed
one leaves, a broken file keeps the running configuration and says why with file:line. A client
loop runs through the first two reloads and loses no connection.

Real servers: `halb.testing.l4peers serve` on 127.6.1.11-13 ("A", "B", "C"), the VIP
127.6.1.10; short checks (delay_loop 1, connect_timeout 1).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import threading

import kaloop
from kaloop import PY, Procs, free_port, wait_for

VIP = "127.6.1.10"
RS = {"A": "127.6.1.11", "B": "127.6.1.12", "C": "127.6.1.13"}


def conf(port: int, names: str, extra: str = "") -> str:
    servers = "".join(f"""
    real_server {RS[n]} {port} {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}""" for n in names)
    return f"""virtual_server {VIP} {port} {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    {extra}
{servers}
}}
"""


def test_sighup_reload_on_loopback(procs: Procs, tmp_path: pathlib.Path) -> None:
    port = free_port(VIP)
    for name in RS:
        procs.serve(name, RS[name], port)
    path = tmp_path / "k.conf"
    path.write_text(conf(port, "AB"))
    sock = str(tmp_path / "ipvsadm.sock")
    log = tmp_path / "k.log"
    with open(log, "w") as logf:
        ka = procs.start([PY, "-m", "halb", "keepalived", "-n", "-l", "-C", "--dataplane",
                          "userspace", "--ipvsadm-socket", sock, "-f", str(path),
                          "-p", str(tmp_path / "k.pid"), "-c", str(tmp_path / "c.pid")],
                         stdout=logf, stderr=logf)

    def listing() -> str:
        return kaloop.listing(sock)

    def dests() -> set[str]:
        return {line.split()[1] for line in listing().splitlines()
                if line.startswith("  -> ") and "RemoteAddress" not in line}

    def why() -> str:
        return f"{listing()}\n{log.read_text()}"

    def names(n: int) -> list[str | None]:
        return kaloop.names(VIP, port, n)

    def reload(text: str | None, count: int) -> None:
        """SIGHUP, and wait until the checker's `count`th reload is over (done or refused)."""
        if text is not None:
            path.write_text(text)
        os.kill(ka.pid, signal.SIGHUP)  # the parent forwards it, as keepalived
        wait_for(lambda: (lambda t: t.count("Reloaded: ") + t.count("Reload failed"))(
            log.read_text()) >= count, 10, why)

    def checked(name: str) -> None:
        line = f"TCP connection to [{RS[name]}]:tcp:{port} success."
        wait_for(lambda: line in log.read_text(), 10, why)

    ab = {f"{RS['A']}:{port}", f"{RS['B']}:{port}"}
    wait_for(lambda: dests() == ab, 20, why)
    checked("A")
    checked("B")
    held = procs.start([PY, "-m", "halb.testing.l4peers", "probe", "--to", f"{VIP}:{port}",
                        "--count", "2", "--hold"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert held.stdin is not None and held.stdout is not None
    assert sorted(json.loads(held.stdout.readline())["names"]) == ["A", "B"]

    loop: list[str | None] = []
    stop = threading.Event()

    def client_loop() -> None:
        while not stop.is_set() and len(loop) < 2000:
            loop.extend(names(20))

    loader = threading.Thread(target=client_loop, daemon=True)
    loader.start()
    wait_for(lambda: loop, 20, why)

    # the same file: nothing moves, the open connections go on
    before = log.read_text()
    reload(None, 1)
    after = log.read_text()[len(before):]
    assert "Reloaded: 1 virtual server(s)" in after
    for word in ("Removing", "Adding", "Activating", "success"):
        assert word not in after, after
    for _ in range(3):  # reloads back to back: one after the other, nothing moves either
        os.kill(ka.pid, signal.SIGHUP)
    wait_for(lambda: log.read_text().count("Reloaded: ") >= 2, 10, why)
    held.stdin.write(b"again\n")
    held.stdin.flush()
    assert sorted(json.loads(held.stdout.readline())["names"]) == ["A", "B"]
    after = log.read_text()[len(before):]
    assert "Removing" not in after and "success" not in after, after

    # C joins: it gets traffic once its first check passed
    path.write_text(conf(port, "ABC"))
    os.kill(ka.pid, signal.SIGHUP)
    wait_for(lambda: f"TCP connection to [{RS['C']}]:tcp:{port} success." in log.read_text(),
             10, why)
    seen = len(loop)
    wait_for(lambda: "C" in loop[seen:], 20, why)
    stop.set()
    loader.join(60)
    assert None not in loop and len(loop) >= 40, loop  # no connection lost
    assert f"{RS['C']}:{port}" in dests()

    # B leaves; the connection to A goes on (B's closes: this data plane's expire_nodest_conn)
    path.write_text(conf(port, "AC"))
    os.kill(ka.pid, signal.SIGHUP)
    wait_for(lambda: dests() == {f"{RS['A']}:{port}", f"{RS['C']}:{port}"}, 10, why)
    assert f"service [{RS['B']}]:tcp:{port} no longer exist" in log.read_text()
    held.stdin.write(b"again\n")
    held.stdin.flush()
    again = json.loads(held.stdout.readline())["names"]
    assert sorted(n or "" for n in again) == ["", "A"]

    # a broken file: the running configuration stays, the reason with file:line
    path.write_text(conf(port, "A").replace("lb_algo rr", "lb_algo"))
    os.kill(ka.pid, signal.SIGHUP)
    wait_for(lambda: "Reload failed" in log.read_text(), 10, why)
    line = next(x for x in log.read_text().splitlines() if "Reload failed" in x)
    assert f"({path}: Line 3) *** Configuration line starting `lb_algo` is missing" in line
    assert dests() == {f"{RS['A']}:{port}", f"{RS['C']}:{port}"}
    assert sorted(n or "" for n in names(4)) == ["A", "A", "C", "C"]
    assert ka.poll() is None
