"""ip_hash: nginx's client-address hash (first 3 octets of IPv4, 16 bytes of IPv6).

The mapping tables were checked against nginx 1.22 (tests/conformance/nginx/
test_balancing_vs_nginx.py compares the same algorithm on live traffic).
"""

from __future__ import annotations

import random
import socket

import pytest

from halb.balancing import ConfigurationError, Needs, Outcome, Peer, PickContext, create
from halb.balancing.ip_hash import TRIES, IpHash, ip_hash_step, key_bytes


def v4(addr: str) -> bytes:
    return socket.inet_aton(addr)


def v6(addr: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, addr)


def ctx(client: bytes | None, now: float = 1000.0) -> PickContext:
    return PickContext(now=now, rng=random.Random(0), client=client)


def balancer(weights: tuple[int, ...] = (1, 1, 1), down: tuple[int, ...] = ()) -> IpHash:
    ps = [Peer("abcd"[i], weight=w, down=i in down) for i, w in enumerate(weights)]
    b = create("ip_hash", ps)
    assert isinstance(b, IpHash)
    return b


def pick_name(b: IpHash, client: bytes | None) -> str | None:
    p = b.pick(ctx(client))
    if p is not None:
        b.release(p, Outcome.SUCCESS, 1000)
    return None if p is None else p.name


CLIENTS = ["192.168.1.10", "192.168.1.200", "10.0.0.1", "10.0.1.1", "172.16.5.4", "8.8.8.8",
           "127.0.0.1", "1.2.3.4"]


@pytest.mark.parametrize("addr,want", [
    ("127.0.0.1", 4040),  # ((89*113+127)%6271*113+0)%6271*113+0)%6271, by hand
    ("192.168.1.10", 154), ("192.168.1.200", 154), ("10.0.0.1", 2565), ("10.0.1.1", 2566),
    ("172.16.5.4", 3526), ("8.8.8.8", 3023), ("1.2.3.4", 751),
])
def test_first_hash(addr: str, want: int) -> None:
    assert ip_hash_step(89, key_bytes(v4(addr))) == want


def test_key_bytes() -> None:
    assert key_bytes(v4("1.2.3.4")) == b"\x01\x02\x03"
    assert key_bytes(v6("2001:db8::1")) == v6("2001:db8::1")
    assert key_bytes(None) == key_bytes(b"\1\2") == b"\0\0\0"
    assert ip_hash_step(89, key_bytes(v6("2001:db8::1"))) == 2600


@pytest.mark.parametrize("weights,want", [
    ((1, 1, 1), "bbabbccb"),
    ((3, 1, 2, 1), "aabccdaa"),
])
def test_mapping_table(weights: tuple[int, ...], want: str) -> None:
    b = balancer(weights)
    assert "".join(pick_name(b, v4(c)) or "-" for c in CLIENTS) == want


def test_same_slash_24_same_peer_and_stable() -> None:
    b = balancer((1, 1, 1, 1))
    first = pick_name(b, v4("203.0.113.7"))
    for last in range(0, 256, 17):
        assert pick_name(b, v4(f"203.0.113.{last}")) == first


def test_down_peer_rehashes_only_its_clients() -> None:
    before = {c: pick_name(balancer((1, 1, 1, 1)), v4(c)) for c in CLIENTS}
    after = {c: pick_name(balancer((1, 1, 1, 1), down=(1,)), v4(c)) for c in CLIENTS}
    for c in CLIENTS:
        if before[c] != "b":
            assert after[c] == before[c]
        else:
            assert after[c] != "b"


def test_retry_continues_from_the_last_hash() -> None:
    """127.0.0.x: 4040 -> c. After c fails the hash goes on from 4040: 5510 (c again, tried:
    one try) then 4957 -> b."""
    b = balancer((1, 1, 1))
    c = ctx(v4("127.0.0.1"))
    first = b.pick(c)
    assert first is not None and first.name == "c" and c.state["ip_hash.hash"] == 4040
    b.release(first, Outcome.FAILED, 1000)
    second = b.pick(c)
    assert second is not None and second.name == "b"
    assert c.state["ip_hash.hash"] == 4957 and c.state[TRIES] == 1
    b.release(second, Outcome.FAILED, 1000)
    third = b.pick(c)  # 4956 -> a
    assert third is not None and third.name == "a"


def test_fewer_than_two_peers_is_round_robin() -> None:
    b = create("ip_hash", [Peer("a")])
    assert pick_name(b, v4("1.2.3.4")) == "a"  # type: ignore[arg-type]


def test_more_than_20_tries_falls_back_to_round_robin() -> None:
    b = balancer((1, 1, 1))
    for p in b.peers[1:]:
        p.max_conns, p.conns = 1, 1
    c = ctx(v4("127.0.0.1"))  # hashes to c first, then keeps landing on b or c
    c.state[TRIES] = 21
    p = b.pick(c)
    assert p is not None and p.name == "a"


def test_all_unusable_gives_none() -> None:
    b = balancer((1, 1), down=(0, 1))
    assert pick_name(b, v4("1.2.3.4")) is None


def test_needs_client_and_refuses_backup() -> None:
    assert IpHash.needs is Needs.CLIENT
    with pytest.raises(ConfigurationError):
        create("ip_hash", [Peer("a"), Peer("b")], [Peer("z")])
