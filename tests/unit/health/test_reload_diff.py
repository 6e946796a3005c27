"""health/reload.py: keepalived's checker reload on a fake clock — the diff of two
configurations, the health state carried over (no flap, no re-check, retry counters and
in-flight probes kept) and the director commands that change only the difference.
"""

from __future__ import annotations

from collections.abc import Callable

from health_driver import Driver, lvs_of

from halb.health.events import Action, HealthChanged, Log, Probe, ProbeResult, RunScript
from halb.health.ipvs import IpvsSync
from halb.health.reload import checker_key, diff, reload_state, reload_sync
from halb.l4.model import Op

OK = ProbeResult(ok=True)
FAIL = ProbeResult(ok=False, message="Timeout connect")
VS = "[198.18.0.10]:tcp:80"
VS2 = "[198.18.0.20]:tcp:80"
RS = {n: f"[198.18.0.{n}]:tcp:80" for n in range(11, 16)}
Outcome = Callable[[Probe, float], ProbeResult]


def rs(n: int, extra: str = "", check: str = "", port: int = 80) -> str:
    return (f" real_server 198.18.0.{n} 80 {{\n{extra}\n  TCP_CHECK {{\n connect_port {port}\n"
            f"{check}\n  }}\n }}\n")


def conf(servers: str, body: str = "", vip: str = "198.18.0.10", more: str = "") -> str:
    return (f"virtual_server {vip} 80 {{\n protocol TCP\n lb_algo rr\n lb_kind NAT\n"
            f" delay_loop 5\n{body}\n{servers}}}\n{more}")


RETRY = "retry 2\ndelay_before_retry 1"


def down(*octets: int) -> Outcome:
    names = {RS[n] for n in octets}
    return lambda p, t: FAIL if p.id[1] in names else OK


class Lab(Driver):
    """A HealthState and an IpvsSync that follow each other, as the checker process runs them."""

    def __init__(self, text: str) -> None:
        super().__init__(text, levels=("warn",))

    def setup(self) -> None:
        self.sync = IpvsSync(self.lvs)
        self.commands = [c.op for c in self.sync.services()]

    def _do(self, actions: list[Action]) -> None:
        self.actions += actions
        for a in actions:
            if isinstance(a, HealthChanged):
                self.commands += [c.op for c in self.sync.apply(a)]

    def reload(self, text: str):  # type: ignore[no-untyped-def]
        lvs = lvs_of(text)
        self.take()
        self.sync, cmds = reload_sync(self.sync, lvs)
        done = reload_state(self.h, lvs, self.now)
        self.h = done.state
        self._do(done.actions)  # the events' own commands come after the reload's
        self.commands = [(c.op, c.dest.addr if c.dest else c.service.key.addr) for c in cmds]
        return done

    def table(self, service: str = VS) -> dict[str, tuple[bool, int, bool]]:
        return self.h.table(service)


def logs(actions: list[Action]) -> list[str]:
    return [a.message for a in actions if isinstance(a, Log)]


def scripts(actions: list[Action]) -> list[tuple[str, str | None]]:
    return [(a.reason, a.server) for a in actions if isinstance(a, RunScript)]


# -- the diff ----------------------------------------------------------------------------------


def test_diff_names_what_changed() -> None:
    old = lvs_of(conf(rs(11) + rs(12) + rs(13)) + conf(rs(11), vip="198.18.0.20"))
    new = lvs_of(conf(rs(11) + rs(12, "weight 3") + rs(14), body="lb_algo wrr")
                 + conf(rs(11), vip="198.18.0.30"))
    d = diff(old, new)
    assert d.added == ("[198.18.0.30]:tcp:80",)
    assert d.removed == (VS2,)
    assert d.kept == (VS,) and d.edited == (VS,)
    s = d.servers[VS]
    assert s.added == (RS[14],) and s.removed == (RS[13],)
    assert s.kept == (RS[11], RS[12]) and s.changed == (RS[12],)
    assert not d.empty
    assert diff(old, lvs_of(conf(rs(11) + rs(12) + rs(13)) + conf(rs(11), vip="198.18.0.20"))
                ).empty


