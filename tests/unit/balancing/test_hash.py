"""hash: nginx's `hash $key` (Cache::Memcached) and `hash $key consistent` (ketama).

The tables were checked against nginx 1.22 (tests/conformance/nginx/test_balancing_vs_nginx.py
compares both methods on live traffic, with weights and a `down` server).
"""

from __future__ import annotations

import random
import zlib
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halb.balancing import ConfigurationError, Needs, Outcome, Peer, PickContext, create
from halb.balancing.hash import (
    POINT,
    TRIES,
    Hash,
    find_point,
    ketama_points,
    memcached_hash,
    split_server,
)

SERVERS = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
KEYS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


def balancer(consistent: bool, weights: tuple[int, ...] = (1, 1, 1),
             down: tuple[int, ...] = (), servers: list[str] = SERVERS) -> Hash:
    ps = [Peer(s, weight=w, down=i in down) for i, (s, w) in enumerate(zip(servers, weights, strict=True))]
    b = create("hash", ps, consistent=consistent)
    assert isinstance(b, Hash)
    return b


def ctx(key: str | None) -> PickContext:
    return PickContext(now=1000, rng=random.Random(0), key=key)


def where(b: Hash, key: str | None) -> str | None:
    p = b.pick(ctx(key))
    if p is None:
        return None
    b.release(p, Outcome.SUCCESS, 1000)
    return p.name[-4]  # "1", "2", "3"


# -- plain (Cache::Memcached) -------------------------------------------------------------------

@pytest.mark.parametrize("key,rehash,want", [
    ("alpha", 0, (zlib.crc32(b"alpha") >> 16) & 0x7FFF),
    ("alpha", 0, 20704), ("alpha", 1, 26662), ("alpha", 2, 28338),
    ("alpha", 1, (zlib.crc32(b"1alpha") >> 16) & 0x7FFF),
])
def test_memcached_hash(key: str, rehash: int, want: int) -> None:
    assert memcached_hash(key.encode(), rehash) == want


def test_plain_mapping_table() -> None:
    b = balancer(False)
    assert "".join(where(b, k) or "-" for k in KEYS) == "2213233332"


def test_plain_retry_adds_the_next_rehash() -> None:
    b = balancer(False)
    c = ctx("alpha")
    first = b.pick(c)  # 20704 % 3 = 1 -> second server
    assert first is not None and first.index == 20704 % 3
    b.release(first, Outcome.FAILED, 1000)
    second = b.pick(c)  # 20704 + 26662 = 47366, % 3 = 2 -> third server, no extra try
    assert second is not None and second.index == 2
    assert c.state["hash.sum"] == 47366 and c.state["hash.rehash"] == 2
    assert c.state.get(TRIES, 0) == 0


def test_plain_weighted_buckets() -> None:
    b = balancer(False, weights=(2, 1, 1))
    counts = Counter(where(b, f"k{i}") for i in range(4000))
    assert abs(counts["1"] / 4000 - 0.5) < 0.05


# -- ketama -------------------------------------------------------------------------------------

@pytest.mark.parametrize("server,host,port", [
    ("127.0.0.1:8080", b"127.0.0.1", b"8080"),
    ("localhost", b"localhost", b""),
    ("example.com:80", b"example.com", b"80"),
    ("[::1]:8080", b"[::1]", b"8080"),
    ("[::1]", b"[::1]", b""),
    ("unix:/tmp/app.sock", b"/tmp/app.sock", b""),
    ("UNIX:/tmp/x:1", b"/tmp/x:1", b""),
    ("host:8x", b"host:8x", b""),
    ("8080", b"8080", b""),
    ("host:", b"host", b""),
])
def test_split_server(server: str, host: bytes, port: bytes) -> None:
    assert split_server(server) == (host, port)


def test_points_chain_crc32_over_the_previous_hash() -> None:
    base = b"127.0.0.1\x008080"
    ring = ketama_points([Peer("127.0.0.1:8080")])
    assert len(ring) == 160
    first = zlib.crc32(base + b"\0\0\0\0")
    second = zlib.crc32(base + first.to_bytes(4, "little"))
    assert (first, second) == (0x6DCA9547, 0x92C7ADF9)
    assert {first, second, 0xDDBEB1B8} <= {h for h, _ in ring}
    assert [h for h, _ in ring] == sorted(h for h, _ in ring)


def test_points_per_weight_and_dedup() -> None:
    ring = ketama_points([Peer("10.0.0.1:80", weight=2), Peer("10.0.0.2:80")])
    assert Counter(name for _, name in ring) == {"10.0.0.1:80": 320, "10.0.0.2:80": 160}
    twice = ketama_points([Peer("10.0.0.1:80"), Peer("10.0.0.1:80")])
    assert len(twice) == 160  # the same server string twice: identical points, deduplicated


