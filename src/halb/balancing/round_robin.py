"""nginx's default method, smooth weighted round robin (PURE): `upstream` without a method.

The selection, the backup switch and the passive health all live in nginx_peers (as in
ngx_http_upstream_round_robin.c); this module only registers it as "round_robin".
Weights 5, 1, 1 give a a b a c a a. nginx Plus's slow_start applies (nginx_peers.ramp).
"""

from __future__ import annotations

import math

from halb.balancing.base import Peer, register
from halb.balancing.nginx_peers import NginxBalancer, _wrr_take


@register
class RoundRobin(NginxBalancer):
    name = "round_robin"
    supports_slow_start = True

    def pick_first(self, now: float) -> tuple[Peer, set[int]] | None:
        """pick() for a request's first attempt, without a PickContext (the proxy's express
        lane): the peer and the tried set its context would hold. None when pick() must
        decide (slow_start, a single peer, no usable primary peer; nothing was changed)."""
        if self.slow_start or (len(self.peers) == 1 and not self.backup):
            return None
        tried: set[int] = set()
        peer = _wrr_take(self.peers, tried, math.floor(now))
        return None if peer is None else (peer, tried)
