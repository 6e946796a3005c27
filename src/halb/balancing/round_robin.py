"""nginx's default method, smooth weighted round robin (PURE): `upstream` without a method.

The selection, the backup switch and the passive health all live in nginx_peers (as in
ngx_http_upstream_round_robin.c); this module only registers it as "round_robin".
Weights 5, 1, 1 give a a b a c a a. nginx Plus's slow_start applies (nginx_peers.ramp).
"""

from __future__ import annotations

from halb.balancing.base import register
from halb.balancing.nginx_peers import NginxBalancer


@register
class RoundRobin(NginxBalancer):
    name = "round_robin"
    supports_slow_start = True
