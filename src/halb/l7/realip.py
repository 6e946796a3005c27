"""The realip module's choice of a client address (PURE): ngx_http_get_forwarded_addr.

The connection's address is replaced only when it is trusted (set_real_ip_from). From a header
the last address is taken ("a, b, c" → c); with real_ip_recursive on, addresses are walked
from the right while the one just taken is trusted too, across several X-Forwarded-For header
lines (the last line first). A value that is not an address leaves the address unchanged. An
address may carry a port ("1.2.3.4:80", "[::1]:80"); without one $remote_port is empty.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from halb.config.nginx_ssl import RealIpFrom

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


def _trusted(addr: str, trusted: Sequence[RealIpFrom]) -> bool:
    """ngx_cidr_match."""
    if addr.startswith("unix:"):
        return any(t.network is None for t in trusted)
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    for t in trusted:
        net = t.network
        if net is not None and ip.version == net.version and ip in net:
            return True
        if net is not None and ip.version == 6 and net.version == 4:
            mapped = ip.ipv4_mapped  # type: ignore[union-attr]
            if mapped is not None and mapped in net:
                return True
    return False


def parse_addr_port(text: str) -> tuple[str, int] | None:
    """ngx_parse_addr_port: an address with an optional port (0 when absent)."""
    try:
        return str(ipaddress.ip_address(text)), 0
    except ValueError:
        pass
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or end == len(text) - 1 or text[end + 1] != ":":
            return None
        host, port = text[1:end], text[end + 2:]
    else:
        host, colon, port = text.partition(":")
        if not colon:
            return None
    if not port.isdigit() or int(port) > 65535:
        return None
    try:
        return str(ipaddress.ip_address(host)), int(port)
    except ValueError:
        return None


_OK, _DONE, _DECLINED = 0, 1, 2


def _internal(current: list[tuple[str, int]], value: str, trusted: Sequence[RealIpFrom],
              recursive: bool) -> int:
    if not _trusted(current[0][0], trusted):
        return _DECLINED
    end = len(value)
    while end > 1 and value[end - 1] in " ,":  # (nginx stops at the first character)
        end -= 1
    p = end - 1
    while p > 0:
        if value[p] in " ,":
            p += 1
            break
        p -= 1
    p = max(p, 0)
    parsed = parse_addr_port(value[p:end])
    if parsed is None:
        return _DECLINED
    current[0] = parsed
    if recursive and p > 0:
        rc = _internal(current, value[:p - 1], trusted, True)
        return _DONE if rc == _DECLINED else rc
    return _OK


def real_addr(peer: str, values: Sequence[str], trusted: Sequence[RealIpFrom],
              recursive: bool) -> tuple[str, int] | None:
    """The client address for a connection from `peer` given the header values (in order
    received; one value for X-Real-IP, the proxy_protocol address or another header), or
    None when it stays the connection's own."""
    if not trusted or not values:
        return None
    current = [(peer, 0)]
    rc = _DECLINED
    found = False
    for value in reversed(values):
        rc = _internal(current, value, trusted, recursive)
        if not recursive:
            break
        if rc == _DECLINED and found:
            rc = _DONE
            break
        if rc != _OK:
            break
        found = True
    return current[0] if rc != _DECLINED else None
