"""IPVS `sh`, source hashing (PURE): net/netfilter/ipvs/ip_vs_sh.c, with sh-fallback and sh-port.

A 256-bucket table (CONFIG_IP_VS_SH_TAB_BITS = 8) is filled on every add, delete or weight
change: walking the list round and round from the head, each dest takes `weight` consecutive
buckets (a weight-0 dest still takes one; it is simply unavailable). Weights 2, 1 fill A A B A A B...

The bucket of a client is `hash_32(ntohs(port) + ntohl(addr), 8)` (the current kernel's hash;
4.x kernels multiplied by 2654435761 and kept the low 8 bits instead): `addr` is the client
address (IPv6 folded by XOR), `port` the client port with sh-port (`-b sh-port`), else 0.
The dest in that bucket is returned unless it is unavailable (weight <= 0 or overloaded): then
None, or with sh-fallback the kernel's deterministic probe: for offset 0..255, the bucket
`(offset' + hash) & 255` where offset' = (offset + first hash) % 256, first available wins. So a
client moves only while its own server is unavailable, and comes back after.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from halb.balancing.base import Needs, Peer, PickContext, register
from halb.balancing.ipvs_common import (
    M32,
    SCHED1,
    SCHED2,
    IpvsBalancer,
    addr_key,
    hash_32,
    unavailable,
)

TAB_BITS = 8
TAB_SIZE = 1 << TAB_BITS
TAB_MASK = TAB_SIZE - 1


def sh_hashkey(key: int, port: int, offset: int) -> int:
    """ip_vs_sh_hashkey(): the bucket for a folded address, a port (0 without sh-port)."""
    return (offset + hash_32((port + key) & M32, TAB_BITS)) & TAB_MASK


def fill_weighted(dests: Sequence[Peer], size: int = TAB_SIZE) -> list[Peer | None]:
    """ip_vs_sh_reassign(): `weight` consecutive buckets per dest, round the list."""
    if not dests:
        return [None] * size
    table: list[Peer | None] = []
    i = count = 0
    while len(table) < size:
        d = dests[i]
        table.append(d)
        count += 1
        if count >= d.weight:
            i = (i + 1) % len(dests)
            count = 0
    return table


@register
class IpvsSourceHash(IpvsBalancer):
    name = "sh"
    needs = Needs.CLIENT

    def __init__(self, peers: Sequence[Peer], backup: Sequence[Peer] = (), *,
                 fallback: bool = False, port: bool = False, **params: Any) -> None:
        super().__init__(peers, backup, **params)
        self.fallback = fallback or SCHED1 in self.flags
        self.use_port = port or SCHED2 in self.flags

    def init_service(self) -> None:
        self.table = fill_weighted(self.dests)

    def dest_added(self, peer: Peer) -> None:
        self.init_service()

    def dest_removed(self, peer: Peer, index: int) -> None:
        self.init_service()

    def dest_updated(self, peer: Peer) -> None:
        self.init_service()

    def pick(self, ctx: PickContext) -> Peer | None:
        key = addr_key(ctx.client)
        port = (ctx.port or 0) if self.use_port else 0
        ihash = sh_hashkey(key, port, 0)
        d = self.table[ihash]
        if d is None:
            return None
        if not unavailable(d):
            return d
        if not self.fallback:
            return None
        for offset in range(TAB_SIZE):
            d = self.table[sh_hashkey(key, port, (offset + ihash) % TAB_SIZE)]
            if d is None:
                break
            if not unavailable(d):
                return d
        return None
