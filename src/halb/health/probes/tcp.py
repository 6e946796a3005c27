"""TCP_CHECK: a non-blocking connect within connect_timeout, as keepalived's check_tcp.c
(I/O only).

`open_socket` is shared with HTTP_GET / SSL_GET: the checker's source address and port
(bindto / bind_port), interface (bind_if) and mark (fwmark) are applied before connecting. A
socket that cannot be created or bound is `unavailable` (keepalived logs "Rescheduling" and
tries again a delay_loop later without changing anything).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from halb.config.keepalived_lvs_model import Checker
from halb.health.events import ProbeResult

SO_MARK = getattr(socket, "SO_MARK", 36)


class Unavailable(Exception):
    """The probe could not start (keepalived: "... Rescheduling.")."""


def open_socket(checker: Checker) -> socket.socket:
    dst = checker.connect_ip
    if dst is None:
        raise Unavailable("connect fail to create socket")
    family = socket.AF_INET6 if dst.version == 6 else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise Unavailable(f"connect fail to create socket: {e.strerror}") from None
    try:
        sock.setblocking(False)
        if checker.fwmark:
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, checker.fwmark)
        if checker.bind_if:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE,
                            checker.bind_if.encode())
        if checker.bindto is not None or checker.bind_port:
            host = str(checker.bindto) if checker.bindto is not None else (
                "::" if family == socket.AF_INET6 else "0.0.0.0")
            sock.bind((host, checker.bind_port))
    except OSError as e:
        sock.close()
        raise Unavailable(f"socket bind failed: {e.strerror}") from None
    return sock


async def connect(checker: Checker) -> socket.socket:
    """A connected socket, or TimeoutError / OSError (refused, unreachable)."""
    sock = open_socket(checker)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(checker.connect_timeout):
            await loop.sock_connect(sock, (str(checker.connect_ip), checker.connect_port))
    except BaseException:
        sock.close()
        raise
    return sock


async def close_stream(writer: asyncio.StreamWriter, timeout: float = 1.0) -> None:
    """Close a probe's stream and wait (at most `timeout`) for its socket to be released;
    whatever goes wrong meanwhile is no concern of the probe's result."""
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout):
            await writer.wait_closed()


async def tcp_check(checker: Checker) -> ProbeResult:
    try:
        sock = await connect(checker)
    except Unavailable as e:
        return ProbeResult(unavailable=True, message=f"TCP {e}. Rescheduling.")
    except TimeoutError:
        return ProbeResult(ok=False, message="timeout")
    except OSError as e:
        return ProbeResult(ok=False, message=f"failed: {e.strerror}")
    with contextlib.suppress(OSError):
        sock.close()
    return ProbeResult(ok=True)
