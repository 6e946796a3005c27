# ruff: noqa: RUF002 - the seed is quoted in its own script (fullwidth comma)
"""Two LVS directors with a VIP in play (issue 6 item 3: "only the director of the VRRP MASTER
receives the VIP's traffic") — seed 002 §4-13 (the master) and §4-14 (the backup) run as they
are by `halb keepalived` (VRRP and the checkers, nftables DR as the seeds' LVS) on two
directors of one LAN.

The seed's test list for 4-14: "关闭LVS master节点，然后再启动主节点LVS。期间访问...无影响" (stop the
LVS master, then start it again; access is not affected meanwhile). Clients reach the real
servers through the VIP via the MASTER only (the BACKUP's counters stay at 0 although its table
is the same); with the MASTER stopped the BACKUP takes the VIP and serves; the MASTER started
again takes it back (the seed's priority 100 preempts 50) and serves again. A client loop runs
through all of it: new connections are answered after each switch; connections in flight at a
switch may be lost, as with keepalived + IPVS without a connection-sync daemon.

Seed 003's master/backup pair (wrr 1:2, DR, TCP_CHECK with nb_get_retry) runs the same way:
its test list (§6 "lvs主备测试") is the same stop / start of the master.

Addresses as test_seed_lvs.py maps them (DR topology of halb.testing.l4net, 198.18.0.0/15):
VIP 198.18.0.100, real servers 198.18.0.11 / .12, directors 198.18.0.1 and 198.18.0.2, ens33 →
eth0.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from kalab import Keepalived, TwoDirectors, wait_for
from test_reload_lvs import Load
from test_seed_lvs import SEEDS, no_vip, seed

from halb.testing.netns import ip

pytestmark = pytest.mark.root

RS = {"198.18.0.11:80", "198.18.0.12:80"}
# seed 003's pair (its own addresses, already moved to 198.18.0.0/15 in the fixture) onto the
# same topology
MAP_003 = {"198.18.11.200": "198.18.0.100", "198.18.11.135": "198.18.0.11",
           "198.18.11.138": "198.18.0.12", "eno16777736": "eth0"}


def seed_003(name: str) -> str:
    text = (SEEDS / name).read_text()
    for old, new in MAP_003.items():
        text = text.replace(old, new)
    return text


SEED_PAIRS = {
    # seed 002 §4-14's test list: stop the LVS master, start it again: access unaffected
    "002-4-13+4-14": (seed("002_4-13_lvs_master.conf"), seed("002_4-14_lvs_backup.conf")),
    # seed 003 §6 "lvs主备测试": service keepalived stop on the master → the backup takes over
    # (备机自动切换); the master started again takes over again (主机自动上位). wrr 1:2, DR,
    # TCP_CHECK with the old nb_get_retry
    "003": (seed_003("003_lvs_master.conf"), seed_003("003_lvs_backup.conf")),
}


def settled(ka: Keepalived) -> int:
    """conns() once two readings 1.5 s apart agree: the director reads its DR flow counters on
    its own tick, so the connections of the last second before a switch show up late."""
    last = conns(ka)
    for _ in range(8):
        time.sleep(1.5)
        now = conns(ka)
        if now == last:
            return now
        last = now
    return last


def conns(ka: Keepalived) -> int:
    """The virtual service's Conns column of `ipvsadm -L -n --stats`."""
    out = ka.ipvsadm("-L", "-n", "--stats").stdout
    row = next(line for line in out.splitlines() if line.startswith("TCP  198.18.0.100:80"))
    return int(row.split()[2])


@pytest.mark.parametrize("pair", list(SEED_PAIRS))
def test_seed_pair_only_the_master_director_serves(lab, tmp_path, pair) -> None:  # type: ignore[no-untyped-def]
    master_conf, backup_conf = SEED_PAIRS[pair]
    assert "198.18.0.100" in master_conf and "198.18.0.100" in backup_conf  # mapped
    net, master = lab(master_conf, mode="dr", dataplane="nftables",
                      halves=(), before=no_vip, servers=2, topology=TwoDirectors)
    assert isinstance(net, TwoDirectors)
    (tmp_path / "backup").mkdir()
    backup = Keepalived(net, backup_conf, tmp_path / "backup",
                        "nftables", (), ns=net.director2_ns)
    try:
        def holds(ns: str) -> bool:
            return net.vip in ip("-n", ns, "addr", "show", "eth0").stdout

        wait_for(lambda: holds(net.director_ns), 10, why=master.why)
        wait_for(lambda: set(master.dests()) == RS and set(backup.dests()) == RS, 10,
                 why=backup.why)
        assert not holds(net.director2_ns)
        # a SYN sent to the old master's MAC just before the gratuitous ARP is lost and sent
        # again after 1 s, then 3 s: a client waits for that (10 s), a lost connection does not
        with Load(net, timeout=10.0, limit=6000) as load:
            wait_for(lambda: len(load.names) >= 40, 20)
            # the MASTER's director carries every connection; the BACKUP's, with the same
            # table, none
            wait_for(lambda: conns(master) >= 40, 10, why=master.why)
            assert conns(backup) == 0

            assert master.stop() == 0  # the LVS master goes
            wait_for(lambda: holds(net.director2_ns), 10, why=backup.why)
            served = len(load.names)
            wait_for(lambda: len(load.names) >= served + 40, 20)
            wait_for(lambda: conns(backup) >= 40, 10, why=backup.why)

            (tmp_path / "again").mkdir()  # and comes back: priority 100 takes the VIP back
            master = Keepalived(net, master_conf, tmp_path / "again", "nftables", ())
            wait_for(lambda: holds(net.director_ns) and not holds(net.director2_ns), 15,
                     why=master.why)
            wait_for(lambda: set(master.dests()) == RS, 10, why=master.why)
            before = settled(backup)
            served = len(load.names)
            wait_for(lambda: len(load.names) >= served + 40, 20)
            wait_for(lambda: conns(master) >= 40, 10, why=master.why)
        assert load.error is None, load.error
        # Access goes on: every switch is followed by answered connections (the waits above).
        # Connections around a switch can be lost, as with keepalived + IPVS: the directors
        # share no connection table (the seeds run no lvs_sync_daemon), so the new director
        # drops the non-SYN packets of a connection in flight, and a stopping director's table
        # can go a moment before its VIP (a SYN then meets the bare host: RST). At most one
        # batch of the load (40 connections) per switch, none after the last one.
        lost = [i for i, n in enumerate(load.names) if n is None]
        assert len(lost) <= 2 * 40, (lost, len(load.names))
        assert None not in load.names[-40:], load.names[-40:]
        assert set(load.names) - {None} == {"rs1", "rs2"}
        if pair == "003":  # wrr, weights 1 (rs1) and 2 (rs2)
            served_by = [n for n in load.names if n is not None]
            assert 1.5 <= served_by.count("rs2") / served_by.count("rs1") <= 2.5, served_by
        assert conns(backup) - before <= 1  # at most one in flight while the VIP moved back
        for ka in (master, backup):  # both at once
            os.killpg(ka.proc.pid, signal.SIGTERM)
        assert master.proc.wait(15) == 0 and backup.proc.wait(15) == 0
    finally:
        backup.close()
        master.close()
