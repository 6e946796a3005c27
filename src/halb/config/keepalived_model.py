"""The keepalived.conf model: frozen dataclasses built by config/keepalived.py (PURE).

Values are resolved the way keepalived's vrrp_complete_instance resolves them, so consumers read
plain attributes: an instance's `version`, `priority`, `state` and `advert_int` are final, its
garp/strict/advert settings have the global_defs defaults folded in, and `auth_pass` is already
cut to 8 characters. Keywords keepalived knows but halb does not act on are kept verbatim in
`other`, and whole blocks of later roles (virtual_server, virtual_server_group, SSL, static_*,
track_file, ...) are kept as RawBlocks in `KeepalivedConfig.raw`, in file order, for the L4 and
checker parts to build on.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from halb.config.errors import Pos

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Words = tuple[str, ...]
MCAST4 = ipaddress.IPv4Address("224.0.0.18")
MCAST6 = ipaddress.IPv6Address("ff02::12")


def _empty() -> MappingProxyType[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RawStatement:
    """A line of an unmodelled block: its words and, if it opened one, its own block."""

    name: str
    args: Words
    pos: Pos
    block: tuple[RawStatement, ...] | None = None


@dataclass(frozen=True, slots=True)
class RawBlock:
    """A top-level keyword halb keeps verbatim (virtual_server 198.18.0.10 80 { ... })."""

    name: str
    args: Words
    pos: Pos
    block: tuple[RawStatement, ...] | None = None


@dataclass(frozen=True, slots=True)
class Script:
    """A command line: argv split as keepalived splits script strings, and the user to run it
    as (None: script_user / the default)."""

    argv: Words
    user: str | None = None
    group: str | None = None
    pos: Pos | None = None

    @property
    def command(self) -> str:
        return " ".join(self.argv)


@dataclass(frozen=True, slots=True)
class GlobalDefs:
    router_id: str | None = None
    vrrp_version: int = 2
    vrrp_mcast_group4: Address = MCAST4
    vrrp_mcast_group6: Address = MCAST6
    vrrp_garp_master_delay: float = 5.0
    vrrp_garp_master_repeat: int = 5
    vrrp_garp_master_refresh: float = 0.0
    vrrp_garp_master_refresh_repeat: int = 1
    vrrp_garp_lower_prio_delay: float = 0.0
    vrrp_garp_lower_prio_repeat: int = 0
    vrrp_garp_interval: float = 0.0
    vrrp_gna_interval: float = 0.0
    vrrp_min_garp: bool = False
    vrrp_strict: bool = False
    vrrp_skip_check_adv_addr: bool = False
    vrrp_check_unicast_src: bool = False
    vrrp_lower_prio_no_advert: bool = False
    vrrp_higher_prio_send_advert: bool = False
    vrrp_down_timer_adverts: int = 3
    vrrp_startup_delay: float = 0.0
    v3_checksum_as_v2: bool = False
    enable_script_security: bool = False
    script_user: str | None = None
    script_group: str | None = None
    notification_email: Words = ()
    notification_email_from: str | None = None
    smtp_server: str | None = None
    smtp_connect_timeout: int = 30
    dynamic_interfaces: bool = False
    other: MappingProxyType[str, Words] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class VrrpScript:
    name: str
    script: Script
    interval: float = 1.0
    timeout: float | None = None  # None: the interval
    weight: int = 0
    weight_reverse: bool = False
    rise: int = 1
    fall: int = 1
    init_fail: bool = False
    pos: Pos | None = None

    @property
    def effective_timeout(self) -> float:
        return self.interval if self.timeout is None else self.timeout


@dataclass(frozen=True, slots=True)
class TrackScript:
    """A tracked vrrp_script and the weight that applies to this instance (the override from
    `track_script { NAME weight W [reverse] }` or the script's own)."""

    name: str
    weight: int = 0
    reverse: bool = False
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class TrackInterface:
    name: str
    weight: int = 0  # 0: the instance goes FAULT while the interface is down
    reverse: bool = False
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class VirtualIp:
    """A virtual_ipaddress line: ADDR[/MASK] [brd ADDR] [dev IF] [scope S] [label L] ..."""

    address: Interface
    dev: str | None = None
    brd: str | None = None  # an address, or "+" / "-" as ip(8) takes them
    scope: str | None = None
    label: str | None = None
    peer: Interface | None = None
    no_track: bool = False
    other: Words = ()  # further options kept verbatim (home, -nodad, noprefixroute, ...)
    pos: Pos | None = None

    @property
    def ip(self) -> Address:
        return self.address.ip


@dataclass(frozen=True, slots=True)
class UnicastPeer:
    address: Address
    min_ttl: int = 0
    max_ttl: int = 255


@dataclass(frozen=True, slots=True)
class VrrpInstance:
    name: str
    interface: str | None
    virtual_router_id: int
    priority: int  # base priority
    state: str  # the initial state: "MASTER" or "BACKUP"
    version: int
    family: int  # 4 or 6, from the VIPs
    advert_int: float  # seconds; whole seconds for v2, centiseconds for v3
    auth_type: str | None = None  # "PASS" or "AH" (v2 only)
    auth_pass: str | None = None  # at most 8 characters
    vips: tuple[VirtualIp, ...] = ()
    evips: tuple[VirtualIp, ...] = ()  # virtual_ipaddress_excluded: set, never advertised
    unicast_src_ip: Address | None = None
    unicast_peers: tuple[UnicastPeer, ...] = ()
    unicast_ttl: int = 255
    mcast_dst_ip: Address | None = None
    nopreempt: bool = False
    preempt_delay: float = 0.0
    garp_master_delay: float = 5.0
    garp_master_repeat: int = 5
    garp_master_refresh: float = 0.0
    garp_master_refresh_repeat: int = 1
    garp_lower_prio_delay: float = 0.0
    garp_lower_prio_repeat: int = 0
    track_scripts: tuple[TrackScript, ...] = ()
    track_interfaces: tuple[TrackInterface, ...] = ()
    dont_track_primary: bool = False
    notify_master: Script | None = None
    notify_backup: Script | None = None
    notify_fault: Script | None = None
    notify_stop: Script | None = None
    notify: Script | None = None
    accept: bool = True
    strict_mode: bool = False
    skip_check_adv_addr: bool = False
    check_unicast_src: bool = False
    lower_prio_no_advert: bool = False
    higher_prio_send_advert: bool = False
    down_timer_adverts: int = 3
    v3_checksum_as_v2: bool = False
    sync_group: str | None = None
    other: MappingProxyType[str, Words] = field(default_factory=_empty)
    pos: Pos | None = None

    @property
    def advert_int_cs(self) -> int:
        return round(self.advert_int * 100)

    @property
    def is_owner(self) -> bool:
        return self.priority == 255


@dataclass(frozen=True, slots=True)
class VrrpSyncGroup:
    name: str
    group: Words
    notify_master: Script | None = None
    notify_backup: Script | None = None
    notify_fault: Script | None = None
    notify_stop: Script | None = None
    notify: Script | None = None
    track_scripts: tuple[TrackScript, ...] = ()
    track_interfaces: tuple[TrackInterface, ...] = ()
    other: MappingProxyType[str, Words] = field(default_factory=_empty)
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class KeepalivedConfig:
    conf_file: str
    files: Words  # every file read, in order
    config_id: str  # what @ID / @^ID lines were compared against
    global_defs: GlobalDefs = field(default_factory=GlobalDefs)
    vrrp_scripts: MappingProxyType[str, VrrpScript] = field(default_factory=_empty)
    vrrp_instances: tuple[VrrpInstance, ...] = ()
    vrrp_sync_groups: tuple[VrrpSyncGroup, ...] = ()
    raw: tuple[RawBlock, ...] = ()  # virtual_server & co, for the L4/checker roles

    def instance(self, name: str) -> VrrpInstance:
        for inst in self.vrrp_instances:
            if inst.name == name:
                return inst
        raise KeyError(name)

    def raw_blocks(self, name: str) -> tuple[RawBlock, ...]:
        return tuple(b for b in self.raw if b.name == name)
