"""The user-space data plane's TCP forwarding: listeners and relays on sockets in one
edge-triggered epoll set of the plane's own, which the event loop watches as a single file
descriptor.

Why not asyncio transports: a proxied connection through two uvloop transports costs a Task and
a coroutine for the connect, transport and future objects, a getsockname + getpeername pair per
transport and a callback per event through the loop's machinery; here each connection is one
object (`Relay`) with its two sockets registered once (EPOLLIN | EPOLLOUT | EPOLLRDHUP, edge
triggered: no epoll_ctl afterwards, closing a socket removes it), read with recv_into into one
shared buffer and written with send; bytes are copied only when the other side cannot take them
at once. The connect to the real server is a non-blocking connect() whose completion is the
socket's first EPOLLOUT (its failure an EPOLLERR with SO_ERROR). System calls per proxied
connection: accept4, socket, setsockopt (TCP_NODELAY: the accepted side inherits it from the
listener), connect, two epoll_ctl, the reads and writes, one shutdown, two close. The accepted
socket stays in blocking mode and is only read and written with MSG_DONTWAIT (no ioctl).

Reads follow the edge-triggered rule: a socket is read until a short read (the kernel's queue
was emptied: the next arrival raises a new edge); when the event says the peer shut its side
(EPOLLRDHUP), a short read is the end of the stream (everything before the FIN had arrived).

Behaviour (what the transports gave and the table needs): the bytes (and FIN) a client sends
before its real server is connected wait in its socket and are read once the handshake is done
(the events seen meanwhile are remembered, so nothing is read in vain); flow control: more than
HIGH_WATER bytes waiting for one side stops reading the other until they drain below LOW_WATER;
half-close both ways (an EOF on one side becomes shutdown(SHUT_WR) on the other once what waits
for it is sent; both EOFs: both sockets closed, which sends the last FIN after the data); resets
passed on as resets (SO_LINGER 0); every event fed to the table as the segments IPVS would have
seen, stamped with the time the batch of events was read. Sockets closed while a batch is
dispatched are closed after it, so a number reused by an accept in the same batch never receives
an event of the socket it replaces. A handler that fails resets its connection; the others go
on.
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import select
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from halb.l4.conntrack import ProxyEvent
from halb.l4.model import ServiceKey

if TYPE_CHECKING:
    import asyncio

    from halb.l4.dataplane.userspace import UserspaceDataPlane
    from halb.l4.service import Conn, ServiceTable, VirtualService

log = logging.getLogger("halb.l4.userspace")

HIGH_WATER = 256 * 1024  # bytes waiting for one side before the other side stops being read
LOW_WATER = 64 * 1024
BUFSIZE = 64 * 1024  # one recv_into
ACCEPTS = 16  # connections accepted per listener event
BATCH = 256  # events per epoll_wait
_LINGER_RST = struct.pack("ii", 1, 0)
_ET = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
_OUT = select.EPOLLOUT
_ERR = select.EPOLLERR
_FAIL = select.EPOLLERR | select.EPOLLHUP
_RDHUP = select.EPOLLRDHUP | select.EPOLLHUP
_READ = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP
_DONTWAIT = socket.MSG_DONTWAIT
_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
_SOCK = socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
_AGAIN = (BlockingIOError, InterruptedError)
_ACCEPT, _CONNECTED, _CLIENT_FIN, _SERVER_FIN, _CLIENT_RST, _SERVER_RST = (
    ProxyEvent.ACCEPT, ProxyEvent.CONNECTED, ProxyEvent.CLIENT_FIN, ProxyEvent.SERVER_FIN,
    ProxyEvent.CLIENT_RST, ProxyEvent.SERVER_RST)

Handler = Callable[[int], None]


class Poller:
    """The epoll set of every TCP socket of one data plane (listeners and relays)."""

    __slots__ = ("batch", "buf", "clock", "ep", "handlers", "loop", "now", "view")

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Callable[[], float]) -> None:
        self.ep = select.epoll()
        self.loop = loop
        self.clock = clock
        self.now = clock()  # the time of the batch being dispatched
        self.handlers: dict[int, Handler] = {}
        self.batch: list[_socket.socket] | None = None  # sockets to close after this batch
        self.buf = bytearray(BUFSIZE)
        self.view = memoryview(self.buf)
        loop.add_reader(self.ep.fileno(), self._ready)

    def register(self, sock: _socket.socket, handler: Handler, mask: int = _ET) -> None:
        fd = sock.fileno()
        self.ep.register(fd, mask)
        self.handlers[fd] = handler

    def unregister(self, sock: _socket.socket) -> None:
        fd = sock.fileno()
        if self.handlers.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except OSError:
                pass

    def close(self, sock: _socket.socket) -> None:
        """Forget a socket and close it (after the batch being dispatched, if any)."""
        self.handlers.pop(sock.fileno(), None)
        if self.batch is not None:
            self.batch.append(sock)
        else:
            sock.close()

    def _ready(self) -> None:
        handlers = self.handlers
        self.batch = batch = []
        self.now = self.clock()
        try:
            for fd, ev in self.ep.poll(0, BATCH):
                h = handlers.get(fd)
                if h is not None:
                    try:
                        h(ev)
                    except Exception:  # one connection's failure, not everyone's
                        _failed(h)
        finally:
            self.batch = None
            for sock in batch:
                sock.close()

    def shutdown(self) -> None:
        try:
            self.loop.remove_reader(self.ep.fileno())
        except RuntimeError:  # the loop is closed
            pass
        self.ep.close()


def _failed(handler: Handler) -> None:
    log.exception("user-space data plane")
    owner = getattr(handler, "__self__", None)
    if isinstance(owner, Relay):
        owner.dp.errors["internal"] += 1
        owner._finish(reset=True)


def _rst(sock: _socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    except OSError:
        pass
    sock.close()


class Listener:
    """A TCP service's listening socket on VIP:port: accepts, schedules, starts relays."""

    __slots__ = ("dp", "family", "key", "paused", "poller", "sock", "svc")

    def __init__(self, dp: UserspaceDataPlane, poller: Poller, key: ServiceKey,
                 sock: socket.socket) -> None:
        self.dp = dp
        self.poller = poller
        self.key = key
        self.svc: VirtualService | None = None  # the table's service (set by every sync)
        self.sock = sock
        self.family = int(sock.family)
        self.paused = False
        # accepted sockets inherit TCP_NODELAY from the listener (one setsockopt less each)
        sock.setsockopt(*_NODELAY)
        poller.register(sock, self._readable, select.EPOLLIN)  # level triggered

    def _readable(self, ev: int) -> None:
        dp = self.dp
        accept = self.sock._accept  # type: ignore[attr-defined]
        family = self.family
        for _ in range(ACCEPTS):
            try:
                fd, addr = accept()
            except _AGAIN:
                return
            except OSError as e:  # EMFILE, ENFILE, ENOBUFS...: rest a moment, do not spin
                dp.errors["accept"] += 1
                log.warning("%s:%s: accept: %s", self.key.addr, self.key.port, e.strerror or e)
                self._pause()
                return
            # left in blocking mode, read and written with MSG_DONTWAIT (no ioctl(FIONBIO))
            sock = _socket.socket(family, socket.SOCK_STREAM, 0, fd)
            table, svc = dp.table, self.svc
            if table is None or svc is None:
                dp.errors["no-service"] += 1
                _rst(sock)
                continue
            cp = table.schedule(svc, (addr[0], addr[1]), self.poller.now, dp.rng)
            if cp is None:
                dp.errors["no-destination"] += 1
                log.warning("%s %s:%s: no destination available for %s:%s",
                            self.key.proto.value, self.key.addr, self.key.port, *addr[:2])
                _rst(sock)
                continue
            relay = Relay(dp, self.poller, table, cp, sock)
            try:
                relay.start()
            except Exception:  # never leave a half-made connection behind
                log.exception("accepting a connection")
                dp.errors["internal"] += 1
                relay._finish(reset=True)

    def _pause(self) -> None:
        if self.paused:
            return
        self.paused = True
        self.poller.unregister(self.sock)
        self.poller.loop.call_later(0.1, self._resume)

    def _resume(self) -> None:
        if self.paused and self.sock.fileno() >= 0:
            self.paused = False
            self.poller.register(self.sock, self._readable, select.EPOLLIN)

    def close(self) -> None:
        self.paused = False
        self.poller.unregister(self.sock)
        self.sock.close()


