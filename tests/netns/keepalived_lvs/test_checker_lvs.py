"""`halb keepalived -C` as an LVS director (issue 6 item 3): virtual_server blocks build the L4
table, TCP_CHECK removes a real server whose service stopped and adds it back when it returns,
the sorry_server takes over when every real server is down, quorum_up / quorum_down run, and
SIGTERM removes what the director created.

Topology: halb.testing.l4net.L4Net "nat" (client 198.18.0.200, VIP 198.18.0.100 on the
director, real servers 198.18.1.11-13 answering their names on port 80). Checks are short
(delay_loop 1, connect_timeout 1, retry 1, delay_before_retry 0.5) to keep the tests fast.
"""

from __future__ import annotations

import time

import pytest
from kalab import Recorder, wait_for

pytestmark = pytest.mark.root

DELAY_LOOP, CONNECT_TIMEOUT, RETRY, DELAY_BEFORE_RETRY = 1.0, 1.0, 1, 0.5
# keepalived's worst case from a failure to the removal, plus slack for a loaded machine
REMOVAL_BOUND = DELAY_LOOP + CONNECT_TIMEOUT * (RETRY + 1) + DELAY_BEFORE_RETRY * RETRY
SLACK = 3.0


def real_server(addr: str, extra: str = "") -> str:
    return f"""
    real_server {addr} 80 {{
        weight 1
        {extra}
        TCP_CHECK {{
            connect_port 80
            connect_timeout {CONNECT_TIMEOUT:g}
            retry {RETRY}
            delay_before_retry {DELAY_BEFORE_RETRY:g}
        }}
    }}"""


def conf(servers: list[str], extra: str = "", kind: str = "NAT") -> str:
    rs = "".join(real_server(a) for a in servers)
    return f"""global_defs {{
    router_id halb_lvs_test
    enable_script_security
    script_user root
}}
virtual_server 198.18.0.100 80 {{
    delay_loop {DELAY_LOOP:g}
    lb_algo rr
    lb_kind {kind}
    protocol TCP
    {extra}
    {rs}
}}
"""


RS = ["198.18.1.11", "198.18.1.12", "198.18.1.13"]


def names(net, count: int) -> list[str | None]:  # type: ignore[no-untyped-def]
    return list(net.probe(count, timeout=2.0)["names"])  # type: ignore[call-overload]


def test_removed_on_failure_and_added_back(lab) -> None:  # type: ignore[no-untyped-def]
    net, ka = lab(conf(RS))
    wait_for(lambda: set(ka.dests()) == {f"{a}:80" for a in RS}, 10, why=ka.why)
    rows = ka.dests()
    assert all(r[0] == "Masq" and r[1] == "1" for r in rows.values()), rows
    assert "TCP  198.18.0.100:80 rr" in ka.listing()
    assert sorted(n or "" for n in names(net, 6)) == ["rs1", "rs1", "rs2", "rs2", "rs3", "rs3"]

    rs1 = net.servers[0]
    ka.checked("198.18.1.11:80")  # so the failure is retried before the removal
    net._kill(rs1.procs.pop())
    stopped = time.monotonic()
    wait_for(lambda: "198.18.1.11:80" not in ka.dests(), REMOVAL_BOUND + SLACK, why=ka.why)
    removal = time.monotonic() - stopped
    assert removal <= REMOVAL_BOUND + SLACK
    assert set(ka.dests()) == {"198.18.1.12:80", "198.18.1.13:80"}
    after = names(net, 12)
    assert None not in after, after  # no new connection goes to the dead server
    assert set(after) == {"rs2", "rs3"}, after
    assert f"TCP_CHECK on service [198.18.1.11]:tcp:80 failed after {RETRY} retries" in (
        ka.log.read_text())

    net.start_server(rs1)
    returned = time.monotonic()
    wait_for(lambda: "198.18.1.11:80" in ka.dests(), DELAY_LOOP + CONNECT_TIMEOUT + SLACK,
             why=ka.why)
    assert time.monotonic() - returned <= DELAY_LOOP + CONNECT_TIMEOUT + SLACK
    assert ka.dests()["198.18.1.11:80"][:2] == ["Masq", "1"]
    again = names(net, 9)
    assert sorted(n or "" for n in again) == ["rs1"] * 3 + ["rs2"] * 3 + ["rs3"] * 3, again

    assert ka.stop() == 0
    assert not (ka.tmp / "ipvsadm.sock").exists()
    assert names(net, 2) == [None, None]  # the user-space listener is gone
    log = ka.log.read_text()
    assert "Starting Healthcheck child process" in log, log


