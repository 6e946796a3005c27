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