def test_a_checker_is_the_same_check_whatever_its_timings() -> None:
    a = lvs_of(conf(rs(11, check="connect_timeout 1\nretry 3\ndelay_before_retry 2")))
    b = lvs_of(conf(rs(11, check="connect_timeout 4\nretry 1")))
    c = lvs_of(conf(rs(11, port=81)))
    key = [checker_key(x.virtual_servers[0].real_servers[0].checkers[0]) for x in (a, b, c)]
    assert key[0] == key[1] != key[2]


# -- the state carried over ----------------------------------------------------------------------


def test_reloading_the_same_file_changes_nothing_and_rechecks_nothing() -> None:
    text = conf(rs(11, check=RETRY) + rs(12, check=RETRY) + rs(13, check=RETRY))
    lab = Lab(text)
    lab.run(20.0, down(12))
    assert lab.table()[RS[12]] == (False, 0, False)
    deadline = lab.h.next_deadline()
    done = lab.reload(text)
    assert lab.commands == []  # the director hears nothing
    assert [a for a in lab.take() if not isinstance(a, Log)] == []  # no event, no script
    assert lab.h.next_deadline() == deadline  # the same schedule: no check now
    assert lab.table() == {RS[11]: (True, 1, True), RS[12]: (False, 0, False),
                           RS[13]: (True, 1, True)}
    assert len(done.ids) == 3 and all(old == new for old, new in done.ids.items())
    lab.run(60.0, down())  # rs12 recovers: one success adds it back
    assert lab.changes() == [(RS[12], True, 1, True)]


def test_the_retry_count_of_a_failing_server_goes_on_across_a_reload() -> None:
    text = conf(rs(11, check=RETRY) + rs(12, check=RETRY))
    lab = Lab(text)
    lab.run(1.0)  # the first round passed
    lab.run(6.0, down(11))  # round 2 (t=6) failed: retry 1 of 2
    assert lab.h.checker((VS, RS[11], 0)) == (True, True, 1)
    lab.reload(text)
    assert lab.h.checker((VS, RS[11], 0)) == (True, True, 1)
    lab.run(7.0, down(11))  # retry 2 at t=7: not yet
    assert lab.changes() == []
    lab.run(8.0, down(11))  # the last retry: down, as without the reload
    assert lab.changes() == [(RS[11], False, 0, False)]


def test_a_probe_running_during_the_reload_reports_to_the_new_checker() -> None:
    lab = Lab(conf(rs(11)))
    lab.run(0.5)
    running = lab.h.due(1.0)
    assert [p.id for p in running] == [(VS, RS[11], 0)]
    new = conf(rs(11, check="connect_timeout 2") .replace(" real_server", " real_server", 1))
    # a MISC_CHECK put before the TCP_CHECK: the TCP_CHECK is now checker 1
    new = new.replace("  TCP_CHECK {", "  MISC_CHECK {\n misc_path /bin/true\n }\n  TCP_CHECK {")
    done = lab.reload(new)
    assert done.ids == {(VS, RS[11], 0): (VS, RS[11], 1)}
    assert lab.h.due(1.0) == []  # the TCP check is still running; the MISC_CHECK starts later
    lab._do(lab.h.result(done.ids[running[0].id], FAIL, 1.2))
    assert lab.changes() == [(RS[11], False, 0, False)]


def test_a_new_real_server_is_added_and_alpha_waits_for_its_first_check() -> None:
    lab = Lab(conf(rs(11)))
    lab.run(8.0)  # rs11 checked at 1 and 6; its next round is at 11
    lab.take()
    lab.reload(conf(rs(11) + rs(12) + rs(13, "alpha")))
    assert lab.changes() == [(RS[12], True, 1, True)]  # keepalived adds it at once
    assert lab.table()[RS[13]] == (False, 0, False)
    assert lab.commands == []  # nothing changed for rs11
    start = lab.now
    lab.run(start + 0.99)
    assert lab.changes() == []
    lab.run(start + 1.0)  # its first check: 1 s after the reload
    assert lab.changes() == [(RS[13], True, 1, True)]
    assert {s for t, s, _ in lab.probes if t > start} == {RS[12], RS[13]}  # rs11 not re-checked