def test_sorry_server_and_quorum_scripts(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    up, down = Recorder(tmp_path, "up.sh"), Recorder(tmp_path, "down.sh")
    extra = (f"sorry_server 198.18.1.13 80\n    quorum_up \"{up.script} up\"\n"
             f"    quorum_down \"{down.script} down\"")
    net, ka = lab(conf(RS[:2], extra))
    wait_for(lambda: set(ka.dests()) == {"198.18.1.11:80", "198.18.1.12:80"}, 10, why=ka.why)
    for addr in RS[:2]:
        ka.checked(f"{addr}:80")
    for s in net.servers[:2]:
        net._kill(s.procs.pop())
    wait_for(lambda: set(ka.dests()) == {"198.18.1.13:80"}, 2 * (REMOVAL_BOUND + SLACK),
             why=ka.why)
    wait_for(lambda: down.lines() == ["down"], 5, why=lambda: f"{down.lines()}\n{ka.why()}")
    assert set(names(net, 4)) == {"rs3"}  # the sorry server serves

    net.start_server(net.servers[0])
    wait_for(lambda: set(ka.dests()) == {"198.18.1.11:80"}, DELAY_LOOP + CONNECT_TIMEOUT
             + SLACK, why=ka.why)
    wait_for(lambda: "up" in up.lines(), 5, why=lambda: f"{up.lines()}\n{ka.why()}")
    assert set(names(net, 4)) == {"rs1"}  # the sorry server left
    assert down.lines() == ["down"]


def test_inhibit_on_failure_keeps_weight_zero(lab) -> None:  # type: ignore[no-untyped-def]
    net, ka = lab(conf(RS[:2], "inhibit_on_failure"))
    wait_for(lambda: len(ka.dests()) == 2, 10, why=ka.why)
    ka.checked("198.18.1.11:80")
    net._kill(net.servers[0].procs.pop())
    wait_for(lambda: ka.dests().get("198.18.1.11:80", ["", ""])[1] == "0",
             REMOVAL_BOUND + SLACK, why=ka.why)
    assert ka.dests()["198.18.1.12:80"][1] == "1"
    assert set(names(net, 4)) == {"rs2"}


def test_alpha_starts_servers_absent(lab) -> None:  # type: ignore[no-untyped-def]
    """With alpha a server whose check never passes is never in the table (without alpha it
    would be there from the start until its first check fails)."""
    net, ka = lab(conf(RS[:1], "alpha") + f"""
virtual_server 198.18.0.100 81 {{
    delay_loop {DELAY_LOOP:g}
    lb_kind NAT
    protocol TCP
    alpha
    {real_server("198.18.1.12").replace(" 80 {", " 81 {").replace("port 80", "port 81")}
}}
""")
    seen: set[str] = set()

    def poll() -> bool:
        seen.update(ka.dests())
        return "198.18.1.11:80" in seen

    wait_for(poll, 10, why=ka.why)
    end = time.monotonic() + 2 * DELAY_LOOP
    while time.monotonic() < end:
        seen.update(ka.dests())
    assert "198.18.1.12:81" not in seen, seen  # nothing listens on 81: never added
    assert set(names(net, 4)) == {"rs1"}


def test_nftables_dataplane(lab) -> None:  # type: ignore[no-untyped-def]
    net, ka = lab(conf(RS[:2]), dataplane="nftables")
    wait_for(lambda: len(ka.dests()) == 2, 10, why=ka.why)
    assert "halb" in ka.nft_tables()
    assert set(names(net, 4)) == {"rs1", "rs2"}
    ka.checked("198.18.1.11:80")
    net._kill(net.servers[0].procs.pop())
    wait_for(lambda: "198.18.1.11:80" not in ka.dests(), REMOVAL_BOUND + SLACK, why=ka.why)
    after = names(net, 6)
    assert set(after) == {"rs2"}, after
    assert ka.stop() == 0
    assert "halb" not in ka.nft_tables()


def test_userspace_service_waits_for_the_vip(lab) -> None:  # type: ignore[no-untyped-def]
    """A director without the VIP (a VRRP BACKUP's) cannot bind it in user space: the service
    comes in, with the destinations the checks found, once the VIP arrives (MASTER)."""
    from halb.testing.netns import ip

    def no_vip(net) -> None:  # type: ignore[no-untyped-def]
        ip("-n", net.director_ns, "addr", "del", f"{net.vip}/32", "dev", "eth0")

    net, ka = lab(conf(RS[:2]), before=no_vip)
    ka.checked("198.18.1.11:80")
    assert "198.18.0.100:80" not in ka.listing()
    assert names(net, 1) == [None]  # nobody answers for the VIP
    ip("-n", net.director_ns, "addr", "add", f"{net.vip}/32", "dev", "eth0")
    wait_for(lambda: set(ka.dests()) == {"198.18.1.11:80", "198.18.1.12:80"}, 5, why=ka.why)
    # the listener is bound just after the table shows the service, and the client's neighbour
    # entry for the VIP failed a moment ago: the first answer may take a retry
    wait_for(lambda: names(net, 1) != [None], 10, why=ka.why)
    assert set(names(net, 4)) == {"rs1", "rs2"}
    log = ka.log.read_text()
    assert "not in the data plane yet" in log and "ESRCH" not in log, log


def test_ha_suspend_pauses_checks_without_the_vip(lab) -> None:  # type: ignore[no-untyped-def]
    """ha_suspend: no checks while the VIP is elsewhere (a dead server stays in the table);
    they resume when the VIP arrives, and the dead server goes."""
    from halb.testing.netns import ip

    def no_vip(net) -> None:  # type: ignore[no-untyped-def]
        ip("-n", net.director_ns, "addr", "del", f"{net.vip}/32", "dev", "eth0")

    net, ka = lab(conf(RS[:2], "ha_suspend"), dataplane="nftables", before=no_vip)
    wait_for(lambda: "activating healthchecker for service [198.18.1.11]:tcp:80"
             in ka.log.read_text(), 5, why=ka.why)  # keepalived's "Deactivating" at start
    net._kill(net.servers[0].procs.pop())
    # unsuspended, the first check (1 s + up to warmup = delay_loop) would remove it at once
    time.sleep(2 * DELAY_LOOP + 1.5)
    assert set(ka.dests()) == {"198.18.1.11:80", "198.18.1.12:80"}, ka.why()
    assert "TCP_CHECK on service" not in ka.log.read_text()
    ip("-n", net.director_ns, "addr", "add", f"{net.vip}/32", "dev", "eth0")
    wait_for(lambda: set(ka.dests()) == {"198.18.1.12:80"}, 2 * DELAY_LOOP + REMOVAL_BOUND
             + SLACK, why=ka.why)
    assert set(names(net, 3)) == {"rs2"}
    assert "Activating healthchecker for service [198.18.1.12]:tcp:80" in ka.log.read_text()
