"""health/state.py: keepalived's checker, real server and quorum state machine on a fake clock.

Times and orders follow keepalived 2.2.7's check_tcp.c / check_http.c / check_misc.c /
ipwrapper.c; the scenarios are the issue's: retry timing, rise on one success, the all-checkers
rule, quorum with hysteresis, alpha, misc_dynamic weights, inhibit_on_failure, sorry server,
notify scripts, omega.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from health_driver import Driver

from halb.health.events import Action, HealthChanged, Log, Probe, ProbeResult, RunScript

OK = ProbeResult(ok=True)
FAIL = ProbeResult(ok=False, message="Timeout connect")
VS = "[198.18.0.10]:tcp:80"
RS1, RS2, RS3, RS4 = (f"[198.18.0.{n}]:tcp:80" for n in (11, 12, 13, 14))
SORRY = "[198.18.0.99]:tcp:80"

Outcome = Callable[[Probe, float], ProbeResult]


def config(body: str, servers: str, head: str = "") -> str:
    return (f"{head}virtual_server 198.18.0.10 80 {{\n protocol TCP\n lb_algo rr\n lb_kind DR\n"
            f"{body}\n{servers}}}\n")


def tcp_server(n: int, extra: str = "", check: str = "") -> str:
    return (f" real_server 198.18.0.{n} 80 {{\n{extra}\n  TCP_CHECK {{\n{check}\n  }}\n }}\n")



def always(result: ProbeResult) -> Outcome:
    return lambda p, t: result


def per_server(**results: ProbeResult) -> Outcome:
    """results by the last octet: s11=FAIL ...; servers not named answer OK."""
    return lambda p, t: results.get("s" + p.id[1].split(".")[3].split("]")[0], OK)


def scripts(actions: list[Action]) -> list[tuple[str, str | None, bool]]:
    return [(a.reason, a.server, a.stopping) for a in actions if isinstance(a, RunScript)]


def logs(actions: list[Action]) -> list[str]:
    return [a.message for a in actions if isinstance(a, Log)]


# -- checkers: timing, retry, rise -----------------------------------------------------------

SEED = config(" delay_loop 6", tcp_server(11, check="connect_timeout 2\n retry 2\n"
                                                     "delay_before_retry 3\n warmup 0") +
              tcp_server(12, check="warmup 0"))


def test_start_puts_every_server_in_the_table_and_checks_after_a_second() -> None:
    d = Driver(SEED)
    assert d.changes() == [(RS1, True, 1, True), (RS2, True, 1, True)]
    assert d.h.next_deadline() == 1.0  # BOOTSTRAP_DELAY, warmup 0
    d.run(1.0, always(OK))
    assert d.times(RS1) == [1.0] and d.changes() == []


def test_a_failure_is_retried_retry_times_delay_before_retry_apart() -> None:
    d = Driver(SEED)
    d.take()
    d.run(1.0, always(OK))
    d.run(40.0, per_server(s11=FAIL))
    # first check ok at 1; at 7 it fails: retried at 10 and 13 (retry 2, 3 s apart), then it is
    # down; while down it keeps checking: 19, 22, 25, then 31 ...
    assert d.times(RS1) == [1.0, 7.0, 10.0, 13.0, 19.0, 22.0, 25.0, 31.0, 34.0, 37.0]
    assert d.times(RS2) == [1.0, 7.0, 13.0, 19.0, 25.0, 31.0, 37.0]


def test_down_only_after_the_last_retry_and_up_on_one_success() -> None:
    d = Driver(SEED)
    d.run(1.0, always(OK))
    d.take()
    fail_until = 20.0
    d.run(12.9, per_server(s11=FAIL))
    assert d.changes() == []  # 7 and 10 failed: still retrying
    d.run(13.0, per_server(s11=FAIL))
    assert d.changes() == [(RS1, False, 0, False)]
    assert d.h.table(VS)[RS1] == (False, 0, False)
    assert d.h.checker((VS, RS1, 0)) == (False, True, 0)
    d.run(22.0, lambda p, t: FAIL if "11" in p.id[1] and t < fail_until else OK)
    # 19 failed (a retry round begins), 22 succeeded: up at once
    assert d.changes() == [(RS1, True, 1, True)]
    acts = d.take()
    assert acts == []


def test_the_first_result_decides_without_retries() -> None:
    d = Driver(SEED)
    d.take()
    d.run(1.0, per_server(s11=FAIL))
    acts = d.take()
    assert "TCP_CHECK on service [198.18.0.11]:tcp:80 failed." in logs(acts)
    assert [(a.server, a.present) for a in acts if isinstance(a, HealthChanged)] == [
        (RS1, False)]


def test_detection_time_bound_of_the_issue() -> None:
    """A server that dies is removed within delay_loop + connect_timeout x (retry + 1) +
    delay_before_retry x retry (probes here take the full connect_timeout)."""
    d = Driver(SEED)
    d.run(1.0, always(OK))
    d.take()
    died = 1.5
    # each probe of the dead server answers after connect_timeout: model it by feeding the
    # result 2 s after the probe started
    h, pending, t = d.h, [], 1.0
    removed_at = None
    while removed_at is None and t < 60:
        deadline = h.next_deadline()
        ready = min([deadline or 1e9] + [p[0] for p in pending])
        t = ready
        for due_t, probe in [p for p in pending if p[0] <= t]:
            pending.remove((due_t, probe))
            for a in h.result(probe.id, FAIL if "11" in probe.id[1] else OK, t):
                if isinstance(a, HealthChanged) and a.server == RS1 and not a.present:
                    removed_at = t
        for probe in h.due(t):
            delay = 2.0 if "11" in probe.id[1] and t >= died else 0.0
            pending.append((t + delay, probe))
    assert removed_at is not None
    assert removed_at - died <= 6 + 2 * (2 + 1) + 3 * 2


def test_warmup_spreads_the_first_checks() -> None:
    d = Driver(config(" delay_loop 10", tcp_server(11) + tcp_server(12, check="warmup 4")),
               rng=0.5)
    # warmup defaults to delay_loop: 1 + 0.5 x 10; the second has its own warmup 4
    d.run(7.0, always(OK))
    assert d.times(RS1) == [6.0] and d.times(RS2) == [3.0]


# -- real servers: all checkers, notify, inhibit ---------------------------------------------

TWO_CHECKS = config(" delay_loop 5", """\
 real_server 198.18.0.11 80 {
  notify_up "/bin/up 11"
  notify_down /bin/down
  TCP_CHECK {
   warmup 0
   retry 0
  }
  TCP_CHECK {
   connect_port 8080
   warmup 0
   retry 0
  }
 }
