"""nginx_peers: the round-robin machinery every nginx method shares (ngx_http_upstream_round_robin.c).

Sequences, passive health (max_fails / fail_timeout with a fake clock), effective_weight
recovery, the single-peer case, the backup group, max_conns, down, tries(), and release().
"""

from __future__ import annotations

import random

import pytest

from halb.balancing import Outcome, Peer, PickContext, create
from halb.balancing.nginx_peers import (
    BACKUP,
    NginxBalancer,
    failed,
    seconds,
    take,
    total_weight,
    usable,
    weighted_bucket,
    wrr_step,
)


def ctx(now: float = 1000.0, **kw: object) -> PickContext:
    return PickContext(now=now, rng=random.Random(0), **kw)  # type: ignore[arg-type]


def peers(spec: str) -> list[Peer]:
    """"a:5 b c:down" -> peers named a, b, c."""
    out = []
    for item in spec.split():
        name, *rest = item.split(":")
        kw: dict[str, object] = {}
        for r in rest:
            if r in ("down", "backup"):
                kw[r] = True
            elif "=" in r:
                k, v = r.split("=")
                kw[k] = float(v) if k == "fail_timeout" else int(v)
            else:
                kw["weight"] = int(r)
        out.append(Peer(name, **kw))  # type: ignore[arg-type]
    return out


def rr(spec: str, backup: str = "") -> NginxBalancer:
    b = create("round_robin", peers(spec), peers(backup))
    assert isinstance(b, NginxBalancer)
    return b


def run(b: NginxBalancer, n: int, now: float = 1000.0,
        outcome: Outcome = Outcome.SUCCESS) -> str:
    out = []
    for _ in range(n):
        p = b.pick(ctx(now))
        out.append("-" if p is None else p.name)
        if p is not None:
            b.release(p, outcome, now)
    return "".join(out)


# -- smooth WRR --------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,n,want", [
    ("a:5 b c", 7, "aabacaa"),
    ("a:5 b c", 14, "aabacaa" * 2),
    ("a:3 b:2 c", 12, "abacba" * 2),
    ("a b c", 6, "abcabc"),
    ("a:2 b", 6, "aba" * 2),
    ("a:1 b:4", 10, "bbabb" * 2),
    ("a:down b:2 c", 6, "bcb" * 2),
    ("a b:down c:down", 3, "aaa"),
    ("a:down b:down", 2, "--"),
])
def test_round_robin_sequences(spec: str, n: int, want: str) -> None:
    assert run(rr(spec), n) == want


@pytest.mark.parametrize("spec,backup,n,want", [
    ("a:down b:down", "c d:2", 6, "dcd" * 2),
    ("a:down", "c d", 4, "cdcd"),
    ("a b", "c", 4, "abab"),  # backup unused while a primary is usable
    ("a:down", "c:down", 2, "--"),
])
def test_backup_group(spec: str, backup: str, n: int, want: str) -> None:
    assert run(rr(spec, backup), n) == want


def test_backup_switch_is_for_the_rest_of_the_request() -> None:
    b = rr("a b", "c d")
    c = ctx()
    first = b.pick(c)
    assert first is not None and first.name == "a"
    b.release(first, Outcome.FAILED, 1000)
    assert b.pick(c).name == "b"  # type: ignore[union-attr]
    third = b.pick(c)
    assert third is not None and third.backup and c.state[BACKUP]
    assert id(third) in c.backup_tried
    fourth = b.pick(c)
    assert fourth is not None and fourth.backup and fourth is not third
    assert b.pick(c) is None


def test_wrr_step_first_wins_ties_and_recovers_effective_weight() -> None:
    a, b = Peer("a", weight=3), Peer("b", weight=3)
    a.effective_weight = 1
    assert wrr_step([a, b]) is b  # 1 vs 3
    assert (a.current_weight, b.current_weight) == (1, -1)
    assert a.effective_weight == 2  # +1 per round it took part in
    assert wrr_step([]) is None
    c, d = Peer("c"), Peer("d")
    assert wrr_step([c, d]) is c


