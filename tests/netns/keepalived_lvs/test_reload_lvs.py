"""SIGHUP reload of `halb keepalived` under load (issue 6 items 4 and 6: "a reload under load
loses no connection"), in network namespaces.

The daemon starts with a VRRP instance only (the VIP's MASTER, no checker child); a reload
that adds virtual_server blocks starts the checker child, the VRRP child reloads in place.
Then a client loop keeps opening connections through the VIP (batches of sequential
connections from four client addresses) while the checker reloads the same file and then a
file that adds a real server: no connection fails, no healthy server is removed or flaps (its
notify_down never runs, the log has no removal), open connections go on, and the new server
receives traffic once its first check passed. Then a reload removes a real server (no new
connection goes to it), and a broken file keeps the running configuration and says why with
file:line. Topology: halb.testing.l4net "nat" (client 198.18.0.200-203, VIP 198.18.0.100,
real servers 198.18.1.11-13); short checks (delay_loop 1, connect_timeout 1). The kernel data
plane (nftables, the default as root): its rules are replaced atomically and established flows
go on in conntrack. The user-space data plane's reload under load is
tests/integration/health/test_keepalived_reload.py (loopback, no root).
"""

from __future__ import annotations

import os
import signal
import threading

import pytest
from kalab import Recorder, wait_for
from test_seed_lvs import no_vip

pytestmark = pytest.mark.root

RS = ["198.18.1.11", "198.18.1.12", "198.18.1.13"]


def conf(servers: list[str], notify: str, algo: str = "rr") -> str:
    rs = "".join(f"""
    real_server {a} 80 {{
        weight 1
        notify_down "{notify} down {a}"
        TCP_CHECK {{
            connect_timeout 1
            retry 1
            delay_before_retry 0.5
        }}
    }}""" for a in servers)
    return f"""global_defs {{
    enable_script_security
    script_user root
}}
virtual_server 198.18.0.100 80 {{
    delay_loop 1
    lb_algo {algo}
    lb_kind NAT
    protocol TCP
    {rs}
}}
"""


VRRP = """global_defs {
    vrrp_version 3
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 100
    advert_int 0.2
    virtual_ipaddress {
        198.18.0.100
    }
}
"""


class Load:
    """Connections through the VIP, batch after batch, until stopped: every name answered."""

    def __init__(self, net, timeout: float = 3.0,  # type: ignore[no-untyped-def]
                 limit: int = 2000) -> None:
        self.net = net
        self.limit = limit  # connections at most (the load is bounded in count)
        self.timeout = timeout  # how long one connection may take before it counts as lost
        self.names: list[str | None] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and len(self.names) < self.limit:
                got = self.net.probe(40, sources=self.net.clients, timeout=self.timeout)["names"]
                self.names += got
        except BaseException as e:  # reported by stop()
            self.error = e

    def __enter__(self) -> Load:
        self._thread.start()
        wait_for(lambda: self.names or self.error, 20)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def test_reload_under_load_loses_nothing(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder(tmp_path)
    net, ka = lab(VRRP, dataplane="nftables", halves=(), before=no_vip,
                  ready="Entering MASTER STATE")
    assert "Healthcheck child" not in ka.log.read_text()  # VRRP only: no checker yet

    # the file gets virtual_server blocks: the reload starts the checker child
    ka.conf.write_text(VRRP + conf(RS[:2], rec.script))
    os.kill(ka.proc.pid, signal.SIGHUP)
    wait_for(lambda: "Initializing ipvs" in ka.log.read_text(), 20, why=ka.why)
    assert "Starting Healthcheck child process" in ka.log.read_text()
    assert ka.log.read_text().count("Starting VRRP child process") == 1  # reloaded in place
    wait_for(lambda: set(ka.dests()) == {f"{a}:80" for a in RS[:2]}, 10, why=ka.why)
    ka.checked(f"{RS[0]}:80")
    ka.checked(f"{RS[1]}:80")
    held, first = net.hold(4, sources=net.clients)
    assert sorted(n or "" for n in first) == ["rs1", "rs1", "rs2", "rs2"]

    with Load(net) as load:
        same = ka.reload()  # the same file
        grown = ka.reload(VRRP + conf(RS, rec.script))  # rs3 joins
        ka.checked(f"{RS[2]}:80")
        seen = len(load.names)
        wait_for(lambda: "rs3" in load.names[seen:] or load.error, 20, why=ka.why)
    assert load.error is None, load.error
    assert len(load.names) >= 80 and None not in load.names, load.names  # nothing lost
    assert "Reloaded: 1 virtual server(s)" in same and "Reloaded: 1" in grown
    for text in (same, grown):
        for word in ("Removing", "Adding alive", "Lost quorum", "failed"):
            assert word not in text, text
    assert rec.lines() == []  # no notify_down: no healthy server flapped
    assert set(ka.dests()) == {f"{a}:80" for a in RS}
    assert net.again(held) == first  # the connections open through both reloads go on

    # rs2 leaves: no new connection goes to it; its notify_down runs (it was alive)
    ka.reload(VRRP + conf([RS[0], RS[2]], rec.script))
    wait_for(lambda: f"{RS[1]}:80" not in ka.dests(), 10, why=ka.why)
    assert "rs2" not in net.probe(12, sources=net.clients, timeout=3.0)["names"]
    assert rec.lines() == [f"down {RS[1]}"]

    # a broken file: the running configuration stays and the log says why, with file:line
    broken = VRRP + conf(RS, rec.script).replace("lb_algo rr", "lb_algo")
    line = broken.splitlines().index("    lb_algo") + 1
    text = ka.reload(broken)  # the checker's parse refuses it (VRRP's reads no virtual_server)
    assert (f"Reload failed, the running configuration is kept: ({ka.conf}: Line {line}) *** "
            "Configuration line starting `lb_algo` is missing a parameter") in text, text
    names = net.probe(8, sources=net.clients, timeout=3.0)["names"]
    assert sorted(n or "" for n in names) == ["rs1"] * 4 + ["rs3"] * 4
    net.release(held)
    assert ka.stop() == 0