""")


def test_a_server_is_up_only_when_all_its_checkers_pass() -> None:
    d = Driver(TWO_CHECKS)
    d.take()
    port_fails = lambda p, t: FAIL if p.checker.connect_port == 8080 else OK  # noqa: E731
    d.run(1.0, port_fails)
    acts = d.take()
    assert [(a.present, a.up) for a in acts if isinstance(a, HealthChanged)] == [(False, False)]
    assert scripts(acts) == [("notify_down", RS1, False)]
    d.run(6.0, always(FAIL))  # both down now: nothing more changes
    assert logs(d.take()) == ["TCP_CHECK on service [198.18.0.11]:tcp:80 failed."]
    d.run(11.0, port_fails)  # one passes again: still down
    assert logs(d.take()) == ["TCP connection to [198.18.0.11]:tcp:80 success."]
    d.run(16.0, always(OK))
    acts = d.take()
    assert [(a.present, a.up) for a in acts if isinstance(a, HealthChanged)] == [(True, True)]
    assert scripts(acts) == [("notify_up", RS1, False)]
    assert "Adding service [198.18.0.11]:tcp:80 to VS [198.18.0.10]:tcp:80" in logs(acts)


def test_inhibit_on_failure_keeps_the_server_with_weight_zero() -> None:
    d = Driver(config(" delay_loop 5\n inhibit_on_failure",
                      tcp_server(11, "weight 3", "warmup 0\n retry 0") +
                      tcp_server(12, "weight 2", "warmup 0")))
    assert d.changes() == [(RS1, True, 3, True), (RS2, True, 2, True)]
    d.run(1.0, per_server(s11=FAIL))
    acts = d.take()
    assert [(a.server, a.present, a.weight, a.up) for a in acts
            if isinstance(a, HealthChanged)] == [(RS1, True, 0, False)]
    assert "Disabling service [198.18.0.11]:tcp:80 of VS [198.18.0.10]:tcp:80" in logs(acts)
    acts = d.h.stop()
    assert logs(acts)[0] == ("Shutting down (inhibited) service [198.18.0.11]:tcp:80 from VS "
                             "[198.18.0.10]:tcp:80")
    assert [(a.server, a.present) for a in acts if isinstance(a, HealthChanged)] == [
        (RS1, False), (RS2, False)]


def test_inhibit_restores_the_weight_on_recovery() -> None:
    d = Driver(config(" delay_loop 5\n inhibit_on_failure",
                      tcp_server(11, "weight 3", "warmup 0\n retry 0")))
    d.take()
    d.run(1.0, always(FAIL))
    d.run(6.0, always(OK))
    assert d.changes() == [(RS1, True, 0, False), (RS1, True, 3, True)]


# -- quorum, hysteresis, sorry server --------------------------------------------------------

QUORUM = config(' delay_loop 5\n quorum 3\n hysteresis 1\n quorum_up "/bin/q up"\n'
                " quorum_down /bin/qdown\n sorry_server 198.18.0.99 80",
                "".join(tcp_server(n, check="warmup 0\n retry 0") for n in (11, 12, 13, 14)))


def failing(*octets: int) -> Outcome:
    return lambda p, t: FAIL if any(f".{o}]" in p.id[1] for o in octets) else OK


def test_quorum_is_gained_at_start_and_kept_down_to_quorum_minus_hysteresis() -> None:
    d = Driver(QUORUM)
    acts = d.take()
    # 4 >= 3 + 1: gained at start, quorum_up runs; the sorry server is not in the table
    assert scripts(acts) == [("quorum_up", None, False)]
    assert "Gained quorum 3+1=4 <= 4 for VS [198.18.0.10]:tcp:80" in logs(acts)
    assert SORRY not in [a.server for a in acts if isinstance(a, HealthChanged)]
    d.run(1.0, failing(11, 12))  # 2 left >= 3 - 1: still up
    assert d.h.has_quorum(VS) and scripts(d.take()) == []
    d.run(6.0, failing(11, 12, 13))  # 1 < 2: lost
    acts = d.take()
    assert not d.h.has_quorum(VS)
    assert scripts(acts) == [("quorum_down", None, False)]
    assert "Lost quorum 3-1=2 > 1 for VS [198.18.0.10]:tcp:80" in logs(acts)
    # the sorry server takes over; the live server leaves the table but stays alive
    table = d.h.table(VS)
    assert table[SORRY] == (True, 1, True)
    assert table[RS4] == (False, 0, True)


def test_quorum_comes_back_only_at_quorum_plus_hysteresis() -> None:
    d = Driver(QUORUM)
    d.run(1.0, failing(11, 12, 13, 14))
    d.take()
    assert d.h.table(VS)[SORRY] == (True, 1, True)
    d.run(6.0, failing(11, 12))  # 2 alive: below 3 + 1
    acts = d.take()
    assert not d.h.has_quorum(VS) and scripts(acts) == []
    assert [a.present for a in acts if isinstance(a, HealthChanged)] == [False, False]
    d.run(11.0, failing(11))  # 3: still below 4
    assert not d.h.has_quorum(VS)
    d.take()
    d.run(16.0, always(OK))  # 4: gained; the sorry server leaves, the servers come back
    acts = d.take()
    assert d.h.has_quorum(VS) and scripts(acts) == [("quorum_up", None, False)]
    table = d.h.table(VS)
    assert table[SORRY] == (False, 0, False)
    assert all(table[rs] == (True, 1, True) for rs in (RS1, RS2, RS3, RS4))


def test_sorry_server_inhibit_stays_in_the_table_with_weight_zero() -> None:
    d = Driver(QUORUM.replace("sorry_server 198.18.0.99 80", "sorry_server 198.18.0.99 80\n"
                              " sorry_server_inhibit"))
    assert (SORRY, True, 0, False) in d.changes()
    d.run(1.0, always(FAIL))
    assert d.h.table(VS)[SORRY] == (True, 1, True)


def test_alpha_starts_servers_down_and_the_sorry_server_serves() -> None:
    d = Driver(config(" alpha\n delay_loop 5\n sorry_server 198.18.0.99 80\n"
                      " quorum_down /bin/qd", tcp_server(11, "notify_down /bin/d11",
                                                         "warmup 0") + tcp_server(12)))
    acts = d.take()
    assert [(a.server, a.present, a.up) for a in acts if isinstance(a, HealthChanged)] == [
        (SORRY, True, True)]
    assert "Starting with quorum down 1-0=1 > 0 for VS [198.18.0.10]:tcp:80" in logs(acts)
    assert scripts(acts) == [("quorum_down", None, False)]
    d.run(1.0, always(FAIL))
    # still down: nothing changes in the table, but alpha runs notify_down for a first failure
    acts = d.take()
    assert [a for a in acts if isinstance(a, HealthChanged)] == []
    assert scripts(acts) == [("notify_down", RS1, False)]
    d.run(6.0, always(OK))
    acts = d.take()
    assert d.h.has_quorum(VS)
    assert d.h.table(VS)[RS1] == (True, 1, True)
    assert d.h.table(VS)[SORRY] == (False, 0, False)


# -- MISC_CHECK ------------------------------------------------------------------------------

MISC = config(" delay_loop 10", """\
 real_server 198.18.0.11 80 {
  weight 5
  MISC_CHECK {
   misc_path "/bin/check 11"
   misc_dynamic
   warmup 0
  }
 }
 real_server 198.18.0.12 80 {
  weight 1
 }
