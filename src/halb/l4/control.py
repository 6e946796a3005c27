"""The director's control socket: what `halb ipvsadm` talks to instead of the kernel's IPVS
netlink family.

Owns the unix socket (default /run/halb/ipvsadm.sock, or $HALB_IPVSADM_SOCKET, or a path given
explicitly), its protection and its protocol:

* the socket is created with mode 0600 (umask set around bind, so there is no window with
  wider rights) and each client's credentials are checked (SO_PEERCRED): root, or the user the
  director runs as; anyone else gets EPERM, which ipvsadm prints as "Permission denied (you
  must be root)";
* a stale socket file left by a dead director is replaced; a live one is not (two directors on
  one socket would split the table);
* newline-delimited JSON, one request and one reply per line (l4/wire.py): execute a
  `model.Command`, view the `model.TableView` (with or without connection entries), ping.
  Commands run one at a time (the kernel's __ip_vs_mutex); a bad message gets an EINVAL reply
  and never takes the server down.

The server wraps any object with `async execute(cmd) -> None` (raising an exception that has
an `errno` attribute, e.g. l4.service.DirectorError) and `view(*, connections=False)`.
`ControlClient` is the blocking client the CLI uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import struct
from typing import Any, Protocol

from halb.l4 import wire
from halb.l4.model import Command, TableView

DEFAULT_SOCKET = "/run/halb/ipvsadm.sock"
ENV_SOCKET = "HALB_IPVSADM_SOCKET"
log = logging.getLogger("halb.l4.control")


def socket_path(explicit: str | None = None) -> str:
    return explicit or os.environ.get(ENV_SOCKET) or DEFAULT_SOCKET


class Director(Protocol):
    async def execute(self, cmd: Command) -> None: ...

    def view(self, *, connections: bool = False) -> TableView: ...


class ControlError(Exception):
    """A reply with ok=false: the errno the director (the kernel, for ipvsadm) returned."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or os.strerror(code))
        self.errno = code


class NoDirector(Exception):
    """Nothing answers on the socket (or we may not talk to it): `errno` says which."""

    def __init__(self, code: int, path: str) -> None:
        super().__init__(f"{path}: {os.strerror(code)}")
        self.errno = code
        self.path = path


def _peer_uid(sock: socket.socket | None) -> int | None:
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", raw)
    return uid


def _alive(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


class ControlServer:
    def __init__(self, director: Director, path: str | None = None) -> None:
        self.director = director
        self.path = socket_path(path)
        self._server: asyncio.AbstractServer | None = None
        self._lock = asyncio.Lock()
        self._inode: int | None = None
        # the client connections being served, each with its task (stop() closes and awaits them)
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        parent = os.path.dirname(self.path) or "."
        os.makedirs(parent, mode=0o755, exist_ok=True)
        if os.path.lexists(self.path):
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise OSError(errno.EEXIST, f"{self.path} exists and is not a socket")
            if _alive(self.path):
                raise OSError(errno.EADDRINUSE, f"a director already listens on {self.path}")
            os.unlink(self.path)  # stale: its director is gone
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._client, self.path,
                                                           limit=wire.MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self._inode = os.lstat(self.path).st_ino

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None
        # Server.close() leaves accepted connections open (Python 3.11): close them and wait
        # for their tasks, which end once the transport released its socket, so nothing
        # outlives the server (a liveness probe's connection, an idle ipvsadm).
        await asyncio.sleep(0)  # client tasks accepted but not yet started register first
        clients = dict(self._clients)
        for writer in clients.values():
            writer.close()
        if clients:
            await asyncio.wait(clients, timeout=2.0)
        with contextlib.suppress(OSError):
            if self._inode is not None and os.lstat(self.path).st_ino == self._inode:
                os.unlink(self.path)

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _allowed(self, writer: asyncio.StreamWriter) -> bool:
        uid = _peer_uid(writer.get_extra_info("socket"))
        return uid is not None and uid in (0, os.geteuid())

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients[task] = writer
        try:
            if not self._allowed(writer):
                writer.write(wire.dumps(_error(errno.EPERM, "permission denied")))
                await writer.drain()
                return
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    writer.write(wire.dumps(_error(errno.EMSGSIZE, "message too long")))
                    await writer.drain()
                    return
                if not line:
                    return
                writer.write(wire.dumps(await self.handle(line)))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._clients.pop(task, None)

    async def handle(self, line: bytes) -> dict[str, Any]:
        """One request line → its reply (never raises)."""
        try:
            message = wire.loads(line)
            op = message.get("op")
            if op == "ping":
                return {"ok": True}
            if op == "view":
                connections = message.get("connections", False)
                if not isinstance(connections, bool):
                    raise wire.WireError("connections is a bool")
                table = self.director.view(connections=connections)
                return {"ok": True, "table": wire.encode(table)}
            if op == "execute":
                cmd = wire.command_from(message.get("command"))
                async with self._lock:
                    await self.director.execute(cmd)
                return {"ok": True}
            raise wire.WireError(f"unknown op {op!r}")
        except wire.WireError as e:
            return _error(errno.EINVAL, str(e))
        except Exception as e:  # the director refused, or failed: tell the client why
            code = getattr(e, "errno", None)
            if not isinstance(code, int):
                log.exception("control request failed")
                code = errno.EIO
            return _error(code, str(e))


def _error(code: int, message: str) -> dict[str, Any]:
    return {"ok": False, "errno": code, "message": message}


class ControlClient:
    """Blocking client: one connection, requests in turn."""

    def __init__(self, path: str | None = None, timeout: float = 30.0) -> None:
        self.path = socket_path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def connect(self) -> ControlClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as e:
            sock.close()
            raise NoDirector(e.errno or errno.ECONNREFUSED, self.path) from None
        self._sock = sock
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ControlClient:
        return self.connect() if self._sock is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        self._sock.sendall(wire.dumps(message))
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("the director closed the control connection")
            self._buf += chunk
            if len(self._buf) > wire.MAX_LINE:
                raise wire.WireError("reply too long")
        line, _, self._buf = self._buf.partition(b"\n")
        reply = wire.loads(line)
        if not reply.get("ok"):
            code = reply.get("errno")
            raise ControlError(code if isinstance(code, int) else errno.EIO,
                               str(reply.get("message", "")))
        return reply

    def ping(self) -> None:
        self.request({"op": "ping"})

    def execute(self, cmd: Command) -> None:
        self.request(wire.execute_request(cmd))

    def view(self, *, connections: bool = False) -> TableView:
        return wire.table_from(self.request(wire.view_request(connections))["table"])
