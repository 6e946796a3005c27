"""The LVS half of keepalived.conf as frozen dataclasses (PURE): virtual_server,
virtual_server_group, real_server, sorry_server, the checkers and the SSL block.

config/keepalived_lvs.py builds these from the RawBlocks config/keepalived.py keeps, with every
default resolved the way keepalived 2.2.7's validate_check_config resolves it (a checker's retry,
delay_loop, delay_before_retry, warmup and connect_timeout come from the checker, else its real
server, else its virtual server, else the checker type's default), so the health checker and the
director read plain attributes. Times are seconds (floats, microsecond resolution as keepalived's
timers); names are keepalived's (`lvs_sched`, `lvs_method`, "NAT" / "DR" / "TUN").

`VirtualServer.name` and `RealServer.name` are keepalived's log forms ("[198.18.0.10]:tcp:80",
"FWM 7", "[GROUP]:0"): the health events carry them, and keepalived's messages quote them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from types import MappingProxyType

from halb.config.errors import ConfigError, Pos
from halb.config.keepalived_model import Script

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Words = tuple[str, ...]

TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK = "TCP_CHECK", "HTTP_GET", "SSL_GET", "MISC_CHECK"
CHECKER_KINDS = (TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK)
DEFAULT_STATUS_CODES = frozenset(range(200, 300))  # a url without status_code accepts 2xx
DEFAULT_DELAY_LOOP = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_SCHEDULER = "wlc"
DEFAULT_PERSISTENCE = 360  # `persistence_timeout` without a value (IPVS_SVC_PERSISTENT_TIMEOUT)
BOOTSTRAP_DELAY = 1.0  # keepalived starts every checker 1 s after start, plus its warmup


def trio(address: Address | None, port: int, protocol: str | None) -> str:
    """keepalived's inet_sockaddrtotrio: "[198.18.0.10]:tcp:80" ("none" without a protocol)."""
    proto = (protocol or "none").lower()
    return f"[{address}]:{proto}:{port}"


@dataclass(frozen=True, slots=True)
class Url:
    """An HTTP_GET / SSL_GET `url { path digest status_code virtualhost }` block."""

    path: str
    digest: str | None = None  # 32 lowercase hex digits: the MD5 of the body (genhash)
    status_codes: frozenset[int] = DEFAULT_STATUS_CODES
    virtualhost: str | None = None
    regex: str | None = None  # kept; halb does not match regexes yet
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Checker:
    """One health checker of a real server, every timing resolved.

    TCP_CHECK / HTTP_GET / SSL_GET connect to `connect_ip`:`connect_port` (the real server's
    address and the port written on its real_server line unless set), from `bindto` /
    `bind_port` when given, within `connect_timeout`. MISC_CHECK runs `misc_path` (an argv, no
    shell) as `user`, for at most `misc_timeout`.
    """

    kind: str  # TCP_CHECK | HTTP_GET | SSL_GET | MISC_CHECK
    delay_loop: float = DEFAULT_DELAY_LOOP
    retry: int = 1
    delay_before_retry: float = 1.0
    warmup: float = DEFAULT_DELAY_LOOP  # the first check starts after a random part of this
    alpha: bool = False
    log_all_failures: bool = False
    # TCP_CHECK, HTTP_GET, SSL_GET
    connect_ip: Address | None = None
    connect_port: int = 0
    bindto: Address | None = None
    bind_port: int = 0
    bind_if: str | None = None
    fwmark: int = 0
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    # HTTP_GET, SSL_GET
    urls: tuple[Url, ...] = ()
    virtualhost: str | None = None  # the checker's own; see host_for / sni_for
    http_protocol: str = "1.0"  # "1.0" | "1.0C" (adds Connection: close) | "1.1"
    enable_sni: bool = False
    fast_recovery: bool = False
    default_host: str | None = None  # checker, else real server, else virtual server virtualhost
    default_sni: str | None = None  # checker, else virtual server virtualhost (keepalived's SNI)
    # MISC_CHECK
    misc_path: Words = ()
    misc_timeout: float = DEFAULT_DELAY_LOOP  # misc_timeout, else the virtual server's delay_loop
    misc_dynamic: bool = False
    user: str | None = None  # None: global_defs script_user / keepalived_script / root
    group: str | None = None
    pos: Pos | None = None

    @property
    def is_http(self) -> bool:
        return self.kind in (HTTP_GET, SSL_GET)

    def host_for(self, url: Url) -> str | None:
        """The Host header's name: the url's virtualhost, else the resolved default (None: the
        connect address and port, as keepalived writes it)."""
        return url.virtualhost or self.default_host

    def sni_for(self, url: Url) -> str | None:
        """The TLS server name SSL_GET sends (only with enable_sni)."""
        if not self.enable_sni:
            return None
        return url.virtualhost or self.default_sni


@dataclass(frozen=True, slots=True)
class Tunnel:
    """`lvs_method TUN type ipip|gue|gre [port N] [nocsum|csum|remcsum]`."""

    type: str = "ipip"
    port: int = 0
    csum: str = "nocsum"