""")


def exits(*codes: int | None) -> Outcome:
    it = iter(codes)

    def outcome(p: Probe, t: float) -> ProbeResult:
        code = next(it)
        if code is None:
            return ProbeResult(signal=15, timed_out=True)
        return ProbeResult(exit_status=code)

    return outcome


def test_misc_dynamic_exit_codes_set_the_weight() -> None:
    d = Driver(MISC)
    d.take()
    d.run(1.0, exits(0))  # 0: the configured weight
    assert d.changes() == []
    d.run(11.0, exits(10))  # 10: weight 8
    assert d.changes() == [(RS1, True, 8, True)]
    d.run(21.0, exits(2))  # 2: weight 0, still up (no new connections)
    acts = d.take()
    changed = [a for a in acts if isinstance(a, HealthChanged)]
    assert [(a.present, a.weight, a.up, a.serving) for a in changed] == [(True, 0, True, False)]
    assert "Changing weight from 8 to 0 for active service [198.18.0.11]:tcp:80 of VS " \
           "[198.18.0.10]:tcp:80" in logs(acts)
    d.run(31.0, exits(1))  # 1: down (MISC_CHECK's retry defaults to 0)
    assert d.changes() == [(RS1, False, 0, False)]
    d.run(41.0, exits(12))  # up again with weight 10
    assert d.changes() == [(RS1, True, 10, True)]
    d.run(51.0, exits(None))  # killed after misc_timeout: down
    assert d.changes() == [(RS1, False, 0, False)]
    d.run(61.0, exits(0))
    assert d.changes() == [(RS1, True, 5, True)]


def test_misc_without_dynamic_only_exit_zero_passes() -> None:
    d = Driver(MISC.replace("   misc_dynamic\n", ""))
    d.take()
    d.run(1.0, exits(2))
    assert d.changes() == [(RS1, False, 0, False)]


def test_misc_rounds_start_from_when_the_script_started() -> None:
    d = Driver(MISC)
    t_probe: list[float] = []
    h = d.h
    for _ in range(3):
        t = h.next_deadline()
        assert t is not None
        (p,) = [p for p in h.due(t) if p.id[1] == RS1]
        t_probe.append(t)
        h.result(p.id, ProbeResult(exit_status=0), t + 4.0)  # the script took 4 s
    assert t_probe == [1.0, 11.0, 21.0]


def test_misc_retries() -> None:
    d = Driver(MISC.replace("misc_dynamic", "retry 2\n   delay_before_retry 2"))
    d.take()
    d.run(1.0, exits(0))
    d.run(15.0, exits(1, 1, 1))  # 11 fails, retried at 13 and 15, then down
    assert [t for t, s, _ in d.probes if s == RS1] == [1.0, 11.0, 13.0, 15.0]
    assert d.changes() == [(RS1, False, 0, False)]


# -- HTTP_GET --------------------------------------------------------------------------------

HTTP = config(" delay_loop 10", """\
 real_server 198.18.0.11 80 {
  HTTP_GET {
   warmup 0
   retry 1
   delay_before_retry 3
   url {
    path /a
   }
   url {
    path /b
   }
  }
 }