def test_a_removed_real_server_leaves_the_table_and_runs_notify_down() -> None:
    extra = 'notify_down "/bin/echo down"'
    lab = Lab(conf(rs(11) + rs(12, extra) + rs(13)))
    lab.run(10.0)
    lab.take()
    lab.reload(conf(rs(11) + rs(13)))
    assert lab.commands == [(Op.DEL_DEST, "198.18.0.12")]
    actions = lab.take()
    assert scripts(actions) == [("notify_down", RS[12])]
    assert logs(actions) == [f"service {RS[12]} no longer exist",
                             f"Removing service {RS[12]} from VS {VS}"]
    assert [a for a in actions if isinstance(a, HealthChanged)] == []  # the others: no flap


def test_a_new_weight_is_an_edit() -> None:
    lab = Lab(conf(rs(11) + rs(12)))
    lab.run(10.0)
    lab.take()
    lab.reload(conf(rs(11, "weight 5") + rs(12)))
    assert lab.changes() == [(RS[11], True, 5, True)]
    assert lab.sync.dests[(VS, RS[11])].weight == 5


def test_services_added_removed_and_edited_without_a_flush() -> None:
    quorum = 'quorum_down "/bin/echo qdown"\n'
    lab = Lab(conf(rs(11)) + conf(rs(12), body=quorum, vip="198.18.0.20"))
    lab.run(10.0)
    lab.take()
    lab.reload(conf(rs(11), body="lb_algo wlc\npersistence_timeout 30")
               + conf(rs(13), vip="198.18.0.30"))
    assert lab.commands == [(Op.DEL_SERVICE, "198.18.0.20"), (Op.EDIT_SERVICE, "198.18.0.10"),
                            (Op.ADD_SERVICE, "198.18.0.30")]
    actions = lab.take()
    assert scripts(actions) == [("quorum_down", None)]
    assert f"Removing Virtual Server {VS2}" in logs(actions)
    assert [(a.service, a.server, a.present) for a in actions if isinstance(a, HealthChanged)
            ] == [("[198.18.0.30]:tcp:80", "[198.18.0.13]:tcp:80", True)]


def test_an_up_server_with_a_changed_checker_stays_up() -> None:
    lab = Lab(conf(rs(11) + rs(12)))
    lab.run(10.0)
    lab.take()
    lab.reload(conf(rs(11, port=8080) + rs(12)))
    assert lab.changes() == []
    assert lab.h.checker((VS, RS[11], 0)) == (True, False, 1)  # up, not run yet
    lab.run(lab.now + 1.0, down(11))  # the new check fails once: the first result decides
    assert lab.changes() == [(RS[11], False, 0, False)]


def test_a_down_server_whose_failing_checker_is_gone_comes_back() -> None:
    lab = Lab(conf(rs(11) + rs(12)))
    lab.run(10.0, down(11))
    assert lab.table()[RS[11]] == (False, 0, False)
    lab.take()
    lab.reload(conf(rs(11, port=8080) + rs(12)))  # keepalived: no failed checker -> up
    assert lab.changes() == [(RS[11], True, 1, True)]


def test_inhibit_on_failure_added_to_a_down_server_keeps_it_with_weight_zero() -> None:
    lab = Lab(conf(rs(11) + rs(12)))
    lab.run(10.0, down(11))
    lab.take()
    lab.reload(conf(rs(11, "inhibit_on_failure") + rs(12)))
    assert lab.changes() == [(RS[11], True, 0, False)]
    lab.reload(conf(rs(11) + rs(12)))
    assert lab.changes() == [(RS[11], False, 0, False)]


