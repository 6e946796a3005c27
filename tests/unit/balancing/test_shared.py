"""balancing.shared: SharedPeer / Zone / ZoneBalancer (`zone NAME [SIZE]` in an upstream).

1. A zone changes nothing about the algorithms: every nginx method, run on SharedPeers under a
   ZoneBalancer, makes the same picks and leaves the same peer state as on plain Peers, for any
   peers and request mix (differential, hypothesis), and the known sequences hold.
2. The state is shared: processes forked after the zone was made (as the master forks its
   workers) see one set of counters: the interleaved picks of two processes follow one smooth
   WRR sequence, max_conns holds across both, failures add up, and a process dying while it
   holds the lock does not wedge the others once the master force-unlocks it.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import random
import select
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halb.balancing import Balancer, Outcome, Peer, PickContext, create
from halb.balancing.least_time import inflight_of
from halb.balancing.shared import SHARED, SharedPeer, Zone, ZoneBalancer

METHODS: list[tuple[str, dict[str, Any], bool]] = [
    ("round_robin", {}, True),
    ("least_conn", {}, True),
    ("least_time", {}, True),
    ("least_time", {"measure": "last_byte", "inflight": True}, True),
    ("least_time", {"measure": "header", "inflight": True}, True),
    ("ip_hash", {}, False),
    ("hash", {}, False),
    ("hash", {"consistent": True}, False),
    ("random", {}, False),
    ("random", {"two": True}, False),
]

peer_st = st.fixed_dictionaries({
    "weight": st.integers(1, 5),
    "down": st.booleans(),
    "max_conns": st.sampled_from([0, 0, 1, 2]),
    "max_fails": st.sampled_from([0, 1, 2]),
    "fail_timeout": st.sampled_from([0, 1, 10]),
})

request_st = st.fixed_dictionaries({
    "dt": st.floats(0, 5),
    "client": st.binary(min_size=4, max_size=4),
    "key": st.text(max_size=6),
    "outcomes": st.lists(st.sampled_from(list(Outcome)), min_size=1, max_size=4),
    "hold": st.booleans(),
    "header": st.floats(0, 0.3),
    "unhealthy": st.integers(-1, 5),  # peer_down() on this peer index (-1: none)
})


def specs_of(peers: list[dict[str, Any]]) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    return [((f"10.0.0.{i}:80",), {"host": f"10.0.0.{i}", "port": 80, **p})
            for i, p in enumerate(peers)]


def split(ps: list[Any], nbackup: int, allows_backup: bool) -> tuple[list[Any], list[Any]]:
    cut = len(ps) - nbackup if allows_backup and nbackup < len(ps) else len(ps)
    return ps[:cut], ps[cut:]


def state(p: Peer) -> dict[str, Any]:
    out = {f.name: getattr(p, f.name) for f in fields(Peer)
           if f.name not in ("extra", "inflight_since")}
    inf = inflight_of(p)
    out["inflight"] = (inf.reqs, inf.last, inf.changed, inf.time)
    return out


def pair(method: str, params: dict[str, Any], peers: list[dict[str, Any]], nbackup: int,
         allows_backup: bool) -> tuple[Balancer, ZoneBalancer, Zone]:
    specs = specs_of(peers)
    plain = [Peer(*a, **kw) for a, kw in specs]
    zone = Zone("z", len(specs), "u")
    shared = zone.peers(specs)
    a = create(method, *split(plain, nbackup, allows_backup), **params)  # type: ignore[misc]
    b = ZoneBalancer(create(method, *split(shared, nbackup, allows_backup),  # type: ignore[misc]
                            **params), zone)
    return a, b, zone


# -- 1. the same algorithm ------------------------------------------------------------------


@pytest.mark.parametrize("method,params,allows_backup", METHODS)
@settings(max_examples=50, deadline=None)
@given(peers=st.lists(peer_st, min_size=1, max_size=5), nbackup=st.integers(0, 2),
       requests=st.lists(request_st, min_size=1, max_size=14), seed=st.integers(0, 2**16))
def test_shared_peers_pick_exactly_as_peers(method: str, params: dict[str, Any],
                                            allows_backup: bool, peers: list[dict[str, Any]],
                                            nbackup: int, requests: list[dict[str, Any]],
                                            seed: int) -> None:
    a, b, zone = pair(method, params, peers, nbackup, allows_backup)
    pa, pb = a.all_peers(), b.all_peers()
    assert all(isinstance(p, SharedPeer) for p in pb)
    assert a.tries() == b.tries()
    rng_a, rng_b = random.Random(seed), random.Random(seed)  # one for each balancer
    coin = random.Random(seed + 1)  # the test's own choices
    now = 1000.0
    held: list[tuple[Peer, Peer]] = []
    for r in requests:
        now += r["dt"]
        if 0 <= r["unhealthy"] < len(pa):
            a.peer_down(pa[r["unhealthy"]])
            b.peer_down(pb[r["unhealthy"]])
        ca = PickContext(now=now, rng=rng_a, client=r["client"], key=r["key"])
        cb = PickContext(now=now, rng=rng_b, client=r["client"], key=r["key"])
        for outcome in r["outcomes"][: a.tries()]:
            x, y = a.pick(ca), b.pick(cb)
            assert (None if x is None else pa.index(x)) == \
                (None if y is None else pb.index(y))
            if x is None or y is None:
                break
            if r["hold"] and outcome is Outcome.SUCCESS:
                held.append((x, y))
                break
            a.release(x, outcome, now, header_time=r["header"], response_time=2 * r["header"])
            b.release(y, outcome, now, header_time=r["header"], response_time=2 * r["header"])
            if outcome is Outcome.SUCCESS:
                break
        if held and coin.random() < 0.5:
            x, y = held.pop(0)
            a.release(x, Outcome.SUCCESS, now + 0.1, header_time=0.05, response_time=0.07)
            b.release(y, Outcome.SUCCESS, now + 0.1, header_time=0.05, response_time=0.07)
        for x, y in zip(pa, pb, strict=True):
            assert state(x) == state(y)
        # the per-request scratch too: algorithm state, tried peers (by position)
        assert ca.state == cb.state
        for ta, tb in ((ca.tried, cb.tried), (ca.backup_tried, cb.backup_tried)):
            assert [id(p) in ta for p in pa] == [id(p) in tb for p in pb]
        assert zone.holder == 0  # every call let go of the lock


@pytest.mark.parametrize("weights,want", [
    ([5, 1, 1], "0010200"),
    ([3, 2, 1], "010210"),
    ([4, 2], "010010"),
    ([2, 3, 5], "2102122012"),
])
def test_smooth_sequences_on_shared_peers(weights: list[int], want: str) -> None:
    zone = Zone("z", len(weights))
    ps = zone.peers([((str(i),), {"weight": w}) for i, w in enumerate(weights)])
    b = ZoneBalancer(create("round_robin", ps), zone)
    got = ""
    for _ in range(len(want) * 3):
        p = b.pick(PickContext(now=0, rng=random.Random(0)))
        assert p is not None
        got += str(p.index)
        b.release(p, Outcome.SUCCESS, 0)
    assert got == want * 3


def test_shared_peer_fields_and_defaults() -> None:
    zone = Zone("z", 2)
    p, q = zone.peers([(("a:80", "127.0.0.1", 80, 3), {"max_fails": 2}),
                       (("b:80",), {"backup": True, "down": True})])
    plain = Peer("a:80", "127.0.0.1", 80, 3, max_fails=2)
    assert state(p) == state(plain)
    assert p.effective_weight == 3 and p.healthy is True and p.conns == 0
    assert q.backup and q.down and q.weight == 1
    assert repr(p).startswith("SharedPeer('a:80', 127.0.0.1:80, w=3")
    assert {"conns", "fails", "checked", "accessed", "current_weight", "effective_weight",
            "healthy"} <= SHARED
    p.checked = 12.0
    p.healthy = False
    assert p.checked == 12.0 and p.healthy is False


def test_a_second_worker_attaches_to_the_state_instead_of_resetting_it() -> None:
    zone = Zone("z", 2)
    specs: list[tuple[tuple[Any, ...], dict[str, Any]]] = [(("a",), {"weight": 2}), (("b",), {})]
    first = zone.peers(specs)
    first[0].conns, first[0].fails, first[0].current_weight, first[1].checked = 3, 1, -2, 7.0
    inflight_of(first[0]).reqs = 4
    second = zone.peers(specs)  # what a respawned / other worker builds on the same zone
    assert second[0] is not first[0]
    assert (second[0].conns, second[0].fails, second[0].current_weight, second[1].checked) \
        == (3, 1, -2, 7.0)
    assert second[0].effective_weight == 2 and inflight_of(second[0]).reqs == 4
    second[1].fails = 9
    assert first[1].fails == 9


def test_zone_balancer_is_a_balancer() -> None:
    zone = Zone("z", 2)
    inner = create("hash", zone.peers([(("a",), {}), (("b",), {})]), consistent=True)
    b = ZoneBalancer(inner, zone)
    assert b.needs == inner.needs and b.name == "hash" and not b.allows_backup
    assert b.peers is inner.peers and b.tries() == 2 and b.all_peers() == inner.all_peers()
    assert b.ring() == inner.ring()  # an algorithm's own helpers stay reachable
    p = b.peers[0]
    b.peer_down(p)
    assert not p.healthy
    b.peer_up(p)
    b.weight_changed(p, 4)
    b.conn_started(p)
    b.conn_finished(p)
    assert p.healthy and p.weight == 4 and p.active == 0 and zone.holder == 0


def test_the_lock_is_released_when_the_algorithm_raises() -> None:
    zone = Zone("z", 1)
    b = ZoneBalancer(create("hash", zone.peers([(("a",), {})])), zone)
    with pytest.raises(AttributeError):
        b.pick(None)  # type: ignore[arg-type]
    assert zone.holder == 0
    with zone:  # free again
        assert zone.holder == os.getpid()


def test_slots_are_checked() -> None:
    zone = Zone("z", 1)
    with pytest.raises(IndexError):
        zone.views(1)
    zone.close()


def test_a_plain_group_pays_nothing() -> None:
    """Without a zone nothing changes: plain Peers, the algorithm's own class."""
    b = create("round_robin", [Peer("a"), Peer("b")])
    assert type(b).__name__ == "RoundRobin"
    assert type(b.peers[0]) is Peer