""")


def test_http_checks_one_url_per_round() -> None:
    d = Driver(HTTP)
    d.take()
    d.run(31.0, always(OK))
    assert [(t, u) for t, _, u in d.probes] == [(1.0, 0), (11.0, 1), (21.0, 0), (31.0, 1)]
    assert d.changes() == []


def test_http_failure_retries_the_same_url_then_rechecks_it_while_down() -> None:
    d = Driver(HTTP)
    d.take()
    d.run(11.0, always(OK))
    bad_b = lambda p, t: FAIL if p.url_index == 1 and t < 40 else OK  # noqa: E731
    d.run(60.0, bad_b)
    # /b fails at 21, retried at 24, down; the failed url is checked every
    # max(delay_before_retry, delay_loop) = 10 s; once it passes all urls are checked again
    assert [(t, u) for t, _, u in d.probes] == [
        (1.0, 0), (11.0, 1), (21.0, 0), (31.0, 1), (34.0, 1), (44.0, 1), (54.0, 0)]
    assert d.changes() == [(RS1, False, 0, False)]
    d.run(64.0, always(OK))
    # /a (54) and /b (64) pass: up
    assert d.changes() == [(RS1, True, 1, True)]


# -- stopping --------------------------------------------------------------------------------


def test_omega_runs_notify_down_and_quorum_down_when_stopping() -> None:
    text = config(" omega\n quorum_down /bin/qd", tcp_server(11, "notify_down /bin/d"))
    d = Driver(text)
    d.take()
    acts = d.h.stop()
    assert scripts(acts) == [("notify_down", RS1, True), ("quorum_down", None, True)]
    assert [(a.present, a.up) for a in acts if isinstance(a, HealthChanged)] == [(False, False)]
    d = Driver(text.replace(" omega\n", ""))
    d.take()
    assert scripts(d.h.stop()) == []


def test_ha_suspend_pauses_the_checks() -> None:
    d = Driver(config(" ha_suspend", tcp_server(11, check="warmup 0")))
    d.take()
    d.run(200.0, always(FAIL))
    assert d.probes == [] and d.changes() == []
    d.h.set_enabled(VS, True)
    d.run(400.0, always(FAIL))
    assert d.probes and d.changes() == [(RS1, False, 0, False)]


@pytest.mark.parametrize("res", [ProbeResult(unavailable=True)])
def test_a_probe_that_cannot_start_changes_nothing(res: ProbeResult) -> None:
    d = Driver(SEED)
    d.take()
    d.run(30.0, always(res))
    assert d.changes() == [] and d.times(RS1) == [1.0, 7.0, 13.0, 19.0, 25.0]
