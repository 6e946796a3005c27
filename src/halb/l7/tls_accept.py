"""Listening sockets whose connections need a look before HTTP: ssl and proxy_protocol; and
the connection class for the features that act per connection or per request (TLS variables,
PROXY protocol addresses, realip, plain HTTP sent to an ssl port).

A socket none of whose addresses has ssl or proxy_protocol is served as before
(loop.create_server, l7/http.HttpConnection; FeatureConnection only when realip is configured
somewhere), so these features cost nothing when they are off.

Otherwise the worker accepts itself (add_reader on the shared listening socket) and peeks at
the first bytes of each connection, as nginx's ngx_http_ssl_handshake does: with
proxy_protocol the header must be whole in what arrived first (else nginx's "broken header"
line and close); it is consumed and what follows stays in the kernel. Then, on an ssl
address, a first byte 0x16 (or SSLv2's high bit) starts the TLS handshake
(loop.connect_accepted_socket with the address's front context, SNI choosing the server); any
other byte is plain HTTP, read as usual and answered 497 → "400 The plain HTTP request was
sent to HTTPS port" (error_page 497 applies). The wait for the first bytes and the handshake
are bounded by client_header_timeout, as nginx bounds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import TYPE_CHECKING, Any

from halb.config.model import Listen, Return
from halb.l7 import handler, tls
from halb.l7.http import HttpConnection
from halb.l7.proxy_protocol import MAX_HEADER, BrokenHeader, ProxyInfo, parse
from halb.l7.realip import real_addr
from halb.l7.request import Request
from halb.l7.routing import find_location

if TYPE_CHECKING:
    from halb.l7.server import HttpServer


def _feature_class(base: type[HttpConnection]) -> type[HttpConnection]:
    """The server's connection class (HttpConnection, or stub_status's counting one) with
    the per-connection features; made once per base class."""

    class FeatureConnection(base):  # type: ignore[valid-type,misc]
        """A connection of the server's class that may carry TLS, a PROXY protocol header,
        and realip."""

        __slots__ = ("orig_addr", "orig_port", "plain_on_ssl", "pp", "realip_on", "tls")
        express = False  # (l7/express.py knows nothing of realip, TLS or the PROXY header)

        def __init__(self, server: HttpServer, number: int, pp: ProxyInfo | None = None,
                     plain_on_ssl: bool = False, realip_on: bool = False) -> None:
            super().__init__(server, number)
            self.pp = pp
            self.plain_on_ssl = plain_on_ssl
            self.realip_on = realip_on
            self.tls: Any = None
            self.orig_addr = ""
            self.orig_port = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sslobj = transport.get_extra_info("ssl_object")
            if sslobj is not None:
                self.tls = sslobj
            super().connection_made(transport)
            if sslobj is not None:
                self.sock_fd = -1  # no sendfile under TLS
            self.orig_addr, self.orig_port = self.remote_addr, self.remote_port

        def phases(self, r: Request) -> object:  # type: ignore[override]
            """post-read: realip; a plain request on an ssl address is finalized with 497."""
            if self.realip_on:
                self.remote_addr, self.remote_port = self.orig_addr, self.orig_port
                server = r.server
                assert server is not None
                if not self._realip(r, server.conf.extra):
                    # preaccess, with the location's settings: only a request that gets past
                    # the rewrite phase (`return` ends it there)
                    m = find_location(server.locations, r.uri)
                    if m.location is not None and not _returns(m.location.conf.rewrite):
                        self._realip(r, m.location.conf.extra)
            if self.plain_on_ssl:
                assert r.server is not None
                r.conf = r.server.conf
                return handler.run(r, handler.error(
                    497, "client sent plain HTTP request to HTTPS port while reading client "
                    "request headers", "info"), 2)
            return handler.handle(r)

        def _done(self, r: Request, lingering: bool) -> None:
            super()._done(r, lingering)  # logged with the request's address
            if self.realip_on and self.responding is None:
                # nginx's realip cleanup: what comes next is the connection's own again
                self.remote_addr, self.remote_port = self.orig_addr, self.orig_port

        def _answer_pending(self) -> None:
            if self.realip_on:  # a request that could not be parsed gets no realip
                self.remote_addr, self.remote_port = self.orig_addr, self.orig_port
            super()._answer_pending()

        def _realip(self, r: Request, extra: Any) -> bool:
            trusted = extra.get("set_real_ip_from")
            if not trusted:
                return False
            kind, name = extra.get("real_ip_header", ("x-real-ip", "x-real-ip"))
            if kind == "proxy_protocol":
                if self.pp is None:
                    return False
                values = [self.pp.src_addr]
            elif kind == "x-forwarded-for":
                values = [v for k, v in r.header_list if k.lower() == "x-forwarded-for"]
            else:
                v = r.headers.get(name)
                values = [v] if v is not None else []
            got = real_addr(self.orig_addr, values, trusted, extra.get("real_ip_recursive", False))
            if got is None:
                return False
            self.remote_addr, self.remote_port = got
            if kind == "proxy_protocol" and self.pp is not None:
                self.remote_port = self.pp.src_port
            return True

    return FeatureConnection


_CLASSES: dict[type[HttpConnection], type[HttpConnection]] = {}


def feature_class(base: type[HttpConnection]) -> Any:
    cls = _CLASSES.get(base)
    if cls is None:
        cls = _CLASSES[base] = _feature_class(base)
    return cls


FeatureConnection = feature_class(HttpConnection)


class Acceptor:
    """Accepts on one listening socket itself (ssl / proxy_protocol addresses behind it);
    closed like an asyncio Server."""

    def __init__(self, server: HttpServer, listen: Listen, sock: socket.socket,
                 state: tls.ServerTls) -> None:
        self.server = server
        self.loop = server.loop
        self.listen = listen
        self.state = state
        self.sock = sock.dup()
        self.sock.setblocking(False)
        self.pending: set[_FirstBytes] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        self.closed = True
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
        for fb in list(self.pending):
            fb.close()

    def _accept(self) -> None:
        for _ in range(64):
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.server.error_log.log("alert", f"accept4() failed ({e.errno}: "
                                          f"{e.strerror})")
                return
            conn.setblocking(False)
            if conn.family != socket.AF_UNIX:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _FirstBytes(self, conn, peer).start()

    def spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class _FirstBytes:
    """One accepted connection until its first bytes tell what it is."""

    def __init__(self, acc: Acceptor, sock: socket.socket, peer: Any) -> None:
        self.acc = acc
        self.sock = sock
        self.number = next(acc.server.numbers)
        local = sock.getsockname()
        if isinstance(local, tuple):
            self.table = acc.server.listen_table.lookup(local[0], local[1])
            self.client = peer[0]
        else:
            self.table = acc.server.listen_table.lookup(f"unix:{local}", 0)
            self.client = "unix:"
        key = (self.table.addr, self.table.port)
        self.ssl = key in acc.state.ssl_addrs
        self.pp_wanted = key in acc.state.pp_addrs
        self.info: ProxyInfo | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.action = "reading PROXY protocol" if self.pp_wanted else "SSL handshaking"
        conf = self.table.default.conf
        self.timeout = conf.client_header_timeout
        self.buffer = conf.client_header_buffer_size

    def start(self) -> None:
        if not (self.ssl or self.pp_wanted):
            self._plain(False)
            return
        self.acc.pending.add(self)
        self.acc.loop.add_reader(self.sock.fileno(), self._readable)
        self.timer = self.acc.loop.call_later(self.timeout, self._timed_out)

    def _context(self) -> str:
        srv = self.table
        host = {"*": "0.0.0.0"}.get(srv.addr, srv.addr)
        where = srv.addr if srv.addr.startswith("unix:") else (
            f"[{host}]:{srv.port}" if ":" in host else f"{host}:{srv.port}")
        return f" while {self.action}, client: {self.client}, server: {where}"

    def _log(self, level: str, message: str) -> None:
        log = self.acc.server.error_log
        if log.enabled(level):
            log.log(level, message, self.number, self._context())

    def _stop_waiting(self) -> None:
        self.acc.pending.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        with contextlib.suppress(ValueError, OSError):
            if self.sock.fileno() >= 0:
                self.acc.loop.remove_reader(self.sock.fileno())

    def close(self) -> None:
        self._stop_waiting()
        self.sock.close()

    def _timed_out(self) -> None:
        self.timer = None
        self._log("info", "client timed out (110: Connection timed out)")
        self.close()

    def _readable(self) -> None:
        try:
            data = self.sock.recv(MAX_HEADER + 1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._log("info", f"recv() failed ({e.errno}: {e.strerror})")
            self.close()
            return
        if not data:
            self._log("info", "client closed connection")
            self.close()
            return
        if self.pp_wanted:
            self.pp_wanted = False
            try:
                parsed = parse(data if self.ssl else data[:self.buffer])
            except BrokenHeader as e:
                if e.level:
                    self._log(e.level, e.message)
                with contextlib.suppress(OSError):  # read, as nginx has: a FIN, not a reset
                    self.sock.recv(len(data))
                self.close()
                return
            try:
                self.sock.recv(parsed.length)  # the header is consumed; the rest stays
            except OSError:
                self.close()
                return
            self.info = parsed.info
            data = data[parsed.length:]
            self.action = "SSL handshaking"
            if not data:
                if self.ssl:
                    return  # wait for the handshake's first byte
                self._plain(False)
                return
        if self.ssl and (data[0] & 0x80 or data[0] == 0x16):
            self._tls()
        else:
            self._plain(self.ssl)

    def _factory(self, plain_on_ssl: bool) -> Any:
        server = self.acc.server
        number, info, realip = self.number, self.info, self.acc.state.realip
        cls = feature_class(server.protocol)
        return lambda: cls(server, number, info, plain_on_ssl, realip)

    def _plain(self, plain_on_ssl: bool) -> None:
        self._stop_waiting()
        self.acc.spawn(self._connect(self._factory(plain_on_ssl), None))

    def _tls(self) -> None:
        self._stop_waiting()
        ctx = self.acc.state.fronts[(self.table.addr, self.table.port)]
        self.acc.spawn(self._connect(self._factory(False), ctx))

    async def _connect(self, factory: Any, ctx: Any) -> None:
        loop = self.acc.loop
        alert_fd = -1  # a second descriptor: the alert of a failed handshake goes out on it
        try:
            if ctx is None:
                _, conn = await loop.connect_accepted_socket(factory, self.sock)
            else:
                alert_fd = os.dup(self.sock.fileno())
                # nginx waits 3 s for the client's close_notify (ngx_ssl_shutdown)
                _, conn = await loop.connect_accepted_socket(
                    factory, self.sock, ssl=ctx, ssl_handshake_timeout=self.timeout,
                    ssl_shutdown_timeout=3.0)
            if self.acc.closed:  # the worker began draining during the handshake
                conn.shutdown()
        except TimeoutError:
            self._log("info", "client timed out (110: Connection timed out)")
            self.sock.close()
        except (OSError, EOFError, ConnectionError) as e:
            self._log("info", tls.handshake_error(e))
            alert = getattr(e, "halb_alert", b"")
            if alert and alert_fd >= 0:
                with contextlib.suppress(OSError):
                    os.write(alert_fd, alert)
            self.sock.close()
        except Exception as e:  # a bug costs one connection, never the worker
            self._log("alert", f"connection failed: {e!r}")
            self.sock.close()
        finally:
            if alert_fd >= 0:
                os.close(alert_fd)


def _returns(script: tuple[Any, ...] | None) -> bool:
    """A location whose rewrite statements include a `return` ends in the rewrite phase."""
    return script is not None and any(isinstance(op, Return) for op in script)


def _family(addr: str) -> int:
    return 6 if ":" in addr else 4


async def serve(server: HttpServer, listen: Listen, sock: socket.socket) -> Any:
    """Serve one listening socket: an asyncio Server, or an Acceptor when an address it
    serves has ssl or proxy_protocol."""
    state = tls.prepare(server.config)
    loop = server.loop
    if state.special:
        key = listen.key
        served = {k for k in state.ssl_addrs | state.pp_addrs
                  if k == key or (listen.is_wildcard and k[1] == listen.port
                                  and _family(k[0]) == _family(listen.addr)
                                  and not k[0].startswith("unix:"))}
        if served:
            return Acceptor(server, listen, sock, state)
        realip = state.realip
        cls = feature_class(server.protocol)
        return await loop.create_server(
            lambda: cls(server, next(server.numbers), realip_on=realip),
            sock=sock.dup(), backlog=listen.backlog)
    protocol = server.protocol
    return await loop.create_server(lambda: protocol(server, next(server.numbers)),
                                    sock=sock.dup(), backlog=listen.backlog)
