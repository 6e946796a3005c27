"""health/ipvs.py: virtual_server blocks as ipvsadm commands, and HealthChanged events turned
into add / edit / delete of destinations, checked against the director's own table
(l4/service.py) so the commands are ones a director accepts."""

from __future__ import annotations

from halb.config.keepalived import load_text
from halb.config.keepalived_lvs import virtual_servers
from halb.health.events import HealthChanged
from halb.health.ipvs import IpvsSync, service_specs
from halb.l4.model import Forward, Op, Proto, ServiceKey
from halb.l4.service import ServiceTable

VS = "[198.18.0.100]:tcp:80"
RS1, RS2 = "[198.18.1.11]:tcp:80", "[198.18.1.12]:tcp:80"
SORRY = "[198.18.1.13]:tcp:80"

TEXT = """
virtual_server 198.18.0.100 80 {
    delay_loop 2
    lb_algo wrr
    lb_kind NAT
    persistence_timeout 50
    persistence_granularity 255.255.255.0
    protocol TCP
    sorry_server 198.18.1.13 80
    real_server 198.18.1.11 80 {
        weight 3
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 198.18.1.12 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
virtual_server fwmark 7 {
    lb_algo sh
    lb_kind DR
    real_server 198.18.0.11 0 {
        weight 2
        TCP_CHECK {
            connect_port 80
        }
    }
}
virtual_server_group WEB {
    198.18.0.101-102 8080
    fwmark 9
}
virtual_server group WEB {
    lb_algo rr
    lb_kind TUN
    protocol TCP
    real_server 198.18.0.12 8080 {
        TCP_CHECK {
            connect_port 8080
        }
    }
}
"""


def lvs():  # type: ignore[no-untyped-def]
    cfg = virtual_servers(load_text(TEXT, config_id="vm").config)
    # keepalived's own remark on the group's fwmark entry, and nothing else
    assert [w.message for w in cfg.warnings if "port will be ignored" not in w.message] == []
    return cfg


def ev(server: str, present: bool, weight: int = 1, sorry: bool = False,
       service: str = VS) -> HealthChanged:
    addr = server.split("]")[0][1:]
    return HealthChanged(service, server, addr, 80, present, weight, present, sorry)


def test_services() -> None:
    specs = [spec for _, spec in service_specs(lvs())]
    keys = [s.key for s in specs]
    assert keys == [ServiceKey(Proto.TCP, "198.18.0.100", 80), ServiceKey(Proto.FWM, fwmark=7),
                    ServiceKey(Proto.TCP, "198.18.0.101", 8080),
                    ServiceKey(Proto.TCP, "198.18.0.102", 8080),
                    ServiceKey(Proto.FWM, fwmark=9)]
    first = specs[0]
    assert (first.scheduler, first.persistent, first.netmask) == ("wrr", 50, "255.255.255.0")
    assert specs[1].scheduler == "sh" and specs[1].persistent == 0


def test_events_become_commands_a_table_accepts() -> None:
    sync = IpvsSync(lvs())
    table = ServiceTable()
    for cmd in sync.services():
        table.apply(cmd, 0.0)
    assert len(table.services) == 5

    def dests() -> dict[str, int]:
        view = table.view(0.0)
        svc = next(s for s in view.services if s.spec.key.addr == "198.18.0.100")
        return {d.spec.addr: d.spec.weight for d in svc.dests}

    cmds = sync.apply(ev(RS1, True, 3))
    assert [(c.op, c.dest.addr, c.dest.weight, c.dest.forward) for c in cmds if c.dest] == [
        (Op.ADD_DEST, "198.18.1.11", 3, Forward.MASQ)]
    for c in cmds + sync.apply(ev(RS2, True, 1)):
        table.apply(c, 0.0)
    assert dests() == {"198.18.1.11": 3, "198.18.1.12": 1}
    assert sync.apply(ev(RS1, True, 3)) == []  # nothing changed: no command
    edit = sync.apply(ev(RS1, True, 0))  # inhibit_on_failure / misc_dynamic: weight 0
    assert [c.op for c in edit] == [Op.EDIT_DEST]
    for c in edit + sync.apply(ev(RS2, False)):
        table.apply(c, 0.0)
    assert dests() == {"198.18.1.11": 0}
    for c in sync.apply(ev(SORRY, True, 1, sorry=True)) + sync.apply(ev(RS1, False)):
        table.apply(c, 0.0)
    assert dests() == {"198.18.1.13": 1}
    assert sync.apply(ev(RS2, False)) == []  # already absent
    assert sync.apply(ev("[198.18.9.9]:tcp:80", True)) == []  # not configured


def test_group_and_dr_and_tunnel() -> None:
    sync = IpvsSync(lvs())
    sync.services()
    fwm = sync.apply(ev("[198.18.0.11]:none:0", True, 2, service="FWM 7"))
    assert [(c.service.key.fwmark, c.dest.forward) for c in fwm if c.service and c.dest] == [
        (7, Forward.ROUTE)]
    grp = sync.apply(HealthChanged("[WEB]:0", "[198.18.0.12]:tcp:8080", "198.18.0.12", 8080,
                                   True, 1, True))
    assert [(c.service.key.addr, c.service.key.fwmark) for c in grp if c.service] == [
        ("198.18.0.101", 0), ("198.18.0.102", 0), ("", 9)]
    assert {c.dest.forward for c in grp if c.dest} == {Forward.TUNNEL}
    assert [c.op for c in sync.shutdown()] == [Op.DEL_SERVICE] * 5


def test_replay_gives_a_late_service_its_destinations() -> None:
    sync = IpvsSync(lvs())
    specs = [c.service for c in sync.services()]
    sync.apply(ev(RS1, True, 3))
    sync.apply(ev(RS2, True, 1))
    sync.apply(ev(RS2, False))
    replay = sync.replay(specs[0])  # type: ignore[arg-type]
    assert [(c.op, c.dest.addr, c.dest.weight) for c in replay if c.dest] == [
        (Op.ADD_DEST, "198.18.1.11", 3)]
    assert sync.replay(specs[1]) == []  # type: ignore[arg-type]