@pytest.mark.parametrize("weights,w,want", [
    ((1, 1, 1), 0, 0), ((1, 1, 1), 2, 2), ((3, 1, 2), 2, 0), ((3, 1, 2), 3, 1),
    ((3, 1, 2), 4, 2), ((3, 1, 2), 5, 2),
])
def test_weighted_bucket(weights: tuple[int, ...], w: int, want: int) -> None:
    ps = [Peer(str(i), weight=x) for i, x in enumerate(weights)]
    assert weighted_bucket(ps, w) is ps[want]
    assert total_weight(ps) == sum(weights)


def test_weighted_bucket_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        weighted_bucket([Peer("a")], 1)


# -- passive health ------------------------------------------------------------------------------

@pytest.mark.parametrize("max_fails,fails,now,checked,want", [
    (1, 1, 105, 100, True),
    (1, 1, 110, 100, True),  # now - checked <= fail_timeout: still out
    (1, 1, 111, 100, False),
    (2, 1, 105, 100, False),
    (0, 9, 105, 100, False),  # max_fails=0 disables the accounting
])
def test_failed(max_fails: int, fails: int, now: int, checked: int, want: bool) -> None:
    p = Peer("a", max_fails=max_fails, fail_timeout=10)
    p.fails, p.checked = fails, checked
    assert failed(p, now) is want


def test_time_is_whole_seconds() -> None:
    assert seconds(10.999) == 10
    p = Peer("a", max_fails=1, fail_timeout=1)
    b = rr("x")
    b.peers.append(p)  # two peers: not single
    p.fails, p.checked = 1, 100
    assert not usable(p, ctx(101.99))  # floor(101.99) - 100 = 1 <= 1
    assert usable(p, ctx(102.0))


def test_failure_takes_the_peer_out_for_fail_timeout() -> None:
    b = rr("a:max_fails=1:fail_timeout=10 b")
    a = b.peers[0]
    p = b.pick(ctx(1000))
    assert p is a
    b.release(a, Outcome.FAILED, 1000)
    assert (a.fails, a.accessed, a.checked, a.effective_weight) == (1, 1000, 1000, 0)
    assert run(b, 4, now=1005) == "bbbb"
    assert run(b, 4, now=1010) == "bbbb"  # 1010 - 1000 <= 10
    # after fail_timeout a takes part again, with effective weight 0 recovering by 1 a round
    assert run(b, 2, now=1011) == "bb"
    assert a.checked == 1000 and a.fails == 1 and a.effective_weight == 1
    assert run(b, 1, now=1011) == "a"
    assert a.checked == 1011  # chosen after fail_timeout: `checked` moves to now
    assert a.fails == 0  # then the success: accessed (1000) < checked (1011), live again
    assert run(b, 4, now=1012) == "baba"


def test_max_fails_counts_within_fail_timeout() -> None:
    b = rr("a:2:max_fails=2:fail_timeout=10 b:2")
    a = b.peers[0]
    b.pick(ctx(1000))
    b.release(a, Outcome.FAILED, 1000)
    assert a.fails == 1 and a.effective_weight == 1  # 2 - 2 // 2
    assert usable(a, ctx(1001))
    a.conns += 1
    b.release(a, Outcome.FAILED, 1001)
    assert a.fails == 2 and a.effective_weight == 0
    assert not usable(a, ctx(1011)) and usable(a, ctx(1012))


@pytest.mark.parametrize("weight,max_fails,failures,want", [
    (10, 3, 1, 7), (10, 3, 2, 4), (10, 3, 4, 0), (1, 2, 1, 1), (5, 0, 3, 5), (4, 1, 1, 0),
])
def test_effective_weight_drop(weight: int, max_fails: int, failures: int, want: int) -> None:
    b = rr(f"a:{weight}:max_fails={max_fails} b")
    a = b.peers[0]
    for _ in range(failures):
        a.conns += 1
        b.release(a, Outcome.FAILED, 1000)
    assert a.effective_weight == want


