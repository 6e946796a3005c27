"""A client's request body as nginx's request buffering keeps it.

Up to client_body_buffer_size in memory; past that, the whole body goes to a temporary file
(nginx's client_body_temp), created already unlinked (O_TMPFILE) so nothing is left behind even
if the worker dies. Sending reads it back in pieces, so a body of any size costs constant
memory; a retry on another peer reads it again from the start.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

PIECE = 256 * 1024
# the phases of a proxied request (l7/proxy.py and its mixins)
BODY, CONNECT, HEADER, STREAM, TUNNEL, OVER = range(6)
PUMP_HIGH = 256 * 1024  # a kept request body is sent while the upstream's buffer is below this
READ_AHEAD = 1 << 20  # proxy_buffering on: read ahead of a slow client up to this much


def temp_dir() -> str:
    return os.environ.get("HALB_CLIENT_BODY_TEMP") or tempfile.gettempdir()


class RequestBody:
    __slots__ = ("chunks", "fd", "limit", "size")

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 0)
        self.chunks: list[bytes] = []
        self.size = 0
        self.fd = -1

    def add(self, data: bytes) -> None:
        if self.fd < 0 and self.size + len(data) <= self.limit:
            self.chunks.append(data)
            self.size += len(data)
            return
        if self.fd < 0:
            self._spill()
        _write_all(self.fd, data)
        self.size += len(data)

    def _spill(self) -> None:
        directory = temp_dir()
        try:
            self.fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except (OSError, AttributeError):
            fd, path = tempfile.mkstemp(prefix="halb-body-", dir=directory)
            os.unlink(path)
            self.fd = fd
        for chunk in self.chunks:
            _write_all(self.fd, chunk)
        self.chunks = []

    @property
    def in_memory(self) -> bool:
        return self.fd < 0

    def memory(self) -> bytes:
        chunks = self.chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def read(self, offset: int, size: int = PIECE) -> bytes:
        """A piece of the body from `offset` (for a spooled body)."""
        if self.fd < 0:
            return self.memory()[offset:offset + size]
        return os.pread(self.fd, min(size, self.size - offset), offset)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        self.chunks = []


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class ProxyState:
    """The attributes of a proxied request that ProxyRequest (l7/proxy.py) and its mixins
    (proxy_body, proxy_tunnel, proxy_fail) share; ProxyRequest's __slots__ hold them."""

    __slots__ = ()
    r: Any
    conn: Any
    plan: Any
    phase: int
    up: Any
    att: Any
    body: Any
    body_sent: int
    body_done: bool
    client_paused: bool
    streaming: bool
    upchunked: bool
    kept: Any
    resp: Any
    group: Any
    loop: Any
    ctx: Any
    tries: int
    cached: bool
    connecting: Any
    peer: Any
    pp: Any
    header_committed: bool
    out: Any
