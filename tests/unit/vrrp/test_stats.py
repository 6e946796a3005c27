"""halb.vrrp.stats: keepalived's counters and the keepalived.stats / keepalived.data layouts.

KEEPALIVED_STATS is what keepalived 2.2.7 wrote to /tmp/keepalived.stats on SIGUSR2 for one
instance (captured in a namespace); halb writes the same lines, then its own extra block."""

from __future__ import annotations

import ipaddress

import pytest

from halb.vrrp import packet
from halb.vrrp.stats import (
    REASON_FIELD,
    InstanceStats,
    InstanceView,
    count_drop,
    format_data,
    format_stats,
)

KEEPALIVED_STATS = """VRRP Instance: VI_1
  Advertisements:
    Received: 0
    Sent: 0
  Became master: 0
  Released master: 0
  Packet Errors:
    Length: 0
    TTL: 0
    Invalid Type: 0
    Advertisement Interval: 0
    Address List: 0
  Authentication Errors:
    Invalid Type: 0
    Type Mismatch: 0
    Failure: 0
  Priority Zero:
    Received: 0
    Sent: 0
"""


def test_layout_is_keepalived_s() -> None:
    text = format_stats([("VI_1", InstanceStats())])
    assert text.startswith(KEEPALIVED_STATS)
    assert text[len(KEEPALIVED_STATS):] == "  Other Errors (halb):\n    Checksum: 0\n"


@pytest.mark.parametrize(("reason", "line"), [
    ("too_short", "    Length: 1"),
    ("too_long", "    Length: 1"),
    ("bad_ttl", "    TTL: 1"),
    ("bad_type", "    Invalid Type: 1"),
    ("interval_mismatch", "    Advertisement Interval: 1"),
    ("address_mismatch", "    Address List: 1"),
    ("bad_auth_type", "    Invalid Type: 1"),
    ("auth_type_mismatch", "    Type Mismatch: 1"),
    ("auth_failure", "    Failure: 1"),
    ("bad_checksum", "    Checksum: 1"),
    ("wrong_version", "    Wrong version: 1"),
])
def test_each_drop_reason_lands_in_its_counter(reason: str, line: str) -> None:
    s = InstanceStats()
    count_drop(s, reason)
    lines = format_stats([("VI_1", s)]).splitlines()
    assert line in lines
    assert sum(1 for x in lines if x.endswith(": 1")) == 1
    assert s.dropped == 1


def test_every_packet_error_reason_is_counted_somewhere() -> None:
    reasons = {cls.reason for cls in _subclasses(packet.PacketError)}
    s = InstanceStats()
    for r in reasons:
        count_drop(s, r)
    assert s.dropped == len(reasons)
    assert set(REASON_FIELD) <= reasons


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def test_unattributed_drops_have_their_own_block() -> None:
    text = format_stats([], {"unknown_vrid": 3, "bad_checksum": 2})
    assert text == ("Dropped before any instance (halb):\n  Bad checksum: 2\n"
                    "  Unknown vrid: 3\n")


def test_data_topology() -> None:
    view = InstanceView(
        name="VI_1", version=2, state="MASTER", wantstate="BACKUP",
        master_router=ipaddress.IPv4Address("198.18.0.1"), master_priority=150,
        interface="eth0", src_ip=ipaddress.IPv4Address("198.18.0.1"),
        destinations=(ipaddress.IPv4Address("224.0.0.18"),), unicast=False, vrid=51,
        base_priority=150, effective_priority=150, advert_int=1.0, master_down_us=3414062,
        nopreempt=False, auth="PASS", auth_pass="1111",
        vips=("198.18.0.100 dev eth0 scope global",), track_scripts=(("chk", -60),))
    lines = format_data([view]).splitlines()
    assert lines[:5] == ["------< VRRP Topology >------", " VRRP Instance = VI_1",
                         "   VRRP Version = 2", "   State = MASTER",
                         "   Master router = 198.18.0.1"]
    for line in ("   Master down timer = 3414062 usecs", "   Multicast address 224.0.0.18",
                 "   Virtual Router ID = 51", "   Effective priority = 150",
                 "   Advert interval = 1 sec", "   Authentication type = SIMPLE_PASSWORD",
                 "   Password = 1111", "     chk weight -60", "   Virtual IP (1):",
                 "     198.18.0.100 dev eth0 scope global"):
        assert line in lines
    v3 = format_data([InstanceView(**{**_fields(view), "version": 3, "advert_int": 0.1,
                                      "unicast": True, "auth": None})]).splitlines()
    assert "   Advert interval = 100 milli-sec" in v3
    assert "   Unicast Peer(s):" in v3 and "   Authentication type = none" in v3


def _fields(view: InstanceView) -> dict[str, object]:
    return {name: getattr(view, name) for name in view.__slots__}  # type: ignore[attr-defined]