def test_effective_weight_recovers_one_per_selection_round() -> None:
    b = rr("a:4:max_fails=1:fail_timeout=0 b:4")
    a = b.peers[0]
    a.conns += 1
    b.release(a, Outcome.FAILED, 1000)
    assert a.effective_weight == 0
    seen = []
    for _ in range(5):
        p = b.pick(ctx(1001))
        seen.append(a.effective_weight)
        b.release(p, Outcome.SUCCESS, 1001)  # type: ignore[arg-type]
    assert seen == [1, 2, 3, 4, 4]


@pytest.mark.parametrize("outcome,fails_after", [
    (Outcome.SUCCESS, 0),
    (Outcome.NEXT, 0),  # NGX_PEER_NEXT takes the success branch of nginx's free
    (Outcome.FAILED, 2),
])
def test_release_after_recheck(outcome: Outcome, fails_after: int) -> None:
    b = rr("a:max_fails=3 b")
    a = b.peers[0]
    a.fails, a.accessed, a.checked, a.conns = 1, 1000, 1020, 1
    b.release(a, outcome, 1021)
    assert a.fails == fails_after and a.conns == 0


def test_success_does_not_reset_fails_before_a_recheck() -> None:
    b = rr("a:max_fails=3 b")
    a = b.peers[0]
    a.fails, a.accessed, a.checked, a.conns = 1, 1000, 1000, 1
    b.release(a, Outcome.SUCCESS, 1001)
    assert a.fails == 1


def test_release_keeps_conns_non_negative() -> None:
    b = rr("a b")
    b.release(b.peers[0], Outcome.SUCCESS, 0)
    assert b.peers[0].conns == 0


# -- single peer, max_conns, down, healthy -------------------------------------------------------

def test_single_peer_is_never_marked_failed() -> None:
    b = rr("a:max_fails=1")
    assert b.single
    a = b.peers[0]
    for t in range(5):
        p = b.pick(ctx(1000 + t))
        assert p is a
        b.release(a, Outcome.FAILED, 1000 + t)
        assert a.fails == 0 and a.effective_weight == 1
    assert a.checked == 0  # the single path does not touch checked


def test_single_peer_with_backup_is_not_single() -> None:
    b = rr("a:max_fails=1", "z")
    assert not b.single
    b.pick(ctx())
    b.release(b.peers[0], Outcome.FAILED, 1000)
    assert run(b, 2) == "zz"


@pytest.mark.parametrize("spec,backup,want", [
    ("a:down", "", None),
    ("a:max_conns=1", "", None),
    ("a:max_conns=2", "", "a"),
    ("a:max_conns=1 b:max_conns=1", "", "b"),
    ("a:max_conns=1 b:max_conns=1:down", "c", "c"),
])
def test_max_conns_and_down(spec: str, backup: str, want: str | None) -> None:
    b = rr(spec, backup)
    b.peers[0].conns = 1
    p = b.pick(ctx())
    assert (None if p is None else p.name) == want


def test_unhealthy_peers_are_skipped_like_down() -> None:
    b = rr("a b")
    b.peer_down(b.peers[0])
    assert run(b, 3) == "bbb"
    b.peer_up(b.peers[0])
    assert "a" in run(b, 3)
    single = rr("a")
    single.peer_down(single.peers[0])
    assert single.pick(ctx()) is None


def test_take_marks_the_request_and_the_peer() -> None:
    p = Peer("a", fail_timeout=10)
    c = ctx(50)
    assert take(p, c, 50) is p
    assert id(p) in c.tried and p.conns == 1 and p.checked == 50
    take(p, c, 55)
    assert p.checked == 50 and p.conns == 2


@pytest.mark.parametrize("spec,backup,want", [
    ("a", "", 1), ("a b c", "", 3), ("a b:down c", "", 2), ("a b", "c d:down", 3),
    ("a:down", "b", 1),
])
def test_tries(spec: str, backup: str, want: int) -> None:
    assert rr(spec, backup).tries() == want


def test_a_request_never_gets_the_same_peer_twice() -> None:
    b = rr("a:5 b c", "d")
    c = ctx()
    got = [b.pick(c) for _ in range(5)]
    assert [p.name if p else None for p in got] == ["a", "b", "c", "d", None]