# -- 2. shared between processes ----------------------------------------------------------


@contextlib.contextmanager
def forked(*bodies: Callable[[], None], timeout: float = 20.0) -> Iterator[list[int]]:
    """Run each body in a forked child (exit status 0 when it returns, 1 when it raises);
    the caller's block runs meanwhile; every child is reaped, killed if it overstays."""
    pids: list[int] = []
    try:
        for body in bodies:
            pid = os.fork()
            if pid == 0:  # the child: never return into pytest
                code = 1
                try:
                    body()
                    code = 0
                except BaseException:
                    import traceback

                    traceback.print_exc()
                finally:
                    os._exit(code)
            pids.append(pid)
        yield pids
        deadline = time.monotonic() + timeout
        codes = {}
        while len(codes) < len(pids) and time.monotonic() < deadline:
            for pid in pids:
                if pid not in codes:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        codes[pid] = status
            time.sleep(0.01)
        assert len(codes) == len(pids), "a child overstayed"
        assert all(os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0 for s in codes.values()), codes
    finally:
        for pid in pids:
            with contextlib.suppress(ChildProcessError, ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


class Log:
    """A shared append-only log of small ints (a ticket counter and the entries)."""

    def __init__(self, n: int) -> None:
        self.mm = mmap.mmap(-1, (n + 1) * 8)
        self.v = memoryview(self.mm).cast("q")

    def append(self, x: int) -> None:  # call with the zone's lock held
        i = self.v[0]
        self.v[i + 1] = x
        self.v[0] = i + 1

    def entries(self) -> list[int]:
        return list(self.v[1:self.v[0] + 1])


def rr_zone(weights: list[int], **kw: Any) -> tuple[Zone, ZoneBalancer]:
    zone = Zone("z", len(weights), "u")
    ps = zone.peers([((chr(97 + i),), {"weight": w, **kw}) for i, w in enumerate(weights)])
    return zone, ZoneBalancer(create("round_robin", ps), zone)


def test_two_processes_share_one_smooth_wrr_sequence() -> None:
    zone, b = rr_zone([5, 1, 1])
    n = 700  # per process: 200 cycles of 7 between both
    log = Log(2 * n)

    def worker() -> None:
        rng = random.Random(0)
        for _ in range(n):
            with zone:  # the pick and its log entry in one critical section
                p = b.inner.pick(PickContext(now=0, rng=rng))
                assert p is not None
                log.append(p.index)
            b.release(p, Outcome.SUCCESS, 0)

    with forked(worker, worker):
        pass
    got = "".join(map(str, log.entries()))
    assert got == "0010200" * 200
    assert [p.current_weight for p in b.peers] == [0, 0, 0]
    assert all(p.conns == 0 for p in b.peers)


def test_zone_balancer_keeps_exact_shares_under_contention() -> None:
    """Through ZoneBalancer.pick / release only: lost updates would skew the counts."""
    zone, b = rr_zone([5, 1, 1])
    n = 1400
    counts = Log(4)  # slots 1..3: picks per peer
    counts.v[0] = 0

    def worker() -> None:
        rng = random.Random(0)
        for _ in range(n):
            p = b.pick(PickContext(now=0, rng=rng))
            assert p is not None
            with zone:
                counts.v[p.index + 1] += 1
            b.release(p, Outcome.SUCCESS, 0)

    with forked(worker, worker):
        pass
    assert list(counts.v[1:4]) == [2000, 400, 400]
    assert [p.current_weight for p in b.peers] == [0, 0, 0]


def test_max_conns_holds_across_processes() -> None:
    zone = Zone("z", 1, "u")
    b = ZoneBalancer(create("round_robin", zone.peers([(("a",), {"max_conns": 2})])), zone)
    peer = b.peers[0]
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()

    def holder() -> None:  # takes both connections, then waits to be told to let one go
        ps = [b.pick(PickContext(now=0, rng=random.Random(0))) for _ in range(2)]
        assert all(p is not None for p in ps)
        os.write(w1, b"1")
        assert os.read(r2, 1) == b"x"
        b.release(ps[0], Outcome.SUCCESS, 0)  # type: ignore[arg-type]
        os.write(w1, b"2")
        assert os.read(r2, 1) == b"y"
        b.release(ps[1], Outcome.SUCCESS, 0)  # type: ignore[arg-type]

    with forked(holder):
        assert select.select([r1], [], [], 10)[0]
        assert os.read(r1, 1) == b"1"
        assert peer.conns == 2
        assert b.pick(PickContext(now=0, rng=random.Random(0))) is None  # full elsewhere
        os.write(w2, b"x")
        assert select.select([r1], [], [], 10)[0]
        assert os.read(r1, 1) == b"2"
        mine = b.pick(PickContext(now=0, rng=random.Random(0)))
        assert mine is peer and peer.conns == 2
        assert b.pick(PickContext(now=0, rng=random.Random(0))) is None
        os.write(w2, b"y")
    assert peer.conns == 1
    b.release(mine, Outcome.SUCCESS, 0)
    assert peer.conns == 0
    for fd in (r1, w1, r2, w2):
        os.close(fd)


def test_max_conns_under_contention() -> None:
    """Two processes hammer a max_conns=2 pair: neither peer is ever over its limit, seen
    inside the lock, and every pick is released."""
    zone, b = rr_zone([1, 1], max_conns=2)
    worst = Log(1)

    def worker() -> None:
        rng = random.Random(os.getpid())
        held: list[Peer] = []
        for _ in range(3000):
            if held and (len(held) >= 3 or rng.random() < 0.5):
                b.release(held.pop(rng.randrange(len(held))), Outcome.SUCCESS, 0)
                continue
            p = b.pick(PickContext(now=0, rng=rng))
            if p is not None:
                held.append(p)
                with zone:
                    worst.v[1] = max(worst.v[1], p.conns)
                    assert p.conns <= 2
        for p in held:
            b.release(p, Outcome.SUCCESS, 0)

    with forked(worker, worker):
        pass
    assert worst.v[1] == 2
    assert [p.conns for p in b.peers] == [0, 0]


def test_failures_in_two_processes_add_up() -> None:
    """max_fails=2: one failure in each process marks the peer failed for both."""
    _, b = rr_zone([1, 1], max_fails=2, fail_timeout=10)
    a = b.peers[0]
    now = 1000.0

    def fail_once() -> None:
        ctx = PickContext(now=now, rng=random.Random(0))
        while True:
            p = b.pick(ctx)
            assert p is not None
            if p is a:
                b.release(p, Outcome.FAILED, now)
                return
            b.release(p, Outcome.SUCCESS, now)
            ctx = PickContext(now=now, rng=random.Random(0))

    with forked(fail_once):
        pass
    assert a.fails == 1
    with forked(fail_once):
        pass
    assert a.fails == 2 and a.checked == 1000
    picks = Counter()
    for _ in range(10):
        p = b.pick(PickContext(now=now + 1, rng=random.Random(0)))
        assert p is not None
        picks[p.name] += 1
        b.release(p, Outcome.SUCCESS, now + 1)
    assert picks == {"b": 10}  # failed for everybody until fail_timeout passes


def test_a_dead_holder_is_unlocked_by_force() -> None:
    zone, b = rr_zone([1, 1])
    r, w = os.pipe()

    def die_holding() -> None:
        zone.acquire()
        os.write(w, b"held")
        time.sleep(30)

    pid = os.fork()
    if pid == 0:
        try:
            die_holding()
        finally:
            os._exit(1)
    try:
        assert select.select([r], [], [], 10)[0]
        os.read(r, 4)
        assert zone.holder == pid
        assert not zone.force_unlock(pid + 1)  # not the holder: nothing happens
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert not zone._acquire(True, 0.05)  # still held by the dead process
        assert zone.force_unlock(pid)
        assert zone.holder == 0
        p = b.pick(PickContext(now=0, rng=random.Random(0)))
        assert p is not None
        b.release(p, Outcome.SUCCESS, 0)
        assert not zone.force_unlock(pid)
    finally:
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(r)
        os.close(w)
