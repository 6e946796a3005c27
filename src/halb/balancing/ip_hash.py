"""nginx's `ip_hash` (PURE): ngx_http_upstream_ip_hash_module.c.

The key is the first 3 octets of an IPv4 client (all 16 bytes of IPv6, 3 zero bytes for
anything else); hash starts at 89 and runs `hash = (hash * 113 + byte) % 6271` over the key,
then `hash % total_weight` walks the weighted buckets in config order. An unusable peer re-hashes
from the current hash; after more than 20 such tries, or with fewer than 2 peers, it is plain
round robin. The running hash and the tries count are kept per request (ctx.state), so a retry
continues where the last pick stopped. No backup servers.
"""

from __future__ import annotations

from halb.balancing.base import Needs, Peer, PickContext, register
from halb.balancing.nginx_peers import (
    NginxBalancer,
    seconds,
    take,
    total_weight,
    usable,
    weighted_bucket,
)

HASH = "ip_hash.hash"
TRIES = "ip_hash.tries"


def key_bytes(client: bytes | None) -> bytes:
    """The bytes ip_hash hashes for a client address."""
    if client is not None and len(client) == 4:
        return client[:3]
    if client is not None and len(client) == 16:
        return client
    return b"\0\0\0"


def ip_hash_step(h: int, key: bytes) -> int:
    for b in key:
        h = (h * 113 + b) % 6271
    return h


@register
class IpHash(NginxBalancer):
    name = "ip_hash"
    needs = Needs.CLIENT
    allows_backup = False

    def pick(self, ctx: PickContext) -> Peer | None:
        st = ctx.state
        if st.get(TRIES, 0) > 20 or len(self.peers) < 2:
            return self.pick_round_robin(ctx)
        now = seconds(ctx.now)
        key = key_bytes(ctx.client)
        total = total_weight(self.peers)
        h = st.get(HASH, 89)
        while True:
            h = ip_hash_step(h, key)
            peer = weighted_bucket(self.peers, h % total)
            if usable(peer, ctx, now):
                break
            st[TRIES] = st.get(TRIES, 0) + 1
            if st[TRIES] > 20:
                return self.pick_round_robin(ctx)
        st[HASH] = h
        return take(peer, ctx, now)
