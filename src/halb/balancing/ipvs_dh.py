"""IPVS `dh`, destination hashing (PURE): net/netfilter/ipvs/ip_vs_dh.c.

A 256-bucket table (CONFIG_IP_VS_DH_TAB_BITS = 8) filled round robin over the list, one bucket
per dest whatever its weight (dh has no weighted fill), rebuilt when a dest is added or deleted
(dh has no update hook: a weight change does not move buckets). The bucket of a packet is
`hash_32(ntohl(daddr), 8)` of its **destination** address (`ctx.daddr`, IPv6 folded by XOR): the
cache-cluster use where the same origin server always goes through the same cache. The dest
there is returned unless it has left the service, has weight <= 0 or is overloaded: then None.
"""

from __future__ import annotations

from halb.balancing.base import Needs, Peer, PickContext, register
from halb.balancing.ipvs_common import IpvsBalancer, addr_key, hash_32

TAB_BITS = 8
TAB_SIZE = 1 << TAB_BITS


def dh_hashkey(key: int) -> int:
    return hash_32(key, TAB_BITS)


@register
class IpvsDestinationHash(IpvsBalancer):
    name = "dh"
    needs = Needs.DESTINATION

    def init_service(self) -> None:
        n = len(self.dests)
        self.table: list[Peer | None] = ([self.dests[i % n] for i in range(TAB_SIZE)] if n
                                         else [None] * TAB_SIZE)

    def dest_added(self, peer: Peer) -> None:
        self.init_service()

    def dest_removed(self, peer: Peer, index: int) -> None:
        self.init_service()

    def pick(self, ctx: PickContext) -> Peer | None:
        d = self.table[dh_hashkey(addr_key(ctx.daddr))]
        if d is None or not self.available(d) or d.weight <= 0 or d.overloaded:
            return None
        return d
