"""Upstream groups of one worker: peers, their balancer, connections to peers and the idle
keep-alive ones; what each attempt leaves for the $upstream_* variables.

Built once per worker from the configuration's `upstream` blocks (and the implicit ones nginx
makes for `proxy_pass http://host:port`). The keep-alive cache follows nginx's keepalive module:
up to `keepalive N` idle connections per worker and group, most recently used first, a
connection is reused only for the peer the balancer picked, and an idle connection that
receives data or EOF, exceeds keepalive_timeout, keepalive_requests or keepalive_time is closed.

A group with `zone NAME [SIZE]` keeps its peers' state in a shared segment (balancing.shared)
that the master creates per configuration generation (create_zones) before forking, so fail
counts, max_conns and the balancer's weights are those of all the generation's workers; its
balancer then runs under the zone's lock. nginx Plus's `health_check` needs such a zone: the
one checker (l7/health.py) publishes each server's health there, and create_zones writes the
initial "checking" state of `mandatory` checks before any worker starts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from halb import balancing
from halb.balancing import Balancer, Peer
from halb.balancing.round_robin import RoundRobin
from halb.balancing.shared import Zone, ZoneBalancer
from halb.config.model import Upstream

if TYPE_CHECKING:
    from halb.l7.proxy import ProxyRequest


class UpstreamConnection(asyncio.Protocol):
    """A connection to one peer; passes what it reads to its current owner."""

    __slots__ = ("closed", "created", "group", "idle_handle", "idle_until", "owner", "peer",
                 "requests", "sent", "transport")

    def __init__(self, peer: Peer, group: UpstreamGroup) -> None:
        self.peer = peer
        self.group = group
        self.transport: asyncio.Transport | None = None
        self.owner: ProxyRequest | None = None
        self.requests = 0
        self.created = time.monotonic()
        self.closed = False
        self.idle_handle: asyncio.TimerHandle | None = None
        self.idle_until = 0.0  # in the cache until then (0: not in the cache)
        self.sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner is None:
            self.close()  # data on an idle connection: it cannot be reused
            return
        try:
            owner.upstream_data(self, data)
        except Exception as e:  # a bug must cost one request, never the worker
            owner.crashed(e)

    def eof_received(self) -> bool | None:
        owner = self.owner
        if owner is not None:
            try:
                owner.upstream_eof(self)
            except Exception as e:
                owner.crashed(e)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.idle_timer_cancel()
        owner = self.owner
        self.owner = None
        if owner is not None:
            try:
                owner.upstream_lost(self, exc)
            except Exception as e:
                owner.crashed(e)
        else:
            self.group.forget(self)

    def resume_writing(self) -> None:
        owner = self.owner
        if owner is not None:
            owner.upstream_writable()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.sent += len(data)
        self.transport.write(data)

    # the cache
    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def _idle_timer(self) -> None:
        self.idle_handle = None
        until = self.idle_until
        if not until or self.closed:
            return
        if self.group.loop.time() < until:
            self.idle_handle = self.group.loop.call_at(until, self._idle_timer)
            return
        self.close()

    def idle_timer_cancel(self) -> None:
        self.idle_until = 0.0
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None

    def close(self) -> None:
        self.closed = True
        self.idle_timer_cancel()
        if self.transport is not None:
            self.transport.close()


async def open_peer(loop: asyncio.AbstractEventLoop, peer: Peer, group: UpstreamGroup,
                    local: tuple[str, int] | None = None,
                    tls_args: dict[str, Any] | None = None) -> UpstreamConnection:
    """A new connection to `peer` (TCP from `local`, or unix:, plain or TLS as
    l7/tls.py's connection_args say); closed again when it cannot be made."""
    up = UpstreamConnection(peer, group)
    unix = peer.host.startswith("unix:")
    kw: dict[str, Any] = {}
    try:
        if tls_args is not None:
            from halb.l7.tls import connection_args  # (TLS only: l7/tls.py imports ssl)

            kw = connection_args(tls_args, (peer.host, 0 if unix else peer.port), unix=unix)
        if unix:
            await loop.create_unix_connection(lambda: up, peer.host[5:], **kw)
        else:
            await loop.create_connection(lambda: up, peer.host, peer.port, local_addr=local,
                                         **kw)
    except BaseException:
        up.close()
        raise
    return up


class Attempt:
    """One try (ngx_http_upstream_state_t): what the $upstream_* variables show."""

    __slots__ = ("addr", "connect", "header", "length", "received", "response", "sent",
                 "start", "status")

    def __init__(self, addr: str, start: float) -> None:
        self.addr = addr
        self.start = start
        self.status = 0
        self.connect = -1.0
        self.header = -1.0
        self.response = -1.0
        self.length = 0
        self.received = 0
        self.sent = 0


def peer_specs(ups: Upstream) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Peer(*args, **kwargs) for every address of every server, in config order. With a
    `health_check ... mandatory`, servers start in the "checking" state (not healthy)."""
    kwargs: dict[str, Any] = {}
    if any(hc.mandatory for hc in ups.health_checks):
        kwargs["healthy"] = False
    return [((srv.name, host, port, srv.weight, srv.max_fails, srv.fail_timeout, srv.max_conns,
              srv.backup, srv.down), {"slow_start": srv.slow_start, **kwargs})
            for srv in ups.servers for host, port in srv.addresses]


Previous = tuple[Mapping[str, Zone], Mapping[str, Upstream]]


def create_zones(upstreams: Mapping[str, Upstream] | None,
                 previous: Previous | None = None) -> dict[str, Zone]:
    """The shared segments of the groups that declare `zone`: made by the master for each
    configuration generation before it forks the workers (in single-process mode by the
    server itself), so that every worker of the generation maps the same pages.

    Groups with health checks get their peers' initial state written here, before any worker
    exists: "checking" with `mandatory`, and with `mandatory persistent` "up" for a server
    that was healthy in the `previous` generation's zone (nginx Plus keeps that across a
    reload; nothing else is carried, as nginx does not reuse upstream zones)."""
    zones: dict[str, Zone] = {}
    for name, ups in (upstreams or {}).items():
        if ups.zone is None:
            continue
        specs = peer_specs(ups)
        zone = zones[name] = Zone(ups.zone, len(specs), name, ups.zone_size)
        if ups.health_checks:
            if previous is not None and any(hc.persistent for hc in ups.health_checks):
                specs = _persist(name, specs, previous)
            zone.peers(specs)
    return zones


def _persist(name: str, specs: list[tuple[tuple[Any, ...], dict[str, Any]]],
             previous: Previous) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    zones, upstreams = previous
    old_zone, old = zones.get(name), upstreams.get(name)
    if old_zone is None or old is None:
        return specs
    slots = {args[:3]: i for i, (args, _) in enumerate(peer_specs(old))}  # name, host, port
    out = []
    for args, kwargs in specs:
        slot = slots.get(args[:3])
        if slot is not None and slot < old_zone.slots and old_zone.healthy(slot):
            kwargs = {**kwargs, "healthy": True}
        out.append((args, kwargs))
    return out


class UpstreamGroup:
    def __init__(self, ups: Upstream, loop: asyncio.AbstractEventLoop,
                 rng: random.Random | None = None, zone: Zone | None = None,
                 trim_later: Callable[[UpstreamGroup], None] | None = None) -> None:
        self.config = ups
        self.name = ups.name
        self.loop = loop
        self.rng = rng or random.Random()
        specs = peer_specs(ups)
        # with a zone, the peers' state is the zone's (shared by the generation's workers)
        peers: list[Peer] = list(zone.peers(specs)) if zone is not None else \
            [Peer(*args, **kwargs) for args, kwargs in specs]
        primary = [p for p in peers if not p.backup]
        backup = [p for p in peers if p.backup]
        balancer = balancing.create(ups.method, primary, backup, **dict(ups.params))
        self.zone = zone
        self.balancer: Balancer = balancer if zone is None else ZoneBalancer(balancer, zone)
        self.tries = self.balancer.tries()  # nginx's retry budget (peers do not change)
        self.single = len(primary) == 1 and not backup
        self.needs_client = bool(self.balancer.needs & balancing.Needs.CLIENT)
        # plain round robin (no zone): a first pick without a PickContext (the express lane)
        self.pick_first: Callable[[float], tuple[Peer, set[int]] | None] | None = \
            self.balancer.pick_first if isinstance(self.balancer, RoundRobin) else None
        self.idle: deque[UpstreamConnection] = deque()
        self.keepalive = ups.keepalive
        self.addresses: dict[int, str] = {}  # id(peer) -> peer.address (the peers stay)
        # with a worker's server: a full cache is trimmed at the end of the loop's iteration
        # (l7/cork.Held.trim_later), after the requests held to then took their connections
        self.trim_later = trim_later
        self.trimming = False

    # -- keep-alive cache ---------------------------------------------------------------------

    def take_idle(self, peer: Peer) -> UpstreamConnection | None:
        """A cached connection to `peer`, most recently used first (nginx's keepalive get)."""
        idle = self.idle
        for conn in idle:
            if conn.peer is peer:
                idle.remove(conn)
                conn.idle_until = 0.0  # (its timer, if any, finds nothing to do)
                t = conn.transport
                if not conn.closed and t is not None and not t.is_closing():  # usable()
                    return conn
                conn.close()
                return None
        return None

    def put_idle(self, conn: UpstreamConnection) -> bool:
        """Cache a connection whose response ended cleanly; False: the caller closes it."""
        ups = self.config
        keepalive = self.keepalive
        if keepalive <= 0 or conn.requests >= ups.keepalive_requests or \
                time.monotonic() - conn.created > ups.keepalive_time:
            return False
        idle = self.idle
        if len(idle) >= keepalive:
            if self.trim_later is None:
                idle.pop().close()  # (the oldest)
            elif not self.trimming:
                self.trimming = True
                self.trim_later(self)
        idle.appendleft(conn)
        # in the cache until keepalive_timeout. One timer serves many idle periods: taking the
        # connection does not cancel it (idle_until 0), it is moved when it fires (_idle_timer)
        conn.owner = None
        conn.idle_until = until = self.loop.time() + ups.keepalive_timeout
        if conn.idle_handle is None:
            conn.idle_handle = self.loop.call_at(until, conn._idle_timer)
        return True

    def trim(self) -> None:
        """Close the oldest cached connections beyond keepalive N (nginx closes the oldest when
        it caches one more)."""
        self.trimming = False
        idle = self.idle
        while len(idle) > self.keepalive:
            idle.pop().close()

    def forget(self, conn: UpstreamConnection) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


class Upstreams:
    """Every group of a worker, by name; implicit groups for variable proxy_pass on demand.

    `zones` are the generation's shared segments (create_zones, made before the fork); without
    them the groups that declare a zone get segments of their own (single-process mode)."""

    def __init__(self, upstreams: dict[str, Upstream] | None,
                 loop: asyncio.AbstractEventLoop, zones: Mapping[str, Zone] | None = None,
                 trim_later: Callable[[UpstreamGroup], None] | None = None) -> None:
        self.loop = loop
        self.trim_later = trim_later
        self.groups: dict[str, UpstreamGroup] = {}
        if zones is None:
            zones = create_zones(upstreams)
        self.zones = zones
        for name, ups in (upstreams or {}).items():
            self.groups[name] = UpstreamGroup(
                ups, loop, zone=zones.get(name) if ups.zone is not None else None,
                trim_later=trim_later)

    def get(self, name: str) -> UpstreamGroup | None:
        return self.groups.get(name)

    def adhoc(self, host: str, port: int) -> UpstreamGroup:
        """A group for a literal address met at run time (proxy_pass with variables)."""
        key = f"{host}:{port}"
        group = self.groups.get(key)
        if group is None:
            from halb.config.model import UpstreamServer

            ups = Upstream(key, (UpstreamServer(key, ((host, port),)),), implicit=True)
            group = UpstreamGroup(ups, self.loop, trim_later=self.trim_later)
            if len(self.groups) < 10_000:
                self.groups[key] = group
        return group

    def close(self) -> None:
        for g in self.groups.values():
            g.close()


def format_states(states: list[Attempt | None], name: str, over: bool) -> str | None:
    """An $upstream_* variable (ngx_http_upstream_addr_variable and friends): one value per
    attempt joined by ", ", and " : " where an internal redirect started another proxy_pass;
    "-" for what an attempt never got (a status, a connection, a header)."""
    if not states:
        return None
    parts: list[str] = []
    sep = ""
    for st in states:
        if st is None:
            sep = " : "
            continue
        parts.append(sep)
        sep = ", "
        if name == "addr":
            parts.append(st.addr)
        elif name == "status":
            parts.append(str(st.status) if st.status else "-")
        elif name in ("response_time", "connect_time", "header_time"):
            v = st.response if name == "response_time" else \
                st.connect if name == "connect_time" else st.header
            if v < 0 and name == "response_time" and not over:
                v = time.monotonic() - st.start
            parts.append(f"{v:.3f}" if v >= 0 else "-")
        elif name == "response_length":
            parts.append(str(st.length))
        elif name == "bytes_received":
            parts.append(str(st.received))
        elif name == "bytes_sent":
            parts.append(str(st.sent))
        else:
            return None
    return "".join(parts)
