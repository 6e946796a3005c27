"""halb.vrrp.priority: keepalived's vrrp_script rise/fall counter and the effective priority
(reference vrrp-keepalived.md §2.4), run by hand, outcome by outcome."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from halb.vrrp.priority import ScriptState, Tracker, clamp_weight, evaluate


def run(state: ScriptState, outcomes: str) -> list[tuple[bool, bool]]:
    """Feed "s"/"f" outcomes; (ok after it, changed) per step."""
    out = []
    for c in outcomes:
        changed = state.report(c == "s")
        out.append((state.ok, changed))
    return out


def test_initial_state_counts_as_ok_and_one_failure_fails_it() -> None:
    s = ScriptState(rise=2, fall=3)
    assert s.ok and s.result == 1  # rise - 1: INIT
    assert run(s, "f") == [(False, True)]
    assert s.result == 0


def test_initial_success_confirms_at_once() -> None:
    s = ScriptState(rise=2, fall=3)
    assert run(s, "s") == [(True, False)]
    assert s.result == 4  # rise + fall - 1


def test_fall_failures_in_a_row_to_fail_and_rise_successes_to_recover() -> None:
    s = ScriptState(rise=2, fall=3)
    run(s, "s")
    assert run(s, "ff") == [(True, False), (True, False)]
    assert run(s, "f") == [(False, True)]  # the third failure in a row
    assert run(s, "s") == [(False, False)]
    assert run(s, "s") == [(True, True)]  # the second success in a row


def test_an_interrupted_streak_starts_from_where_the_counter_is() -> None:
    s = ScriptState(rise=2, fall=3)
    run(s, "s")  # OK, counter 4
    assert [ok for ok, _ in run(s, "ffsff")] == [True, True, True, True, False]
    # 4 -> 3 -> 2 -> 3 -> 2 -> 1 (< rise): failed on the fifth outcome, not the third


def test_init_fail_starts_failed_and_needs_rise_successes() -> None:
    s = ScriptState(rise=3, fall=1, init_fail=True)
    assert not s.ok
    assert run(s, "sss") == [(False, False), (False, False), (True, True)]


def test_rise_and_fall_of_zero_are_taken_as_one() -> None:
    s = ScriptState(rise=0, fall=0)
    assert run(s, "fsf") == [(False, True), (True, True), (False, True)]


@given(st.integers(1, 5), st.integers(1, 5), st.lists(st.booleans(), max_size=40))
def test_counter_stays_in_range_and_ok_follows_streaks(rise: int, fall: int,
                                                      outcomes: list[bool]) -> None:
    """A counter, not a streak: from full health `fall` failures fail it, but a partly spent
    counter fails sooner; `rise` successes in a row always make it OK, `fall` failures KO."""
    s = ScriptState(rise, fall)
    run(s, "s")
    streak_ok, streak_ko = 0, 0
    for success in outcomes:
        was = s.ok
        s.report(success)
        assert 0 <= s.result <= rise + fall - 1
        streak_ok = streak_ok + 1 if success else 0
        streak_ko = 0 if success else streak_ko + 1
        if streak_ok >= rise:
            assert s.ok
        if streak_ko >= fall:
            assert not s.ok
        if s.ok != was:  # only a success turns it OK, only a failure KO
            assert s.ok == success


# -- effective priority ----------------------------------------------------------------------


@pytest.mark.parametrize(("base", "trackers", "expected"), [
    (100, [], (100, False)),
    (100, [Tracker("chk", 10, ok=True)], (110, False)),  # + while OK
    (100, [Tracker("chk", 10, ok=False)], (100, False)),
    (100, [Tracker("chk", -20, ok=False)], (80, False)),  # - while KO
    (100, [Tracker("chk", -20, ok=True)], (100, False)),
    (100, [Tracker("chk", 10, reverse=True, ok=True)], (90, False)),  # reverse: - while OK
    (100, [Tracker("chk", -20, reverse=True, ok=False)], (120, False)),  # reverse: + while KO
    (100, [Tracker("chk", 0, ok=False)], (100, True)),  # weight 0: FAULT while KO
    (100, [Tracker("chk", 0, ok=True)], (100, False)),
    (100, [Tracker("chk", 0, reverse=True, ok=True)], (100, True)),  # reverse: FAULT while OK
    (100, [Tracker("a", 10), Tracker("b", -30, ok=False), Tracker("eth1", -5, ok=False)],
     (75, False)),
    (250, [Tracker("chk", 10)], (254, False)),  # never above 254
    (5, [Tracker("chk", -20, ok=False)], (1, False)),  # never below 1
    (255, [Tracker("chk", -50, ok=False)], (255, False)),  # the owner's priority is fixed
    (255, [Tracker("chk", 0, ok=False)], (255, True)),  # but it can still go FAULT
    (1, [Tracker("chk", 254)], (254, False)),  # 254 is taken as 253
])
def test_evaluate(base: int, trackers: list[Tracker], expected: tuple[int, bool]) -> None:
    assert evaluate(base, trackers) == expected


def test_clamp_weight() -> None:
    assert [clamp_weight(w) for w in (-254, -253, 0, 253, 254)] == [-253, -253, 0, 253, 253]


def test_seed_002_dual_master_arithmetic() -> None:
    """Seed 002 3-13: check_nginx_alive weight 10 on the MASTER instance (priority 100): 110
    while nginx runs, 100 (the peer's priority) when it does not."""
    assert evaluate(100, [Tracker("check_nginx_alive", 10, ok=True)]) == (110, False)
    assert evaluate(100, [Tracker("check_nginx_alive", 10, ok=False)]) == (100, False)
