"""halb.vrrp.socket.header_vrid: the VRID a dropped datagram is counted against (its VRRP
header's second byte, after the IPv4 header and its options; IPv6 sockets get the VRRP message
alone)."""

from __future__ import annotations

import ipaddress

from halb.vrrp import packet
from halb.vrrp.socket import header_vrid

SRC = ipaddress.IPv4Address("198.18.0.200")
VIP = ipaddress.IPv4Address("198.18.0.100")


def datagram(vrid: int) -> bytes:
    advert = packet.Advert(2, vrid, 100, (VIP,), 100, packet.AUTH_NONE, bytes(8))
    return packet.encode_ipv4(advert, SRC)


def test_ipv4() -> None:
    assert header_vrid(datagram(51), 4) == 51
    assert header_vrid(datagram(51)[:22], 4) == 51  # cut right after the VRID
    assert header_vrid(datagram(51)[:21], 4) is None
    assert header_vrid(b"", 4) is None


def test_ipv4_with_options() -> None:
    d = datagram(7)
    with_options = bytes([0x46]) + d[1:20] + b"\x01\x01\x01\x00" + d[20:]  # IHL 6: 4 NOPs
    assert header_vrid(with_options, 4) == 7


def test_ipv6_gets_the_vrrp_message() -> None:
    assert header_vrid(bytes([0x31, 42, 100, 1]), 6) == 42
    assert header_vrid(bytes([0x31]), 6) is None
