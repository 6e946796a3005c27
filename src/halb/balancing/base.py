"""The one Balancer interface for both layers, the peer state, and the registry (PURE).

DESIGN.md rule 2: `pick(ctx) -> Peer | None`, `release(peer, outcome)`, `peer_up / peer_down /
weight_changed`, `conn_started / conn_finished`. Time (`ctx.now`) and randomness (`ctx.rng`)
come in through the context; nothing here reads a clock or a global random generator.

Peer carries nginx's per-peer state (ngx_http_upstream_rr_peer_t: weight, effective_weight,
current_weight, conns, fails, accessed, checked, max_fails, fail_timeout, max_conns, down; nginx
Plus's active health and slow_start) and
the L4 counters (active / inactive connections) so that one Peer type serves nginx's and IPVS's
algorithms. An algorithm declares what it needs from the context (`needs`), so a layer can refuse
one it cannot feed at configuration time (L4 has no HTTP key).
"""

from __future__ import annotations

import abc
import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar


class Outcome(enum.Enum):
    SUCCESS = "success"  # nginx: 0
    FAILED = "failed"  # NGX_PEER_FAILED: counts against max_fails
    NEXT = "next"  # NGX_PEER_NEXT: try another peer, not a failure (403, 404)


@dataclass(eq=False, slots=True)
class Peer:
    """One upstream address (an nginx peer / an IPVS real server)."""

    name: str  # the `server` string as configured (ketama hashes it; several peers may share it)
    host: str = ""  # address for connecting: IP, or unix:/path
    port: int = 0
    weight: int = 1
    max_fails: int = 1
    fail_timeout: float = 10.0
    max_conns: int = 0
    backup: bool = False
    down: bool = False
    index: int = 0  # position in its group (primary or backup), config order
    # nginx's dynamic state
    effective_weight: int = 0
    current_weight: int = 0
    conns: int = 0
    fails: int = 0
    accessed: float = 0.0
    checked: float = 0.0
    # active health (halb keepalived-style checks / nginx Plus health_check)
    healthy: bool = True
    # nginx Plus `slow_start=T` (static) and when the current ramp started (0: none): the
    # weight grows from 0 to `weight` over T seconds after `recovered` (nginx_peers.ramp)
    slow_start: float = 0.0
    recovered: float = 0.0
    # least_time moving averages (ms) and in-flight bookkeeping
    header_time: float = 0.0
    response_time: float = 0.0
    inflight_since: list[float] = field(default_factory=list)
    # L4 (IPVS) counters
    active: int = 0
    inactive: int = 0
    overloaded: bool = False  # IP_VS_DEST_F_OVERLOAD: set/cleared by the director's -x/-y thresholds
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.effective_weight == 0:
            self.effective_weight = self.weight

    @property
    def address(self) -> str:
        """What $upstream_addr shows: "127.0.0.1:8080" or "unix:/path"."""
        if self.host.startswith("unix:"):
            return self.host
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"Peer({self.name!r}, {self.address}, w={self.weight})"


@dataclass(slots=True)
class PickContext:
    """What an algorithm may read when it picks. Fields an algorithm does not need may be None."""

    now: float
    rng: random.Random
    tried: set[int] = field(default_factory=set)  # id(peer) of peers tried for this request
    client: bytes | None = None  # client address bytes (4 for IPv4, 16 for IPv6)
    key: str | None = None  # the evaluated `hash` key
    port: int | None = None  # L4: client port (sh-port, mh-port)
    daddr: bytes | None = None  # L4: the packet's destination address (dh, lblc, lblcr)
    backup_tried: set[int] = field(default_factory=set)
    # per-request algorithm scratch, kept across the attempts of one request (nginx's per-request
    # peer data: ip_hash's running hash, hash's rehash count, the switch to the backup group...)
    state: dict[str, Any] = field(default_factory=dict)


class Needs(enum.Flag):
    NOTHING = 0
    CLIENT = enum.auto()  # the client address
    KEY = enum.auto()  # an HTTP-level hash key
    TIMING = enum.auto()  # response times fed back through release()
    DESTINATION = enum.auto()  # the packet's destination address (L4: dh, lblc, lblcr)


class Balancer(abc.ABC):
    """Base class: algorithms implement pick() and override the hooks they use."""

    name: ClassVar[str] = ""
    needs: ClassVar[Needs] = Needs.NOTHING
    allows_backup: ClassVar[bool] = True

    def __init__(self, peers: Sequence[Peer], backup: Sequence[Peer] = (), **params: Any) -> None:
        self.peers = list(peers)
        self.backup = list(backup)
        for i, p in enumerate(self.peers):
            p.index = i
        for i, p in enumerate(self.backup):
            p.index = i
            p.backup = True
        self.params = params

    # -- the interface ------------------------------------------------------------------------

    @abc.abstractmethod
    def pick(self, ctx: PickContext) -> Peer | None:
        """The peer for this attempt (marked tried, conns counted), or None: no live peer."""

    def release(self, peer: Peer, outcome: Outcome, now: float, *,
                header_time: float | None = None, response_time: float | None = None) -> None:
        """The end of one attempt on `peer` (nginx's free): passive health, conns, timing."""
        peer.conns = max(0, peer.conns - 1)

    def peer_up(self, peer: Peer) -> None:
        peer.healthy = True

    def peer_down(self, peer: Peer) -> None:
        peer.healthy = False

    def weight_changed(self, peer: Peer, weight: int) -> None:
        peer.weight = weight
        peer.effective_weight = weight
        peer.current_weight = 0

    def conn_started(self, peer: Peer) -> None:
        peer.active += 1

    def conn_finished(self, peer: Peer, was_active: bool = True) -> None:
        if was_active:
            peer.active = max(0, peer.active - 1)
        else:
            peer.inactive = max(0, peer.inactive - 1)

    def tries(self) -> int:
        """nginx's retry budget: every usable address of the primary and backup groups."""
        return sum(1 for p in self.peers if not p.down) + sum(1 for p in self.backup
                                                               if not p.down)

    def all_peers(self) -> list[Peer]:
        return [*self.peers, *self.backup]


class ConfigurationError(ValueError):
    """An algorithm refuses its parameters (reported by the config layer with file:line)."""


REGISTRY: dict[str, type[Balancer]] = {}


def register(cls: type[Balancer]) -> type[Balancer]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    REGISTRY[cls.name] = cls
    return cls


def create(name: str, peers: Sequence[Peer], backup: Sequence[Peer] = (),
           **params: Any) -> Balancer:
    """A balancer by its field name ("round_robin", "ip_hash", "wlc", ...)."""
    from halb import balancing  # noqa: F401  (imports every algorithm module)

    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ConfigurationError(f'unknown balancing method "{name}"') from None
    if backup and not cls.allows_backup:
        raise ConfigurationError(f'balancing method "{name}" does not support backup servers')
    return cls(peers, backup, **params)


Factory = Callable[..., Balancer]
