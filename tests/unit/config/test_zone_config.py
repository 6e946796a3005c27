"""`zone NAME [SIZE]` in an upstream block: the model and nginx 1.22's errors (`nginx -t`
wording; tests/conformance/nginx/test_proxy_config.py checks them against the real nginx)."""

from __future__ import annotations

import asyncio
import mmap

import pytest

from halb.balancing import Peer
from halb.balancing.shared import SharedPeer, ZoneBalancer
from halb.config.errors import ConfigError
from halb.config.model import Upstream
from halb.config.nginx import load_text
from halb.l7.upstream import UpstreamGroup, Upstreams, create_zones

F = "/tmp/nginx.conf"


def upstreams(body: str) -> dict[str, Upstream]:
    cfg = load_text(f"events {{}}\nhttp {{\n{body}\n}}\n", F)
    assert cfg.http is not None
    return dict(cfg.http.upstreams)


def error(body: str) -> str:
    with pytest.raises(ConfigError) as exc:
        upstreams(body)
    return str(exc.value)


def test_no_zone_by_default() -> None:
    u = upstreams("upstream u { server 127.0.0.1:1; }")["u"]
    assert u.zone is None and u.zone_size == 0


@pytest.mark.parametrize("line,size", [
    ("zone z 64k;", 65536),
    ("zone z 64K;", 65536),
    ("zone z 1m;", 1 << 20),
    (f"zone z {8 * mmap.PAGESIZE};", 8 * mmap.PAGESIZE),  # nginx's minimum: 8 pages
    ("zone z 64k; zone z 64k;", 65536),  # repeated: accepted
])
def test_zone_recorded(line: str, size: int) -> None:
    u = upstreams(f"upstream u {{ {line} server 127.0.0.1:1; }}")["u"]
    assert (u.zone, u.zone_size) == ("z", size)


def test_zone_after_the_servers_and_the_last_one_counts() -> None:
    u = upstreams("upstream u { server 127.0.0.1:1; zone a 64k; zone b 128k; }")["u"]
    assert (u.zone, u.zone_size) == ("b", 131072)


def test_a_zone_sized_elsewhere() -> None:
    ups = upstreams("upstream u { zone z; server 127.0.0.1:1; }\n"
                    "upstream v { zone z 64k; server 127.0.0.1:2; }")
    assert (ups["u"].zone, ups["u"].zone_size) == ("z", 65536)
    assert (ups["v"].zone, ups["v"].zone_size) == ("z", 65536)


@pytest.mark.parametrize("body,message", [
    ("upstream u { zone z; server 127.0.0.1:1; }", 'zero size shared memory zone "z"'),
    ("upstream u { zone z 32767; server 127.0.0.1:1; }",
     f'zone "z" is too small in {F}:3'),
    ("upstream u { zone z 0; server 127.0.0.1:1; }", f'zone "z" is too small in {F}:3'),
    ("upstream u { zone z abc; server 127.0.0.1:1; }", f'invalid zone size "abc" in {F}:3'),
    ("upstream u { zone z 1g; server 127.0.0.1:1; }", f'invalid zone size "1g" in {F}:3'),
    ('upstream u { zone "" 64k; server 127.0.0.1:1; }', f'invalid zone name "" in {F}:3'),
    ("upstream u { zone; server 127.0.0.1:1; }",
     f'invalid number of arguments in "zone" directive in {F}:3'),
    ("upstream u { zone z 64k x; server 127.0.0.1:1; }",
     f'invalid number of arguments in "zone" directive in {F}:3'),
    ("upstream u { zone z 64k; server 127.0.0.1:1; }\n"
     "upstream v { zone z 128k; server 127.0.0.1:2; }",
     'the size 131072 of shared memory zone "z" conflicts with already declared size 65536 '
     f"in {F}:4"),
    ("zone z 64k;", f'"zone" directive is not allowed here in {F}:3'),
])
def test_zone_errors(body: str, message: str) -> None:
    assert error(body) == message


# -- the groups built from it -----------------------------------------------------------------


def test_groups_with_and_without_a_zone() -> None:
    ups = upstreams("upstream z { zone z 64k; server 127.0.0.1:1 max_conns=1;"
                    " server 127.0.0.2:1 backup; }\n"
                    "upstream p { server 127.0.0.1:1; server 127.0.0.2:1; }")
    zones = create_zones(ups)
    assert list(zones) == ["z"] and zones["z"].slots == 2 and zones["z"].size == 65536
    loop = asyncio.new_event_loop()
    try:
        groups = Upstreams(ups, loop, zones)
        zg, pg = groups.get("z"), groups.get("p")
        assert zg is not None and pg is not None
        assert isinstance(zg.balancer, ZoneBalancer) and zg.zone is zones["z"]
        assert all(isinstance(p, SharedPeer) for p in zg.balancer.all_peers())
        assert zg.balancer.peers[0].max_conns == 1 and zg.balancer.backup[0].backup
        assert zg.tries == 2 and not zg.single
        assert pg.zone is None and type(pg.balancer).__name__ == "RoundRobin"
        assert all(type(p) is Peer for p in pg.balancer.all_peers())
        # a second worker of the same generation attaches to the same state
        other = UpstreamGroup(ups["z"], loop, zone=zones["z"])
        zg.balancer.peers[0].conns = 1
        assert other.balancer.peers[0].conns == 1
        # single-process mode: no zones given, the server makes its own
        alone = Upstreams(ups, loop)
        g = alone.get("z")
        assert g is not None and g.zone is not None and g.zone is not zones["z"]
        assert g.balancer.peers[0].conns == 0
    finally:
        loop.close()
