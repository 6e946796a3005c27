"""The L4 role's shared vocabulary (PURE): what a virtual service and a real server are, what
`halb ipvsadm` asks of a director, and the read-only views a director answers with.

Three parts of the LVS role meet here and nowhere else:

* `l4/ipvsadm_args.py` turns ipvsadm's argv into `Command`s (and `-R` lines into many);
* `l4/director.py` applies a `Command` to its `l4/service.py` table and data plane, and answers
  listings with a `TableView`;
* `l4/ipvsadm_format.py` prints a `TableView` byte for byte as ipvsadm 1.31 does.

Addresses are kept as text in their canonical form ("198.18.0.10", "2001:db8::1"); a fwmark
service has `fwmark` set and no address. Names follow ipvsadm and the kernel (reference
l4-ipvs.md §2, §3).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Proto(enum.Enum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"
    FWM = "FWM"  # a fwmark service (-f N)


class Forward(enum.Enum):
    """The forwarding method, named as the listing prints it."""

    ROUTE = "Route"  # -g, gatewaying = DR (the default)
    TUNNEL = "Tunnel"  # -i, ipip
    MASQ = "Masq"  # -m, masquerading = NAT
    LOCAL = "Local"  # set when the real server address is local

    @property
    def flag(self) -> str:
        return {"Route": "-g", "Tunnel": "-i", "Masq": "-m", "Local": "-g"}[self.value]


DEFAULT_SCHEDULER = "wlc"
DEFAULT_PERSISTENCE = 360  # -p without a value (libipvs IPVS_SVC_PERSISTENT_TIMEOUT)
MAX_TIMEOUT = 31 * 24 * 3600


@dataclass(frozen=True, slots=True)
class ServiceKey:
    """What names a virtual service: -t/-u/--sctp-service host:port, or -f mark [-6]."""

    proto: Proto
    addr: str = ""  # empty for fwmark services
    port: int = 0
    fwmark: int = 0
    ipv6: bool = False  # fwmark services: -6


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """The settable part of a virtual service (-A / -E)."""

    key: ServiceKey
    scheduler: str = DEFAULT_SCHEDULER
    persistent: int = 0  # seconds; 0 = not persistent
    netmask: str = "255.255.255.255"  # -M; IPv6: the prefix length as text ("128")
    pe: str = ""  # --pe
    ops: bool = False  # -o one-packet scheduling
    sched_flags: tuple[str, ...] = ()  # -b: sh-fallback, sh-port, mh-fallback, mh-port, flag-N


@dataclass(frozen=True, slots=True)
class DestSpec:
    """The settable part of a real server (-a / -e)."""

    addr: str
    port: int
    forward: Forward = Forward.ROUTE
    weight: int = 1
    u_threshold: int = 0  # -x
    l_threshold: int = 0  # -y
    tun_type: str = ""  # ipip | gue | gre (only with -i)
    tun_port: int = 0
    tun_flags: tuple[str, ...] = ()  # nocsum, csum, remcsum


@dataclass(frozen=True, slots=True)
class Timeouts:
    """--set tcp tcpfin udp (0 leaves the entry unchanged)."""

    tcp: int = 900
    tcpfin: int = 120
    udp: int = 300


class Op(enum.Enum):
    ADD_SERVICE = "-A"
    EDIT_SERVICE = "-E"
    DEL_SERVICE = "-D"
    CLEAR = "-C"
    ADD_DEST = "-a"
    EDIT_DEST = "-e"
    DEL_DEST = "-d"
    ZERO = "-Z"
    SET_TIMEOUTS = "--set"
    LIST = "-L"  # also -S (save) and -c (connections): the listing options say which


@dataclass(frozen=True, slots=True)
class Command:
    """One ipvsadm command as a director executes it. Listing options stay with LIST."""

    op: Op
    service: ServiceSpec | None = None  # for -D/-a/-e/-d/-Z only service.key matters
    dest: DestSpec | None = None
    timeouts: Timeouts | None = None


# -- what a director answers with ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stats:
    """Cumulative counters (-L --stats) or estimated rates (-L --rate: cps, pps, bps)."""

    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0


@dataclass(frozen=True, slots=True)
class DestView:
    spec: DestSpec
    active: int = 0  # ActiveConn
    inactive: int = 0  # InActConn
    persist: int = 0  # PersistConn: templates pointing at this dest
    stats: Stats = Stats()
    rates: Stats = Stats()
    overloaded: bool = False


@dataclass(frozen=True, slots=True)
class ServiceView:
    spec: ServiceSpec
    dests: tuple[DestView, ...] = ()
    stats: Stats = Stats()
    rates: Stats = Stats()


@dataclass(frozen=True, slots=True)
class ConnView:
    """One row of `ipvsadm -L -c`: a connection entry or a persistence template (state NONE,
    client port 0)."""

    proto: str  # "TCP" / "UDP" / "IP" (fwmark templates)
    expires: float  # seconds left
    state: str  # ESTABLISHED, FIN_WAIT, ..., NONE, UDP
    client: tuple[str, int]
    virtual: tuple[str, int]
    dest: tuple[str, int]
    pe_name: str = ""
    pe_data: str = ""
    template: bool = False


@dataclass(frozen=True, slots=True)
class TableView:
    """A director's whole table: what every listing is printed from."""

    services: tuple[ServiceView, ...] = ()
    connections: tuple[ConnView, ...] = field(default=())
    timeouts: Timeouts = Timeouts()
    size: int = 4096  # the connection hash table size printed in the header
