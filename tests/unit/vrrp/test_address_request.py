"""halb.vrrp.addresses: the rtnetlink address requests (decoded back with pyroute2, the way the
kernel reads them) and the ACK parsing. `lo` is the interface: it exists in every namespace."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

import pytest
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_DELADDR, RTM_NEWADDR
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

from halb.config.keepalived_model import VirtualIp
from halb.vrrp.addresses import IFA_F_NODAD, ack_errno, address_request

LO = socket.if_nametoindex("lo")


def decode(data: bytes) -> ifaddrmsg:
    msg = ifaddrmsg(data)
    msg.decode()
    return msg


def vip(text: str, **kw: object) -> VirtualIp:
    return VirtualIp(ipaddress.ip_interface(text), **kw)  # type: ignore[arg-type]


def test_ipv4_add_with_label_brd_scope() -> None:
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    m = decode(address_request(RTM_NEWADDR, flags, 9, vip("198.18.0.100/24", brd="+",
                                                         label="lo:vip", scope="host"), "lo"))
    assert (m["header"]["type"], m["header"]["flags"], m["header"]["sequence_number"]) == (
        RTM_NEWADDR, flags, 9)
    assert (m["family"], m["prefixlen"], m["index"], m["scope"], m["flags"]) == (
        socket.AF_INET, 24, LO, 254, 0)
    assert (m.get_attr("IFA_LOCAL"), m.get_attr("IFA_ADDRESS"), m.get_attr("IFA_BROADCAST"),
            m.get_attr("IFA_LABEL")) == ("198.18.0.100", "198.18.0.100", "198.18.0.255",
                                         "lo:vip")


def test_defaults_and_dev_override() -> None:
    m = decode(address_request(RTM_NEWADDR, 0, 1, vip("198.18.0.100/32", dev="lo"), "nope0"))
    assert (m["prefixlen"], m["index"], m["scope"]) == (32, LO, 0)
    assert m.get_attr("IFA_BROADCAST") is None and m.get_attr("IFA_LABEL") is None


def test_ipv6_skips_dad() -> None:
    m = decode(address_request(RTM_NEWADDR, 0, 1, vip("fd00::5/64"), "lo"))
    assert (m["family"], m["prefixlen"], m["flags"]) == (socket.AF_INET6, 64, IFA_F_NODAD)
    assert m.get_attr("IFA_ADDRESS") == "fd00::5"


def test_peer_and_delete_without_label_or_brd() -> None:
    v = vip("198.18.0.102/32", peer=ipaddress.ip_interface("198.18.0.103/32"), label="lo:x",
            brd="+")
    m = decode(address_request(RTM_DELADDR, 0, 1, v, "lo"))
    assert m["header"]["type"] == RTM_DELADDR
    assert (m.get_attr("IFA_LOCAL"), m.get_attr("IFA_ADDRESS")) == ("198.18.0.102",
                                                                     "198.18.0.103")
    assert m.get_attr("IFA_LABEL") is None and m.get_attr("IFA_BROADCAST") is None


def ack(seq: int, err: int) -> bytes:
    return struct.pack("=IHHIIi", 36, 2, 0, seq, 0, -err) + bytes(16)


@pytest.mark.parametrize("err", [0, errno.EEXIST, errno.EADDRNOTAVAIL])
def test_ack(err: int) -> None:
    assert ack_errno(ack(5, err), 5) == err


def test_ack_of_another_request_is_skipped() -> None:
    assert ack_errno(ack(4, errno.EEXIST), 5) is None
    assert ack_errno(ack(4, errno.EEXIST) + ack(5, 0), 5) == 0
    assert ack_errno(b"", 5) is None
