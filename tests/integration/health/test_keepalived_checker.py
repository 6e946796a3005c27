"""`halb keepalived -C --dataplane userspace` on loopback (no root): the checker child builds
the L4 table from virtual_server blocks, serves the ipvsadm control socket, removes a real
server whose service stopped and adds it back, and removes everything on SIGTERM.

Real servers: `halb.testing.l4peers serve` on 127.6.0.11 / .12 (answering "A" / "B"); the VIP
127.6.0.10; checks short (delay_loop 1, connect_timeout 1, retry 1, delay_before_retry 0.3).
"""

from __future__ import annotations

import os
import pathlib
import signal

import kaloop
from kaloop import PY, Procs, free_port, wait_for

VIP = "127.6.0.10"
RS = {"A": "127.6.0.11", "B": "127.6.0.12"}


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


def test_keepalived_checker_on_loopback(procs: Procs, tmp_path: pathlib.Path) -> None:
    port = free_port(VIP)
    servers = {name: procs.serve(name, RS[name], port) for name in RS}
    (tmp_path / "k.conf").write_text(conf(port))
    sock = str(tmp_path / "ipvsadm.sock")
    log = tmp_path / "k.log"
    with open(log, "w") as logf:
        ka = procs.start([PY, "-m", "halb", "keepalived", "-n", "-l", "-C", "--dataplane",
                          "userspace", "--ipvsadm-socket", sock, "-f", str(tmp_path / "k.conf"),
                          "-p", str(tmp_path / "k.pid"), "-c", str(tmp_path / "c.pid")],
                         stdout=logf, stderr=logf)

    def listing() -> str:
        return kaloop.listing(sock)

    def why() -> str:
        return f"{listing()}\n{log.read_text()}"

    def names(n: int) -> list[str | None]:
        return kaloop.names(VIP, port, n)

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
    servers["A"] = procs.serve("A", RS["A"], port)
    wait_for(lambda: f"{RS['A']}:{port}" in listing(), 1 + 1 + 5, why)
    assert sorted(n or "" for n in names(4)) == ["A", "A", "B", "B"]

    os.killpg(ka.pid, signal.SIGTERM)
    assert ka.wait(15) == 0
    assert not os.path.exists(sock)
    assert names(1) == [None]  # the VIP's listener is gone
    assert f"Removing service [{RS['A']}]:tcp:{port}" in log.read_text()