class Relay:
    """One proxied TCP connection: the client's socket, the real server's, and the table entry
    it owns."""

    __slots__ = ("c", "c_paused", "c_shut", "cbuf", "closed", "cp", "dp", "eof_in", "eof_out",
                 "pend", "poller", "s", "s_paused", "s_shut", "sbuf", "table", "up")

    def __init__(self, dp: UserspaceDataPlane, poller: Poller, table: ServiceTable, cp: Conn,
                 sock: _socket.socket) -> None:
        self.dp = dp
        self.poller = poller
        self.table = table
        self.cp = cp
        self.c = sock
        self.s: _socket.socket | None = None
        self.up = False  # the real server is connected
        self.pend = 0  # the client's events before that (its bytes wait in its socket)
        self.cbuf: bytearray | None = None  # bytes waiting to be sent to the client
        self.sbuf: bytearray | None = None  # ... to the real server
        self.eof_in = False  # the client sent FIN
        self.eof_out = False  # the real server sent FIN
        self.c_shut = self.s_shut = False  # our FIN sent to the client / to the server
        self.c_paused = self.s_paused = False  # reading stopped by flow control
        self.closed = False

    def start(self) -> None:
        """Own the table entry and connect to its real server."""
        cp, poller = self.cp, self.poller
        cp.owner = self
        self.table.event(cp, _ACCEPT, poller.now)
        self.dp.live.add(self)
        ep, handlers = poller.ep, poller.handlers
        fd = self.c.fileno()
        ep.register(fd, _ET)
        handlers[fd] = self._client
        host = cp.dest.spec.addr
        try:
            s = _socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, _SOCK)
        except OSError as e:  # EMFILE, ENFILE...
            self._refused(e.errno or errno.EMFILE)
            return
        self.s = s
        s.setsockopt(*_NODELAY)
        fd = s.fileno()
        ep.register(fd, _ET)
        handlers[fd] = self._server
        err = s.connect_ex((host, cp.dport))
        if err and err != errno.EINPROGRESS:
            self._refused(err)

    # -- the real server's side ----------------------------------------------------------------

    def _server(self, ev: int) -> None:
        if self.closed:
            return
        if not self.up:
            if ev & _FAIL:
                s = self.s
                assert s is not None
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._refused(err)
                    return
            if not ev & _OUT:
                return
            self._connected()
            if self.closed:
                return
        elif ev & _ERR:
            self._server_reset()
            return
        if ev & _READ and not self.eof_out and not self.s_paused:
            self._read_server(ev & _RDHUP)
            if self.closed:
                return
        if ev & _OUT and self.sbuf:
            self._flush_server()

    def _connected(self) -> None:
        self.up = True
        self.table.event(self.cp, _CONNECTED, self.poller.now)
        # what the client sent meanwhile is read now (and reaches the table as IPVS would have
        # seen it: after the handshake with the real server)
        pend = self.pend
        if pend & _READ:
            self._read_client(pend & _RDHUP)

    def _refused(self, err: int) -> None:
        cp = self.cp
        self.dp.errors["connect"] += 1
        log.warning("real server %s:%s: %s", cp.dest.spec.addr, cp.dport, os.strerror(err))
        self.table.event(cp, _SERVER_RST, self.poller.now)
        self._finish(reset=True)

    def _server_reset(self) -> None:
        self.dp.errors["server-reset"] += 1
        self.table.event(self.cp, _SERVER_RST, self.poller.now)
        self._finish(reset=True)

    def _read_server(self, to_eof: int) -> None:
        """Read until a short read, or to the end when the peer's FIN is known (`to_eof`):
        a short read after EPOLLRDHUP is the end (no read more to see the 0)."""
        s, c = self.s, self.c
        assert s is not None
        poller = self.poller
        buf, view = poller.buf, poller.view
        while True:
            try:
                n = s.recv_into(buf)
            except _AGAIN:
                return
            except OSError:
                self._server_reset()
                return
            if n:
                self.table.outbound(self.cp, n, poller.now)
                pending = self.cbuf
                if pending:
                    pending += view[:n]
                else:
                    try:
                        k = c.send(view[:n], _DONTWAIT)
                    except _AGAIN:
                        k = 0
                    except OSError:
                        self._client_reset()
                        return
                    if k < n:
                        self.cbuf = pending = bytearray(view[k:n])
                if pending and len(pending) > HIGH_WATER:
                    self.s_paused = True
                    return
                if n == BUFSIZE:
                    continue
                if not to_eof:
                    return
            self.eof_out = True
            self.table.event(self.cp, _SERVER_FIN, poller.now)
            self._settle()
            return

    def _flush_server(self) -> None:
        s, data = self.s, self.sbuf
        assert s is not None and data is not None
        try:
            k = s.send(data)
        except _AGAIN:
            return
        except OSError:
            self._server_reset()
            return
        del data[:k]
        if data:
            if self.c_paused and len(data) < LOW_WATER:
                self.c_paused = False
                self._read_client(1)
            return
        self.sbuf = None
        if self.c_paused:
            self.c_paused = False
            self._read_client(1)
            if self.closed:
                return
        self._settle()

    # -- the client's side ---------------------------------------------------------------------

    def _client(self, ev: int) -> None:
        if self.closed:
            return
        if ev & _ERR:
            self._client_reset()
            return
        if not self.up:
            self.pend |= ev
            return
        if ev & _READ and not self.eof_in and not self.c_paused:
            self._read_client(ev & _RDHUP)
            if self.closed:
                return
        if ev & _OUT and self.cbuf:
            self._flush_client()

    def _client_reset(self) -> None:
        self.table.event(self.cp, _CLIENT_RST, self.poller.now)
        self._finish(reset=True)

    def _read_client(self, to_eof: int) -> None:
        """As _read_server, the other way."""
        c, s = self.c, self.s
        assert s is not None
        poller = self.poller
        buf, view = poller.buf, poller.view
        while True:
            try:
                n = c.recv_into(buf, 0, _DONTWAIT)
            except _AGAIN:
                return
            except OSError:
                self._client_reset()
                return
            if n:
                self.table.inbound(self.cp, n, poller.now)
                pending = self.sbuf
                if pending:
                    pending += view[:n]
                else:
                    try:
                        k = s.send(view[:n])
                    except _AGAIN:
                        k = 0
                    except OSError:
                        self._server_reset()
                        return
                    if k < n:
                        self.sbuf = pending = bytearray(view[k:n])
                if pending and len(pending) > HIGH_WATER:
                    self.c_paused = True
                    return
                if n == BUFSIZE:
                    continue
                if not to_eof:
                    return
            self.eof_in = True
            self.table.event(self.cp, _CLIENT_FIN, poller.now)
            self._settle()
            return

    def _flush_client(self) -> None:
        c, data = self.c, self.cbuf
        assert data is not None
        try:
            k = c.send(data, _DONTWAIT)
        except _AGAIN:
            return
        except OSError:
            self._client_reset()
            return
        del data[:k]
        if data:
            if self.s_paused and len(data) < LOW_WATER:
                self.s_paused = False
                self._read_server(1)
            return
        self.cbuf = None
        if self.s_paused:
            self.s_paused = False
            self._read_server(1)
            if self.closed:
                return
        self._settle()

    # -- half-close and the end ----------------------------------------------------------------

    def _settle(self) -> None:
        """Pass each EOF on once what waits for that side is sent; both done: close."""
        if self.closed:
            return
        to_server = self.eof_in and self.up and not self.sbuf
        to_client = self.eof_out and not self.cbuf
        if to_server and to_client:  # close() sends the FINs not sent yet (no shutdown first)
            self._finish(reset=False)
            return
        try:
            if to_server and not self.s_shut:
                self.s_shut = True
                assert self.s is not None
                self.s.shutdown(socket.SHUT_WR)
            if to_client and not self.c_shut:
                self.c_shut = True
                self.c.shutdown(socket.SHUT_WR)
        except OSError:  # the peer is gone already: its reset shows on the next read
            pass

    def expired(self, conn: Conn) -> None:
        """The entry timed out or its real server was deleted: reset both sides."""
        self.dp.errors["expired"] += 1
        self._finish(reset=True)

    def _finish(self, *, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.dp.live.discard(self)
        if self.cp.owner is self:
            self.cp.owner = None
        poller = self.poller
        for sock in (self.c, self.s):
            if sock is None:
                continue
            if reset:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                except OSError:
                    pass
            poller.close(sock)
