"""Properties every nginx method keeps, whatever the peers' state and the request mix:
it never returns a down, unhealthy, tried, failed or full (max_conns) peer, and release()
keeps conns >= 0 and balanced with picks."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halb.balancing import Outcome, Peer, PickContext, create
from halb.balancing.nginx_peers import NginxBalancer, failed, seconds

METHODS: list[tuple[str, dict[str, Any], bool]] = [
    ("round_robin", {}, True),
    ("least_conn", {}, True),
    ("least_time", {}, True),
    ("least_time", {"measure": "last_byte", "inflight": True}, True),
    ("ip_hash", {}, False),
    ("hash", {}, False),
    ("hash", {"consistent": True}, False),
    ("random", {}, False),
    ("random", {"two": True}, False),
]

peer_st = st.fixed_dictionaries({
    "weight": st.integers(1, 5),
    "down": st.booleans(),
    "healthy": st.booleans(),
    "max_conns": st.sampled_from([0, 0, 1, 2]),
    "max_fails": st.sampled_from([0, 1, 2]),
    "fail_timeout": st.sampled_from([0, 1, 10]),
})

request_st = st.fixed_dictionaries({
    "dt": st.floats(0, 5),
    "client": st.binary(min_size=4, max_size=4),
    "key": st.text(max_size=6),
    "outcomes": st.lists(st.sampled_from(list(Outcome)), min_size=1, max_size=4),
    "hold": st.booleans(),  # keep the last attempt's connection open
})


def build(method: str, params: dict[str, Any], specs: list[dict[str, Any]], nbackup: int,
          allows_backup: bool) -> NginxBalancer:
    ps = [Peer(f"10.0.0.{i}:80", host=f"10.0.0.{i}", port=80, **s)
          for i, s in enumerate(specs)]
    cut = len(ps) - nbackup if allows_backup and nbackup < len(ps) else len(ps)
    b = create(method, ps[:cut], ps[cut:], **params)
    assert isinstance(b, NginxBalancer)
    return b


@pytest.mark.parametrize("method,params,allows_backup", METHODS)
@settings(max_examples=60, deadline=None)
@given(specs=st.lists(peer_st, min_size=1, max_size=5), nbackup=st.integers(0, 2),
       requests=st.lists(request_st, min_size=1, max_size=12), seed=st.integers(0, 2**16))
def test_never_returns_an_unusable_peer(method: str, params: dict[str, Any],
                                        allows_backup: bool, specs: list[dict[str, Any]],
                                        nbackup: int, requests: list[dict[str, Any]],
                                        seed: int) -> None:
    b = build(method, params, specs, nbackup, allows_backup)
    rng = random.Random(seed)
    now = 1000.0
    held: list[Peer] = []
    picks = releases = 0
    for r in requests:
        now += r["dt"]
        ctx = PickContext(now=now, rng=rng, client=r["client"], key=r["key"])
        seen: set[int] = set()
        for outcome in r["outcomes"][: b.tries()]:
            before = {id(p): (p.conns, failed(p, seconds(now))) for p in b.all_peers()}
            peer = b.pick(ctx)
            if peer is None:
                break
            picks += 1
            conns, was_failed = before[id(peer)]
            assert not peer.down and peer.healthy
            assert id(peer) not in seen, "the same peer twice in one request"
            assert not peer.max_conns or conns < peer.max_conns
            assert not was_failed or b.single
            seen.add(id(peer))
            if r["hold"] and outcome is Outcome.SUCCESS:
                held.append(peer)
                break
            b.release(peer, outcome, now, header_time=0.01, response_time=0.02)
            releases += 1
            if outcome is Outcome.SUCCESS:
                break
        if held and rng.random() < 0.5:
            b.release(held.pop(0), Outcome.SUCCESS, now, header_time=0.01, response_time=0.02)
            releases += 1
        assert all(p.conns >= 0 for p in b.all_peers())
        assert sum(p.conns for p in b.all_peers()) == picks - releases
    for p in held:
        b.release(p, Outcome.SUCCESS, now)
    assert all(p.conns == 0 for p in b.all_peers())


def _names(b: NginxBalancer, ids: set[int]) -> list[str]:
    return sorted(p.name for p in b.all_peers() if id(p) in ids)


def _state(peers: list[Peer]) -> list[tuple[Any, ...]]:
    return [(p.current_weight, p.effective_weight, p.conns, p.fails, p.checked) for p in peers]


@settings(max_examples=60, deadline=None)
@given(st.lists(peer_st, min_size=2, max_size=5), st.lists(st.booleans(), min_size=5, max_size=5),
       st.lists(st.tuples(st.floats(0, 5), st.booleans(), st.integers(0, 3)), max_size=25))
def test_round_robin_fast_path_is_the_reference(specs: list[dict[str, Any]],
                                                backups: list[bool],
                                                steps: list[tuple[float, bool, int]]) -> None:
    """pick_round_robin's one-loop path picks and updates exactly as with_backup over
    usable / wrr_step / take (the functions every other method uses)."""
    def build() -> NginxBalancer:
        peers = [Peer(f"p{i}", weight=s["weight"], down=s["down"], healthy=s["healthy"],
                      max_conns=s["max_conns"], max_fails=s["max_fails"],
                      fail_timeout=s["fail_timeout"]) for i, s in enumerate(specs)]
        return NginxBalancer([p for p, b in zip(peers, backups, strict=False) if not b],
                             [p for p, b in zip(peers, backups, strict=False) if b])

    fast, ref = build(), build()
    if not fast.peers or (len(fast.peers) == 1 and not fast.backup):
        return
    now = 100.0
    for dt, fail, attempts in steps:
        now += dt
        ctx_f = PickContext(now=now, rng=random.Random(1))
        ctx_r = PickContext(now=now, rng=random.Random(1))
        t = seconds(now)
        for _ in range(attempts + 1):
            a = fast.pick(ctx_f)
            b = ref.with_backup(ctx_r, lambda g, c=ctx_r, t=t: ref._round_robin(g, c, t))
            assert (a and a.name) == (b and b.name)
            assert _state(fast.all_peers()) == _state(ref.all_peers())
            for attr in ("tried", "backup_tried"):
                assert _names(fast, getattr(ctx_f, attr)) == _names(ref, getattr(ctx_r, attr))
            if a is None or b is None:
                break
            outcome = Outcome.FAILED if fail else Outcome.SUCCESS
            fast.release(a, outcome, now)
            ref.release(b, outcome, now)
