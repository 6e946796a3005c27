"""Properties every IPVS scheduler keeps through any mix of picks, connection counts, overload
flags, weight edits, additions, deletions and health changes: it returns only a dest in the
service with weight > 0 and (except lblc's cached path) not overloaded, and it returns None only
when the kernel would ("no destination available")."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halb.balancing import Peer, PickContext, create
from halb.balancing.ipvs_common import IpvsBalancer

SCHEDULERS: list[tuple[str, dict[str, Any]]] = [
    ("rr", {}), ("wrr", {}), ("lc", {}), ("wlc", {}), ("sed", {}), ("nq", {}), ("fo", {}),
    ("ovf", {}), ("twos", {}), ("sh", {}), ("sh", {"sched_flags": ["sh-fallback", "sh-port"]}),
    ("dh", {}), ("lblc", {"expiration": 300}), ("lblcr", {"expiration": 300}),
    ("mh", {"table_size": 251}), ("mh", {"table_size": 251, "sched_flags": ["mh-fallback"]}),
]
# never None while some dest has weight > 0 and no overload flag
COMPLETE = {"rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "twos", "lblc", "lblcr"}

dest_st = st.fixed_dictionaries({
    "weight": st.integers(0, 4), "active": st.integers(0, 6), "inactive": st.integers(0, 300),
    "overloaded": st.booleans()})
op_st = st.one_of(
    st.tuples(st.just("pick"), st.integers(0, 2**32 - 1), st.integers(0, 65535),
              st.integers(0, 7), st.floats(0, 400)),
    st.tuples(st.just("conns"), st.integers(0, 9), st.integers(0, 6), st.integers(0, 300)),
    st.tuples(st.just("overload"), st.integers(0, 9), st.booleans()),
    st.tuples(st.just("weight"), st.integers(0, 9), st.integers(0, 4)),
    st.tuples(st.just("add"), st.integers(1, 4)),
    st.tuples(st.just("del"), st.integers(0, 9)),
    st.tuples(st.just("down"), st.integers(0, 9)),
    st.tuples(st.just("up"), st.integers(0, 9)),
)


def eligible(d: Peer, sched_name: str) -> bool:
    ok = d.weight > 0 and not d.overloaded
    return ok and d.active <= d.weight if sched_name == "ovf" else ok


@pytest.mark.parametrize("sched_name,params", SCHEDULERS)
@settings(max_examples=40, deadline=None)
@given(specs=st.lists(dest_st, min_size=0, max_size=5),
       ops=st.lists(op_st, min_size=1, max_size=30), seed=st.integers(0, 2**16))
def test_ipvs_invariants(sched_name: str, params: dict[str, Any], specs: list[dict[str, Any]],
                         ops: list[tuple[Any, ...]], seed: int) -> None:
    ps = []
    for i, s in enumerate(specs):
        p = Peer(f"P{i}", host=f"198.18.0.{10 + i}", port=80, weight=s["weight"])
        p.active, p.inactive, p.overloaded = s["active"], s["inactive"], s["overloaded"]
        ps.append(p)
    b = create(sched_name, ps, **params)
    assert isinstance(b, IpvsBalancer)
    rng = random.Random(seed)
    now = 0.0
    made = len(ps)
    for op in ops:
        kind = op[0]
        known = b.peers
        if kind == "pick":
            _, addr, port, dst, dt = op
            now += dt
            ctx = PickContext(now=now, rng=rng, client=addr.to_bytes(4, "big"), port=port,
                              daddr=bytes([198, 18, 9, dst]))
            got = b.pick(ctx)
            if got is None:
                if sched_name in COMPLETE or params.get("sched_flags") == ["sh-fallback",
                                                                          "sh-port"]:
                    assert not any(eligible(d, sched_name) for d in b.dests)
                elif sched_name == "ovf":
                    assert not any(eligible(d, "ovf") for d in b.dests)
            else:
                assert b.available(got) and any(got is d for d in b.dests)
                assert got.weight > 0
                if sched_name != "lblc":
                    assert not got.overloaded
                if sched_name == "ovf":
                    assert got.active <= got.weight
        elif kind == "add":
            p = Peer(f"N{made}", host=f"198.18.1.{made}", port=80, weight=op[1])
            made += 1
            b.add_dest(p)
            assert b.dests[0] is p
        elif known:
            p = known[op[1] % len(known)]
            if kind == "conns":
                p.active, p.inactive = op[2], op[3]
            elif kind == "overload":
                p.overloaded = op[2]
            elif kind == "weight":
                b.edit_dest(p, op[2])
            elif kind == "del" and b.available(p):
                b.del_dest(p)
                assert all(q is not p for q in b.dests + b.peers)
            elif kind == "down":
                b.peer_down(p)
                assert not b.available(p)
            elif kind == "up":
                b.peer_up(p)
                assert b.available(p) or p.down


@pytest.mark.parametrize("sched_name,params", SCHEDULERS)
def test_deepcopy_is_a_faithful_twin(sched_name: str, params: dict[str, Any]) -> None:
    # the nftables planner simulates picks on a deep copy: nothing may be keyed by id()
    import copy

    ps = [Peer(f"P{i}", host=f"198.18.0.{10 + i}", port=80, weight=1 + i % 3) for i in range(6)]
    b = create(sched_name, ps, **params)
    assert isinstance(b, IpvsBalancer)
    b.edit_dest(ps[1], 0)  # last_weight and availability must survive the copy
    ps[2].active = 3
    twin = copy.deepcopy(b)

    def run(bal: IpvsBalancer) -> list[str]:
        rng = random.Random(5)
        out = []
        for i in range(300):
            got = bal.pick(PickContext(now=i * 7.0, rng=rng, client=bytes([198, 18, 3, i % 251]),
                                       port=1000 + i, daddr=bytes([198, 18, 9, i % 5])))
            out.append("-" if got is None else got.name)
        return out

    assert run(twin) == run(b)
    assert all(p not in ps for p in twin.dests)  # the twin has its own peers