def test_the_sorry_server_in_use_and_removed_gives_the_pool_back() -> None:
    sorry = "sorry_server 198.18.0.99 80\nquorum 2\n"
    lab = Lab(conf(rs(11) + rs(12), body=sorry))
    lab.run(10.0, down(12))
    assert lab.table()["[198.18.0.99]:tcp:80"] == (True, 1, True)
    assert lab.table()[RS[11]] == (False, 0, True)  # alive, out of the pool
    lab.take()
    lab.reload(conf(rs(11) + rs(12), body="quorum 2\n"))
    assert lab.commands == [(Op.DEL_DEST, "198.18.0.99")]
    assert lab.changes() == [(RS[11], True, 1, True)]
    # and the same sorry server kept: nothing moves
    lab2 = Lab(conf(rs(11) + rs(12), body=sorry))
    lab2.run(10.0, down(12))
    lab2.take()
    lab2.reload(conf(rs(11) + rs(12), body=sorry))
    assert lab2.commands == [] and lab2.changes() == []


def test_a_dest_whose_forwarding_method_changed_is_edited_in_place() -> None:
    lab = Lab(conf(rs(11) + rs(12)))
    lab.run(10.0)
    lab.reload(conf(rs(11, "lvs_method DR") + rs(12)))
    assert lab.commands == [(Op.EDIT_DEST, "198.18.0.11")]
    assert lab.changes() == []


def test_misc_dynamic_weight_is_carried_over() -> None:
    misc = (" real_server 198.18.0.11 80 {\n weight 1\n MISC_CHECK {\n misc_path /bin/true\n"
            " misc_dynamic\n }\n }\n")
    lab = Lab(conf(misc))
    lab.run(1.0, lambda p, t: ProbeResult(exit_status=12))  # weight 12 - 2 = 10
    assert lab.table()[RS[11]] == (True, 10, True)
    lab.take()
    lab.reload(conf(misc.replace("weight 1", "weight 3")))
    assert lab.changes() == []  # still exit 12: still weight 10
    assert lab.table()[RS[11]] == (True, 10, True)


def test_a_group_that_gains_and_loses_addresses() -> None:
    def grouped(*vips: str) -> str:
        lines = "".join(f" {v} 80\n" for v in vips)
        return (f"virtual_server_group G {{\n{lines}}}\nvirtual_server group G {{\n"
                f" protocol TCP\n lb_algo rr\n lb_kind NAT\n delay_loop 5\n{rs(11)}{rs(12)}}}\n")

    lab = Lab(grouped("198.18.0.10", "198.18.0.20"))
    lab.run(10.0)
    lab.take()
    lab.reload(grouped("198.18.0.10", "198.18.0.30"))
    assert lab.commands == [(Op.DEL_SERVICE, "198.18.0.20"), (Op.ADD_SERVICE, "198.18.0.30"),
                            (Op.ADD_DEST, "198.18.0.11"), (Op.ADD_DEST, "198.18.0.12")]
    assert lab.changes() == []


def test_moving_a_server_in_the_file_is_no_change() -> None:
    extra = 'notify_down "/bin/echo down"'
    old = lvs_of(conf(rs(11, extra) + rs(12)))
    new = lvs_of("\n\n" + conf(rs(12) + rs(11, extra)))  # other lines, other order
    assert diff(old, new).empty


def test_a_new_quorum_is_applied_at_once() -> None:
    body = 'sorry_server 198.18.0.99 80\nquorum_down "/bin/echo qdown"\n'
    lab = Lab(conf(rs(11) + rs(12) + rs(13), body=body))
    lab.run(10.0, down(13))
    lab.take()
    lab.reload(conf(rs(11) + rs(12) + rs(13), body=body + "quorum 3\n"))  # 2 alive < 3: lost
    actions = lab.take()
    assert "Lost quorum 3-0=3 > 2 for VS " + VS in logs(actions)
    assert scripts(actions) == [("quorum_down", None)]
    assert sorted((a.server, a.present) for a in actions if isinstance(a, HealthChanged)) == [
        (RS[11], False), (RS[12], False), ("[198.18.0.99]:tcp:80", True)]