@pytest.mark.parametrize("key,index,server", [
    ("alpha", 389, "10.0.0.3:80"), ("beta", 279, "10.0.0.1:80"), ("gamma", 370, "10.0.0.3:80"),
])
def test_lookup_first_point_at_or_above(key: str, index: int, server: str) -> None:
    b = balancer(True)
    ring = b.ring()
    hashes = [h for h, _ in ring]
    assert find_point(hashes, zlib.crc32(key.encode())) == index
    assert ring[index][1] == server
    assert hashes[index] >= zlib.crc32(key.encode()) > hashes[index - 1]


def test_lookup_exact_point_and_wrap() -> None:
    hashes = [10, 20, 30]
    assert [find_point(hashes, h) for h in (5, 10, 11, 30, 31)] == [0, 0, 1, 2, 3]
    b = balancer(True)
    assert zlib.crc32(b"k1025") > b.ring()[-1][0]
    c = ctx("k1025")
    p = b.pick(c)
    assert p is not None and p.name == b.ring()[0][1]  # past the last point: the first
    assert c.state[POINT] == len(b.ring())


def test_consistent_mapping_table() -> None:
    b = balancer(True)
    assert "".join(where(b, k) or "-" for k in KEYS) == "3132313311"


def test_consistent_down_moves_only_that_servers_keys() -> None:
    keys = [f"user{i}" for i in range(300)]
    before = {k: where(balancer(True), k) for k in keys}
    after = {k: where(balancer(True, down=(1,)), k) for k in keys}
    moved = {k for k in keys if before[k] != after[k]}
    assert moved == {k for k in keys if before[k] == "2"}


def test_consistent_same_server_string_uses_wrr() -> None:
    """One `server` line that resolved to two addresses: both peers share the points."""
    ps = [Peer("backend:80", host="10.0.0.1"), Peer("backend:80", host="10.0.0.2"),
          Peer("other:80")]
    b = create("hash", ps, consistent=True)
    key = next(k for k in (f"k{i}" for i in range(1000))
               if b.pick(ctx(k)).name == "backend:80")  # type: ignore[union-attr]
    for p in ps:
        p.conns = 0
    hosts = []
    for _ in range(4):
        p = b.pick(ctx(key))
        assert p is not None
        hosts.append(p.host)
        b.release(p, Outcome.SUCCESS, 1000)
    assert sorted(hosts) == ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"]


def test_consistent_next_point_when_unusable_then_round_robin() -> None:
    b = balancer(True)
    c = ctx("alpha")
    start = find_point([h for h, _ in b.ring()], zlib.crc32(b"alpha"))
    first = b.pick(c)
    assert first is not None
    b.release(first, Outcome.FAILED, 1000)
    second = b.pick(c)
    assert second is not None and second is not first
    assert c.state[POINT] > start
    assert b.ring()[c.state[POINT] % len(b.ring())][1] == second.name


def test_weight_change_rebuilds_the_ring() -> None:
    b = balancer(True)
    assert len(b.ring()) == 480
    b.weight_changed(b.peers[0], 3)
    assert len(b.ring()) == 800


# -- both -------------------------------------------------------------------------------------

@pytest.mark.parametrize("consistent", [False, True])
def test_empty_key_is_round_robin(consistent: bool) -> None:
    b = balancer(consistent)
    assert "".join(where(b, "") or "-" for _ in range(6)) == "123123"
    assert "".join(where(b, None) or "-" for _ in range(3)) == "123"


@pytest.mark.parametrize("consistent", [False, True])
def test_single_peer_is_round_robin(consistent: bool) -> None:
    b = create("hash", [Peer("10.0.0.1:80")], consistent=consistent)
    assert b.pick(ctx("alpha")) is b.peers[0]


@pytest.mark.parametrize("consistent", [False, True])
def test_more_than_20_tries_then_round_robin(consistent: bool) -> None:
    b = balancer(consistent, weights=(1, 1, 1))
    b.peers[1].down = True
    b.peers[2].down = True
    # every key that hashes onto a down peer eventually lands on the only live one
    for k in KEYS:
        c = ctx(k)
        p = b.pick(c)
        assert p is b.peers[0]
        assert c.state.get(TRIES, 0) <= 21


@pytest.mark.parametrize("consistent", [False, True])
def test_nothing_usable(consistent: bool) -> None:
    b = balancer(consistent, down=(0, 1, 2))
    assert b.pick(ctx("alpha")) is None


def test_key_bytes_utf8() -> None:
    b = balancer(False)
    assert where(b, "ζ") == where(b, "ζ".encode().decode("utf-8"))
    assert Hash.needs is Needs.KEY


def test_refuses_backup() -> None:
    with pytest.raises(ConfigurationError):
        create("hash", [Peer("a:1"), Peer("b:1")], [Peer("c:1")])


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=20), st.booleans())
def test_a_key_always_maps_to_the_same_peer(key: str, consistent: bool) -> None:
    b = balancer(consistent)
    assert where(b, key) == where(b, key)