@dataclass(frozen=True, slots=True)
class RealServer:
    address: Address
    port: int
    protocol: str | None = None  # the virtual server's, for the name
    weight: int = 1  # the configured weight (keepalived's iweight)
    lvs_method: str = "NAT"
    tunnel: Tunnel | None = None
    u_threshold: int = 0
    l_threshold: int = 0
    inhibit_on_failure: bool = False
    alpha: bool = False
    notify_up: Script | None = None
    notify_down: Script | None = None
    virtualhost: str | None = None
    checkers: tuple[Checker, ...] = ()
    pos: Pos | None = None

    @property
    def name(self) -> str:
        return trio(self.address, self.port, self.protocol)


@dataclass(frozen=True, slots=True)
class SorryServer:
    address: Address
    port: int
    protocol: str | None = None
    inhibit: bool = False  # sorry_server_inhibit: kept in the table with weight 0 when unused
    lvs_method: str = "NAT"
    tunnel: Tunnel | None = None
    pos: Pos | None = None

    weight = 1

    @property
    def name(self) -> str:
        return trio(self.address, self.port, self.protocol)


@dataclass(frozen=True, slots=True)
class VirtualServer:
    """`virtual_server IP PORT | fwmark N | group NAME { ... }`, defaults resolved."""

    address: Address | None = None  # None for fwmark and group services
    port: int = 0
    fwmark: int = 0
    group: str | None = None
    group_index: int = 0  # keepalived numbers the virtual servers of a group: "[G]:0", "[G]:1"
    protocol: str | None = None  # "TCP" | "UDP" | "SCTP"; None for fwmark services
    family: int = 4  # 4 or 6 (ip_family, or from the addresses)
    delay_loop: float = DEFAULT_DELAY_LOOP
    lvs_sched: str = DEFAULT_SCHEDULER
    lvs_method: str = "NAT"
    tunnel: Tunnel | None = None
    persistence_timeout: int = 0  # seconds; 0: not persistent
    persistence_granularity: str | None = None  # an IPv4 netmask, or an IPv6 prefix length
    persistence_engine: str | None = None
    ops: bool = False
    sched_flags: Words = ()  # flag-1..3, sh-port, sh-fallback, mh-port, mh-fallback
    virtualhost: str | None = None
    quorum: int = 1
    hysteresis: int = 0
    quorum_up: Script | None = None
    quorum_down: Script | None = None
    alpha: bool = False
    omega: bool = False
    inhibit_on_failure: bool = False
    ha_suspend: bool = False
    sorry_server: SorryServer | None = None
    real_servers: tuple[RealServer, ...] = ()
    pos: Pos | None = None

    @property
    def name(self) -> str:
        """keepalived's FMT_VS."""
        if self.group is not None:
            return f"[{self.group}]:{self.group_index}"
        if self.fwmark:
            return f"FWM {self.fwmark}"
        return trio(self.address, self.port, self.protocol)

    def real_server(self, name: str) -> RealServer:
        for rs in self.real_servers:
            if rs.name == name:
                return rs
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class VsgEntry:
    """A virtual_server_group line: an address (range, or /mask) and port, or a fwmark."""

    start: Address | None = None
    end: Address | None = None  # == start for a single address
    port: int = 0
    fwmark: int = 0
    fwmark_family: int | None = None  # fwmark N [inet|inet6]
    pos: Pos | None = None

    @property
    def is_fwmark(self) -> bool:
        return self.start is None

    def addresses(self) -> list[Address]:
        """Every address of the range (a few hundred at most in practice)."""
        if self.start is None or self.end is None:
            return []
        return [ipaddress.ip_address(i) for i in range(int(self.start), int(self.end) + 1)]


@dataclass(frozen=True, slots=True)
class VirtualServerGroup:
    name: str
    entries: tuple[VsgEntry, ...] = ()
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class SslContext:
    """The top-level `SSL { password ca certificate key }` block SSL_GET uses."""

    password: str | None = None
    ca: str | None = None
    certificate: str | None = None
    key: str | None = None


def _no_groups() -> MappingProxyType[str, VirtualServerGroup]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class LvsConfig:
    virtual_servers: tuple[VirtualServer, ...] = ()
    groups: MappingProxyType[str, VirtualServerGroup] = field(default_factory=_no_groups)
    ssl: SslContext | None = None
    # keepalived's messages, in its order: parse-time ones with "(FILE: Line N)", then the
    # checks of validate_check_config without a position. level "warn" is what `keepalived -t`
    # prints; "info" is what keepalived only logs (log_message) while starting.
    warnings: tuple[ConfigError, ...] = ()

    def service(self, name: str) -> VirtualServer:
        for vs in self.virtual_servers:
            if vs.name == name:
                return vs
        raise KeyError(name)

    def scripts(self) -> list[Script]:
        """Every script the checker process may run (for keepalived's script security)."""
        out: list[Script] = []
        for vs in self.virtual_servers:
            out += [s for s in (vs.quorum_up, vs.quorum_down) if s is not None]
            for rs in vs.real_servers:
                out += [s for s in (rs.notify_up, rs.notify_down) if s is not None]
                out += [Script(c.misc_path, c.user, c.group, c.pos) for c in rs.checkers
                        if c.kind == MISC_CHECK]
        return out
