"""Listening sockets, bound by the master and inherited by the workers (nginx's model).

Sockets for an address:port that stay in the configuration are kept across reloads, so the
kernel's accept queue is never closed under load.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time

from halb.config.errors import ConfigError
from halb.config.model import Listen, NginxConfig


def to_bind(config: NginxConfig) -> list[Listen]:
    """The sockets nginx binds: a port's wildcard socket serves its specific addresses too."""
    if config.http is None:
        return []
    from halb.l7.routing import ListenTable

    return ListenTable(config.http).bind_list()


def bind(listen: Listen, tries: int = 5) -> socket.socket:
    """Bind and listen as nginx does (SO_REUSEADDR, retry EADDRINUSE 5 times 500 ms apart)."""
    if listen.is_unix:
        path = listen.addr[5:]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            if os.path.exists(path) and not os.path.isdir(path):
                os.unlink(path)
        addr: object = path
    else:
        family = socket.AF_INET6 if ":" in listen.addr else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if listen.reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(listen.ipv6only))
        host = {"*": "0.0.0.0", "::": "::"}.get(listen.addr, listen.addr)
        addr = (host, listen.port)
    sock.set_inheritable(True)
    for attempt in range(tries):
        try:
            sock.bind(addr)  # type: ignore[arg-type]
            break
        except OSError as e:
            if e.errno != errno.EADDRINUSE or attempt == tries - 1:
                sock.close()
                raise ConfigError(f"bind() to {listen} failed ({e.errno}: {e.strerror})",
                                  level="emerg") from None
            time.sleep(0.5)
    sock.listen(listen.backlog if listen.backlog > 0 else 511)
    sock.setblocking(False)
    return sock


class ListenerSet:
    """The master's bound sockets, keyed by address:port, reused across reloads."""

    def __init__(self) -> None:
        self.sockets: dict[tuple[str, int], socket.socket] = {}

    def update(self, listens: list[Listen]) -> tuple[list[tuple[Listen, socket.socket]],
                                                     list[socket.socket]]:
        """Bind what is new; return (sockets for this configuration, sockets to close later)."""
        wanted: list[tuple[Listen, socket.socket]] = []
        new: dict[tuple[str, int], socket.socket] = {}
        try:
            for ls in listens:
                sock = self.sockets.get(ls.key) or new.get(ls.key)
                if sock is None:
                    sock = bind(ls)
                    new[ls.key] = sock
                wanted.append((ls, sock))
        except ConfigError:
            for s in new.values():
                s.close()
            raise
        keys = {ls.key for ls in listens}
        stale = [s for k, s in self.sockets.items() if k not in keys]
        self.sockets = {k: s for k, s in self.sockets.items() if k in keys}
        self.sockets.update(new)
        return wanted, stale

    def close(self) -> None:
        for key, sock in self.sockets.items():
            sock.close()
            if key[0].startswith("unix:"):
                with contextlib.suppress(OSError):
                    os.unlink(key[0][5:])
        self.sockets.clear()
