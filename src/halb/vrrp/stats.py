"""VRRP counters and the files keepalived writes on signals: keepalived.stats and keepalived.data
(PURE).

Owns what keepalived's vrrp_print_stats / vrrp_print_data write, so that what users read after
`kill -USR2` / `kill -USR1` (or `systemctl kill -s USR2 keepalived`) reads the same with halb:

* `InstanceStats` holds keepalived's per-instance counters (vrrp_stats: adverts received and
  sent, became / released master, packet and authentication errors, priority 0 received and
  sent) plus two of halb's, kept under their own headings: checksum errors and any other drop
  reason (version, VRID, ...), so that every dropped advert is counted somewhere.
* `count_drop(stats, reason)` turns a packet.PacketError reason into the counter keepalived
  increments for it ("too_short" -> Packet Errors / Length, "auth_failure" -> Authentication
  Errors / Failure, ...).
* `format_stats` writes keepalived.stats ("VRRP Instance: VI_1" blocks) with halb's extra
  "Dropped before any instance" block for adverts whose VRID no instance has;
  `format_data` writes the "------< VRRP Topology >------" part of keepalived.data (state,
  master router, priorities, timers, addresses) for the instances.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# packet.PacketError.reason -> the InstanceStats field keepalived counts it in
REASON_FIELD: dict[str, str] = {
    "too_short": "packet_len_err",
    "too_long": "packet_len_err",
    "bad_ip_header": "packet_len_err",
    "bad_ttl": "ip_ttl_err",
    "bad_type": "invalid_type_rcvd",
    "interval_mismatch": "advert_interval_err",
    "bad_interval": "advert_interval_err",
    "address_mismatch": "addr_list_err",
    "bad_address_count": "addr_list_err",
    "bad_auth_type": "invalid_authtype",
    "auth_type_mismatch": "authtype_mismatch",
    "auth_failure": "auth_failure",
    "bad_checksum": "checksum_err",
}


@dataclass
class InstanceStats:
    advert_rcvd: int = 0
    advert_sent: int = 0
    become_master: int = 0
    release_master: int = 0
    packet_len_err: int = 0
    ip_ttl_err: int = 0
    invalid_type_rcvd: int = 0
    advert_interval_err: int = 0
    addr_list_err: int = 0
    invalid_authtype: int = 0
    authtype_mismatch: int = 0
    auth_failure: int = 0
    pri_zero_rcvd: int = 0
    pri_zero_sent: int = 0
    checksum_err: int = 0  # halb's: keepalived logs these without a counter
    other_err: Counter[str] = field(default_factory=Counter)  # halb's: every other reason

    @property
    def dropped(self) -> int:
        return sum(getattr(self, f) for f in set(REASON_FIELD.values())) + sum(
            self.other_err.values())


def count_drop(stats: InstanceStats, reason: str) -> None:
    name = REASON_FIELD.get(reason)
    if name is None:
        stats.other_err[reason] += 1
    else:
        setattr(stats, name, getattr(stats, name) + 1)


def format_stats(instances: Iterable[tuple[str, InstanceStats]],
                 unattributed: Mapping[str, int] | None = None) -> str:
    """keepalived.stats: one block per instance, in keepalived's layout."""
    out: list[str] = []
    for name, s in instances:
        out += [
            f"VRRP Instance: {name}",
            "  Advertisements:",
            f"    Received: {s.advert_rcvd}",
            f"    Sent: {s.advert_sent}",
            f"  Became master: {s.become_master}",
            f"  Released master: {s.release_master}",
            "  Packet Errors:",
            f"    Length: {s.packet_len_err}",
            f"    TTL: {s.ip_ttl_err}",
            f"    Invalid Type: {s.invalid_type_rcvd}",
            f"    Advertisement Interval: {s.advert_interval_err}",
            f"    Address List: {s.addr_list_err}",
            "  Authentication Errors:",
            f"    Invalid Type: {s.invalid_authtype}",
            f"    Type Mismatch: {s.authtype_mismatch}",
            f"    Failure: {s.auth_failure}",
            "  Priority Zero:",
            f"    Received: {s.pri_zero_rcvd}",
            f"    Sent: {s.pri_zero_sent}",
            "  Other Errors (halb):",
            f"    Checksum: {s.checksum_err}",
            *(f"    {_title(reason)}: {n}" for reason, n in sorted(s.other_err.items())),
        ]
    if unattributed:
        out.append("Dropped before any instance (halb):")
        out += [f"  {_title(reason)}: {n}" for reason, n in sorted(unattributed.items())]
    return "".join(line + "\n" for line in out)


def _title(reason: str) -> str:
    return reason.replace("_", " ").capitalize()


@dataclass(frozen=True, slots=True)
class InstanceView:
    """What keepalived.data shows of one running instance."""

    name: str
    version: int
    state: str
    wantstate: str
    master_router: Address | None
    master_priority: int
    interface: str
    src_ip: Address
    destinations: tuple[Address, ...]
    unicast: bool
    vrid: int
    base_priority: int
    effective_priority: int
    advert_int: float  # seconds
    master_down_us: int
    nopreempt: bool
    auth: str | None  # "PASS" with a password shown as keepalived shows it, or None
    auth_pass: str | None
    vips: tuple[str, ...]  # "198.18.0.100 dev eth0 scope global"
    track_scripts: tuple[tuple[str, int], ...] = ()
    track_interfaces: tuple[tuple[str, int], ...] = ()


def format_data(instances: Iterable[InstanceView]) -> str:
    """The "VRRP Topology" part of keepalived.data."""
    out = ["------< VRRP Topology >------"]
    for v in instances:
        interval = (f"{v.advert_int:g} sec" if v.version == 2 or v.advert_int >= 1
                    else f"{round(v.advert_int * 1000)} milli-sec")
        out += [
            f" VRRP Instance = {v.name}",
            f"   VRRP Version = {v.version}",
            f"   State = {v.state}",
            f"   Master router = {v.master_router if v.master_router is not None else ''}",
            f"   Master priority = {v.master_priority}",
            f"   Wantstate = {v.wantstate}",
            f"   Master down timer = {v.master_down_us} usecs",
            f"   Interface = {v.interface}",
            f"   Using src_ip = {v.src_ip}",
        ]
        if v.unicast:
            out.append("   Unicast Peer(s):")
            out += [f"     {d}" for d in v.destinations]
        else:
            out += [f"   Multicast address {d}" for d in v.destinations]
        out += [
            f"   Virtual Router ID = {v.vrid}",
            f"   Priority = {v.base_priority}",
            f"   Effective priority = {v.effective_priority}",
            f"   Advert interval = {interval}",
            f"   Preempt = {'disabled' if v.nopreempt else 'enabled'}",
        ]
        if v.auth == "PASS":
            out += ["   Authentication type = SIMPLE_PASSWORD", f"   Password = {v.auth_pass}"]
        else:
            out.append("   Authentication type = none")
        if v.track_scripts:
            out.append("   Tracked scripts :")
            out += [f"     {n} weight {w}" for n, w in v.track_scripts]
        if v.track_interfaces:
            out.append("   Tracked interfaces :")
            out += [f"     {n} weight {w}" for n, w in v.track_interfaces]
        out.append(f"   Virtual IP ({len(v.vips)}):")
        out += [f"     {ip}" for ip in v.vips]
    return "".join(line + "\n" for line in out)
