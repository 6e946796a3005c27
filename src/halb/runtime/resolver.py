"""Name resolution for configuration time (upstream servers, proxy_pass hosts)."""

from __future__ import annotations

import socket


def resolve(host: str) -> list[str]:
    """Every address of `host`, in the resolver's order, without duplicates (as nginx adds one
    peer per address)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def install() -> None:
    from halb.config import nginx_upstream

    nginx_upstream.RESOLVER = resolve
