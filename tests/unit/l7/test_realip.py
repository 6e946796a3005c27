"""realip's address choice (l7/realip.py, PURE): ngx_http_get_forwarded_addr."""

from __future__ import annotations

import ipaddress

import pytest

from halb.config.nginx_ssl import RealIpFrom
from halb.l7.realip import parse_addr_port, real_addr

LOCAL = [RealIpFrom(ipaddress.ip_network("127.0.0.0/8")),
         RealIpFrom(ipaddress.ip_network("10.0.0.0/8"))]


@pytest.mark.parametrize("peer,values,recursive,want", [
    ("127.0.0.1", ["203.0.113.1"], False, ("203.0.113.1", 0)),
    ("127.0.0.1", ["203.0.113.1, 10.0.0.2"], False, ("10.0.0.2", 0)),
    ("127.0.0.1", ["203.0.113.1, 10.0.0.2"], True, ("203.0.113.1", 0)),
    ("127.0.0.1", ["203.0.113.1,10.0.0.2 ,"], True, ("203.0.113.1", 0)),
    ("127.0.0.1", ["10.0.0.3, 10.0.0.2"], True, ("10.0.0.3", 0)),
    ("127.0.0.1", ["198.51.100.1, 203.0.113.1, 10.0.0.2"], True, ("203.0.113.1", 0)),
    # several header lines: the last first
    ("127.0.0.1", ["203.0.113.1", "10.0.0.2"], True, ("203.0.113.1", 0)),
    ("127.0.0.1", ["203.0.113.1", "10.0.0.2"], False, ("10.0.0.2", 0)),
    ("127.0.0.1", ["203.0.113.9", "junk, 10.0.0.2"], True, ("10.0.0.2", 0)),
    # ports and IPv6
    ("127.0.0.1", ["203.0.113.1:8080"], False, ("203.0.113.1", 8080)),
    ("127.0.0.1", ["[2001:db8::1]:443"], False, ("2001:db8::1", 443)),
    ("127.0.0.1", ["2001:DB8::1"], False, ("2001:db8::1", 0)),
    # left as it is
    ("192.0.2.1", ["203.0.113.1"], False, None),
    ("127.0.0.1", ["not-an-ip"], False, None),
    ("127.0.0.1", [], False, None),
    ("127.0.0.1", ["[::1]"], False, None),
    ("127.0.0.1", ["1.2.3.4:99999"], False, None),
])
def test_choice(peer: str, values: list[str], recursive: bool,
                want: tuple[str, int] | None) -> None:
    assert real_addr(peer, values, LOCAL, recursive) == want


def test_unix_peers() -> None:
    unix = [RealIpFrom(None)]
    assert real_addr("unix:", ["203.0.113.5"], unix, False) == ("203.0.113.5", 0)
    assert real_addr("unix:", ["203.0.113.5"], LOCAL, False) is None
    assert real_addr("127.0.0.1", ["203.0.113.5"], unix, False) is None


def test_mapped_ipv6_peer_matches_ipv4_network() -> None:
    assert real_addr("::ffff:127.0.0.1", ["203.0.113.5"], LOCAL, False) == ("203.0.113.5", 0)


def test_parse_addr_port() -> None:
    assert parse_addr_port("1.2.3.4") == ("1.2.3.4", 0)
    assert parse_addr_port("1.2.3.4:0") == ("1.2.3.4", 0)
    assert parse_addr_port("[::1]:1") == ("::1", 1)
    assert parse_addr_port("host:80") is None
    assert parse_addr_port("") is None
