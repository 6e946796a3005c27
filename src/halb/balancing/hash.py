"""nginx's `hash $key` and `hash $key consistent` (PURE): ngx_http_upstream_hash_module.c.

The caller evaluates the key template into `ctx.key`. The key is hashed as UTF-8 bytes
(surrogateescape keeps raw bytes that were decoded that way).

Plain hash (compatible with Cache::Memcached): each round hashes
`crc32(str(rehash) + key)` (no prefix on the first round), keeps `(h >> 16) & 0x7fff`, adds it
to the running sum, and walks the weighted buckets with `sum % total_weight`. An unusable peer
costs a try; after more than 20 tries it is round robin.

Consistent (ketama, compatible with Cache::Memcached::Fast with 160 points): every peer puts
`weight * 160` points on a ring; the first is `crc32(host "\\0" port prev)` with prev the 4
little-endian bytes of the previous point (0 at first), where host/port split at the last ':'
followed only by digits (unix: peers hash their path and an empty port). Points are sorted and
duplicates dropped. A key goes to the first point >= crc32(key), wrapping; among the peers with
that point's `server` string a smooth-WRR step chooses; if none is usable the next point is
tried, and after more than 20 points it is round robin.

Both fall back to round robin for an empty key or a single peer. No backup servers.
"""

from __future__ import annotations

import bisect
import zlib
from typing import Any

from halb.balancing.base import Needs, Peer, PickContext, register
from halb.balancing.nginx_peers import (
    NginxBalancer,
    seconds,
    take,
    total_weight,
    usable,
    weighted_bucket,
    wrr_step,
)

SUM = "hash.sum"  # plain: the running hash (hp->hash)
REHASH = "hash.rehash"
POINT = "hash.point"  # consistent: the index of the current ring point (hp->hash)
TRIES = "hash.tries"


def key_bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")


def memcached_hash(key: bytes, rehash: int) -> int:
    """One round of the plain hash: ((crc32([rehash] key) >> 16) & 0x7fff)."""
    prefix = str(rehash).encode() if rehash > 0 else b""
    return (zlib.crc32(prefix + key) >> 16) & 0x7FFF


def split_server(server: str) -> tuple[bytes, bytes]:
    """nginx's host/port split of a `server` string for ketama."""
    raw = server.encode("utf-8", "surrogateescape")
    if len(raw) >= 5 and raw[:5].lower() == b"unix:":
        return raw[5:], b""
    for j in range(len(raw)):
        c = raw[len(raw) - j - 1]
        if c == ord(":"):
            return raw[: len(raw) - j - 1], raw[len(raw) - j:]
        if not ord("0") <= c <= ord("9"):
            break
    return raw, b""


def ketama_points(peers: list[Peer]) -> list[tuple[int, str]]:
    """The ring: (hash, server string) sorted by hash, duplicate hashes dropped."""
    points: list[tuple[int, str]] = []
    for peer in peers:
        host, port = split_server(peer.name)
        base = zlib.crc32(host + b"\0" + port)
        prev = 0
        for _ in range(peer.weight * 160):
            prev = zlib.crc32(prev.to_bytes(4, "little"), base)
            points.append((prev, peer.name))
    points.sort(key=lambda p: p[0])  # stable: config order among equal hashes
    ring: list[tuple[int, str]] = []
    for point in points:
        if not ring or ring[-1][0] != point[0]:
            ring.append(point)
    return ring


def find_point(hashes: list[int], h: int) -> int:
    """Index of the first point >= h (may be len(hashes): the lookup wraps)."""
    return bisect.bisect_left(hashes, h)


@register
class Hash(NginxBalancer):
    name = "hash"
    needs = Needs.KEY
    allows_backup = False

    def __init__(self, peers: Any, backup: Any = (), *, consistent: bool = False,
                 **params: Any) -> None:
        super().__init__(peers, backup, consistent=consistent, **params)
        self.consistent = consistent
        self._ring: list[tuple[int, str]] | None = None
        self._hashes: list[int] = []

    def ring(self) -> list[tuple[int, str]]:
        if self._ring is None:
            self._ring = ketama_points(self.peers)
            self._hashes = [h for h, _ in self._ring]
        return self._ring

    def weight_changed(self, peer: Peer, weight: int) -> None:
        super().weight_changed(peer, weight)
        self._ring = None

    def pick(self, ctx: PickContext) -> Peer | None:
        if ctx.state.get(TRIES, 0) > 20 or self.single or not ctx.key:
            return self.pick_round_robin(ctx)
        if self.consistent:
            return self._pick_consistent(ctx, key_bytes(ctx.key))
        return self._pick_plain(ctx, key_bytes(ctx.key))

    def _pick_plain(self, ctx: PickContext, key: bytes) -> Peer | None:
        st = ctx.state
        now = seconds(ctx.now)
        total = total_weight(self.peers)
        while True:
            rehash = st.get(REHASH, 0)
            st[SUM] = (st.get(SUM, 0) + memcached_hash(key, rehash)) & 0xFFFFFFFF
            st[REHASH] = rehash + 1
            peer = weighted_bucket(self.peers, st[SUM] % total)
            if usable(peer, ctx, now):
                return take(peer, ctx, now)
            st[TRIES] = st.get(TRIES, 0) + 1
            if st[TRIES] > 20:
                return self.pick_round_robin(ctx)

    def _pick_consistent(self, ctx: PickContext, key: bytes) -> Peer | None:
        st = ctx.state
        now = seconds(ctx.now)
        ring = self.ring()
        if POINT not in st:
            st[POINT] = find_point(self._hashes, zlib.crc32(key))
        while True:
            server = ring[st[POINT] % len(ring)][1]
            best = wrr_step(p for p in self.peers if p.name == server and usable(p, ctx, now))
            if best is not None:
                return take(best, ctx, now)
            st[POINT] += 1
            st[TRIES] = st.get(TRIES, 0) + 1
            if st[TRIES] > 20:
                return self.pick_round_robin(ctx)
