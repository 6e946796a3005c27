"""Upstream groups of one worker: peers, their balancer, and idle keep-alive connections.

Built once per worker from the configuration's `upstream` blocks (and the implicit ones nginx
makes for `proxy_pass http://host:port`). The keep-alive cache follows nginx's keepalive module:
up to `keepalive N` idle connections per worker and group, most recently used first, a
connection is reused only for the peer the balancer picked, and an idle connection that
receives data or EOF, exceeds keepalive_timeout, keepalive_requests or keepalive_time is closed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from typing import TYPE_CHECKING

from halb import balancing
from halb.balancing import Balancer, Peer
from halb.config.model import Upstream

if TYPE_CHECKING:
    from halb.l7.proxy import UpstreamConnection


class UpstreamGroup:
    def __init__(self, ups: Upstream, loop: asyncio.AbstractEventLoop,
                 rng: random.Random | None = None) -> None:
        self.config = ups
        self.name = ups.name
        self.loop = loop
        self.rng = rng or random.Random()
        primary: list[Peer] = []
        backup: list[Peer] = []
        for srv in ups.servers:
            for host, port in srv.addresses:
                peer = Peer(srv.name, host, port, srv.weight, srv.max_fails, srv.fail_timeout,
                            srv.max_conns, srv.backup, srv.down)
                (backup if srv.backup else primary).append(peer)
        self.balancer: Balancer = balancing.create(ups.method, primary, backup,
                                                   **dict(ups.params))
        self.idle: deque[UpstreamConnection] = deque()
        self.keepalive = ups.keepalive

    # -- keep-alive cache ---------------------------------------------------------------------

    def take_idle(self, peer: Peer) -> UpstreamConnection | None:
        """A cached connection to `peer`, most recently used first (nginx's keepalive get)."""
        for conn in self.idle:
            if conn.peer is peer:
                self.idle.remove(conn)
                conn.idle_timer_cancel()
                if conn.usable():
                    return conn
                conn.close()
                return None
        return None

    def put_idle(self, conn: UpstreamConnection) -> bool:
        """Cache a connection whose response ended cleanly; False: the caller closes it."""
        ups = self.config
        if self.keepalive <= 0:
            return False
        if conn.requests >= ups.keepalive_requests:
            return False
        if time.monotonic() - conn.created > ups.keepalive_time:
            return False
        if len(self.idle) >= self.keepalive:
            oldest = self.idle.pop()
            oldest.close()
        self.idle.appendleft(conn)
        conn.go_idle(self, ups.keepalive_timeout)
        return True

    def forget(self, conn: UpstreamConnection) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


class Upstreams:
    """Every group of a worker, by name; implicit groups for variable proxy_pass on demand."""

    def __init__(self, upstreams: dict[str, Upstream] | None,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.groups: dict[str, UpstreamGroup] = {}
        for name, ups in (upstreams or {}).items():
            self.groups[name] = UpstreamGroup(ups, loop)

    def get(self, name: str) -> UpstreamGroup | None:
        return self.groups.get(name)

    def adhoc(self, host: str, port: int) -> UpstreamGroup:
        """A group for a literal address met at run time (proxy_pass with variables)."""
        key = f"{host}:{port}"
        group = self.groups.get(key)
        if group is None:
            from halb.config.model import UpstreamServer

            ups = Upstream(key, (UpstreamServer(key, ((host, port),)),), implicit=True)
            group = UpstreamGroup(ups, self.loop)
            if len(self.groups) < 10_000:
                self.groups[key] = group
        return group

    def close(self) -> None:
        for g in self.groups.values():
            g.close()
