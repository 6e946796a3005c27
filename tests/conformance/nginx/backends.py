"""Scriptable HTTP backends for the proxy conformance tests (nginx and halb proxy to the same ones).

A BackendSet runs named backends on 127.0.0.1 (free ports) in one asyncio loop in a daemon
thread of the test process. Each backend answers with the exact raw bytes of the request it
received (request line, headers in order, body with its framing) as the response body, so a
difference in what nginx and halb send upstream shows up in the compared body. Every request is
logged (backend, the proxy's source address — the configs use `proxy_bind %ADDR%` — the
connection ordinal and the request's number on that connection), so keep-alive reuse and which
peers were tried, in which order, are observable; the response also carries `X-Backend: name`
and `X-Req: n` (n-th request on this upstream connection).

The answer is chosen by keywords anywhere in the request path (so a location prefix or a
rewritten URI does not matter), e.g. /x/status/503, /chunked, /slow-header/500ms:

    status/NNN            that status (the echo as the body; none for 1xx/204/304 or HEAD)
    reason/NNN/Some_Text  that status with that reason phrase ("_" is a space; "-" none)
    chunked               chunked body          close-delimited   no length, FIN ends it
    http10                HTTP/1.0 status line  empty             an empty body
    slow-header/DUR       wait DUR before the header (DUR: 300ms, 2s)
    slow-body/DUR         header at once, the body in two halves DUR apart
    reset-mid-body        header + part of the body, then RST
    close-mid-body        header + part of the body (Content-Length says more), then FIN
    redirect-relative     Location: /moved/here
    redirect-absolute     Location: http://<the Host it was sent>/moved/here  (+ Refresh)
    redirect-other        Location: http://other.example:8080/x
    big/SIZE              a SIZE (5m, 100k) body of a fixed pattern instead of the echo
    hdrs                  Set-Cookie x2, Date, Server, X-Pad, X-Accel-*, Expires, ...
    lm, lm-rfc850, lm-bad a Last-Modified (IMF-fixdate, RFC 850 date, not a date)
    bighdr/SIZE           a header line of SIZE bytes
    cl-and-te, dup-cl     Content-Length with Transfer-Encoding / twice
    xaccel                X-Accel-Redirect: /a.txt (-html, -named, -args, -missing, -unsafe:
                          other targets, with headers an accel redirect keeps)
    multi                 repeated headers, lower-case names
    no-ctype              no Content-Type header
    hdr/NAME/VALUE        add that header (VALUE percent-encoded: hdr/Cache-Control/no-cache)
    continue              a "100 Continue" before the final answer
    bad-header            an invalid status line
    upgrade               "101 Switching Protocols"; then, when the request has an Upgrade
                          header, every byte received comes back after "echo:" until EOF
    name                  the body is only the backend's name (balancing)
    fail/NAMES/NNN        status NNN when this backend is one of NAMES (comma separated)
    slow-on/NAMES/DUR     slow header only on those backends
    drop-on/NAMES         close without answering on those backends (FIN)
    reset-on/NAMES        reset without answering on those backends (RST)
    failfirst/N/NNN       status NNN for the first N attempts of this request (same target
                          from the same proxy, whichever backend gets them)
    slowfirst/N/DUR, dropfirst/N, resetfirst/N   the same for a slow header, FIN, RST
    drop-reused           close without answering a request that is not the connection's first

`down` backends hold a bound port that does not listen (connections are refused);
`blackhole` backends listen with a full accept queue (connections time out).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote


@dataclass
class Hit:
    backend: str
    peer: str  # the proxy's source address
    conn: int  # the connection's ordinal on this backend
    req: int  # the request's number on that connection
    method: str
    target: str
    headers: list[tuple[str, str]]
    raw: bytes
    at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return None


def _duration(text: str) -> float:
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    if text.endswith("s"):
        return float(text[:-1])
    return float(text)


def _size(text: str) -> int:
    mult = {"k": 1024, "m": 1024 * 1024}.get(text[-1:].lower(), 1)
    return int(text[:-1] if mult != 1 else text) * mult


_BLOCK = hashlib.sha256(b"big").hexdigest().encode() * 64  # 4 KiB


def pattern(n: int) -> bytes:
    return (_BLOCK * (n // len(_BLOCK) + 1))[:n]


class _Conn(asyncio.Protocol):
    def __init__(self, backend: _Backend) -> None:
        self.b = backend
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.number = 0
        self.requests = 0
        self.queue: asyncio.Queue[tuple[bytes, str, str, str, list[tuple[str, str]]] | None] = \
            asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self.closed = False
        self.echo: asyncio.Future[None] | None = None  # upgraded: echo what comes

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else "?"
        self.b.conns += 1
        self.number = self.b.conns
        self.b.set.conn_log.append((self.b.name, self.peer, self.number))
        self.worker = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        if self.echo is not None:
            assert self.transport is not None
            self.transport.write(b"echo:" + data)
            return
        self.buf += data
        while True:
            msg = self._parse()
            if msg is None:
                return
            self.queue.put_nowait(msg)

    def eof_received(self) -> bool:
        if self.echo is not None and not self.echo.done():
            self.echo.set_result(None)
        self.queue.put_nowait(None)
        return True  # keep our side open until the queued answers are written

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.echo is not None and not self.echo.done():
            self.echo.set_result(None)
        self.queue.put_nowait(None)

    def _parse(self) -> tuple[bytes, str, str, str, list[tuple[str, str]]] | None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buf[:end + 4])
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, version = [*lines[0].split(" "), "", ""][:3]
        headers = []
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers.append((k, v.strip()))
        low = {k.lower(): v for k, v in headers}
        pos = end + 4
        if low.get("transfer-encoding", "").lower() == "chunked":
            while True:
                eol = self.buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(self.buf[pos:eol].split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    tend = self.buf.find(b"\r\n\r\n", eol)
                    if tend < 0:
                        return None
                    pos = tend + 4
                    break
                if len(self.buf) < eol + 2 + size + 2:
                    return None
                pos = eol + 2 + size + 2
        elif "content-length" in low:
            n = int(low["content-length"])
            if len(self.buf) < pos + n:
                return None
            pos += n
        raw = bytes(self.buf[:pos])
        del self.buf[:pos]
        return raw, method, target, version, headers

    async def _serve(self) -> None:
        try:
            while True:
                msg = await self.queue.get()
                if msg is None or self.closed:
                    break
                keep = await self._answer(*msg)
                if not keep:
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.close()

    def _rst(self) -> None:
        t = self.transport
        assert t is not None
        sock = t.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t.abort()
        self.closed = True

    async def _answer(self, raw: bytes, method: str, target: str, version: str,
                      headers: list[tuple[str, str]]) -> bool:
        b = self.b
        self.requests += 1
        hit = Hit(b.name, self.peer, self.number, self.requests, method, target, headers, raw)
        prior = sum(1 for h in b.set.hits if h.peer == self.peer and h.target == target)
        b.set.hits.append(hit)
        t = self.transport
        assert t is not None
        low = {k.lower(): v for k, v in headers}
        conn_hdr = low.get("connection", "").lower()
        keep = (version == "HTTP/1.1" and "close" not in conn_hdr) or \
            (version == "HTTP/1.0" and "keep-alive" in conn_hdr)
        path = target.split("?", 1)[0]
        parts = [unquote(p) for p in path.split("/")]
        status, reason = 200, "OK"
        framing = "length"
        resp_version = "HTTP/1.1"
        body: bytes = raw
        extra: list[tuple[str, str]] = []
        ctype = True
        ctype_value = "text/plain"
        header_delay = body_delay = 0.0
        mid = ""
        interim = False
        host = low.get("host", "")
        bad = upgrade = False
        i = 0
        while i < len(parts):
            p = parts[i]
            nxt = parts[i + 1] if i + 1 < len(parts) else ""
            if p == "status" and nxt.isdigit():
                status, reason = int(nxt), REASONS.get(int(nxt), "Whatever")
                i += 1
            elif p == "reason" and nxt.isdigit() and i + 2 < len(parts):
                status = int(nxt)
                reason = "" if parts[i + 2] == "-" else parts[i + 2].replace("_", " ")
                i += 2
            elif p == "chunked":
                framing = "chunked"
            elif p == "close-delimited":
                framing = "close"
            elif p == "http10":
                resp_version = "HTTP/1.0"
            elif p == "empty":
                body = b""
            elif p == "slow-header":
                header_delay = _duration(nxt)
                i += 1
            elif p == "slow-body":
                body_delay = _duration(nxt)
                i += 1
            elif p in ("reset-mid-body", "close-mid-body"):
                mid = p
            elif p == "redirect-relative":
                status, reason = 302, "Found"
                extra.append(("Location", "/moved/here?x=1"))
            elif p == "redirect-absolute":
                status, reason = 301, "Moved Permanently"
                extra.append(("Location", f"http://{host}/moved/here"))
                extra.append(("Refresh", f"5; url=http://{host}/refreshed"))
            elif p == "redirect-8bit":  # UTF-8 bytes in the Location and Refresh values
                status, reason = 302, "Found"
                extra.append(("Location", f"http://{host}/caf\u00c3\u00a9?x=\u00c3\u00bc"))
                extra.append(("Refresh", "0; URL=/\u00c3\u00a9"))
            elif p == "redirect-other":
                status, reason = 302, "Found"
                extra.append(("Location", "http://other.example:8080/x"))
            elif p == "big":
                body = pattern(_size(nxt))
                i += 1
            elif p == "hdrs":
                extra += [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2"),
                          ("Date", "Mon, 01 Jan 2001 00:00:00 GMT"), ("Server", "backend/9.9"),
                          ("X-Pad", "avoid browser bug"), ("X-Accel-Expires", "10"),
                          ("X-Accel-Buffering", "no"), ("X-Accel-Charset", "utf-8"),
                          ("X-Accel-Limit-Rate", "100000"), ("X-Powered-By", "PHP/5"),
                          ("Cache-Control", "max-age=60"), ("Expires", "Thu, 01 Jan 2037 "
                                                                      "00:00:00 GMT"),
                          ("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT"),
                          ("ETag", '"abc"'), ("Vary", "Accept-Encoding"),
                          ("Accept-Ranges", "bytes"), ("Keep-Alive", "timeout=5"),
                          ("Link", "</a>; rel=preload"), ("WWW-Authenticate", "Basic")]
            elif p == "no-ctype":
                ctype = False
            elif p == "hdr" and i + 2 < len(parts):  # hdr/NAME/VALUE (percent-encoded)
                extra.append((nxt, parts[i + 2]))
                i += 2
            elif p == "lm":
                extra.append(("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT"))
            elif p == "lm-rfc850":
                extra.append(("Last-Modified", "Tuesday, 14-Nov-23 22:13:20 GMT"))
            elif p == "lm-bad":
                extra.append(("Last-Modified", "yesterday"))
            elif p == "bighdr":
                extra.append(("X-Big", "b" * _size(nxt)))
                i += 1
            elif p == "cl-and-te":
                extra.append(("Transfer-Encoding", "chunked"))
            elif p == "dup-cl":
                extra.append(("Content-Length", str(len(body))))
            elif p == "xaccel":
                extra.append(("X-Accel-Redirect", "/a.txt"))
            elif p == "xaccel-html":
                extra += [("Set-Cookie", "s=1"), ("X-Accel-Redirect", "/dir/page.html"),
                          ("Content-Disposition", "attachment; filename=p.html"),
                          ("Cache-Control", "private"), ("X-Other", "dropped"),
                          ("Expires", "Thu, 01 Jan 2037 00:00:00 GMT"), ("ETag", '"up"')]
                ctype_value = "application/x-custom"
            elif p == "xaccel-named":
                extra.append(("X-Accel-Redirect", "@accel"))
            elif p == "xaccel-args":
                extra.append(("X-Accel-Redirect", "/a.txt?x=1&y=2"))
            elif p == "xaccel-missing":
                extra += [("X-Accel-Redirect", "/nothing-here.txt"), ("Set-Cookie", "m=1")]
            elif p == "xaccel-unsafe":
                extra.append(("X-Accel-Redirect", "/dir/../../etc/passwd"))
            elif p == "ws-header":
                extra.append(("X-Spaced", "  padded value  "))
            elif p == "multi":
                extra += [("X-Multi", "one"), ("X-Multi", "two"), ("x-lower", "v"),
                          ("Content-Disposition", "attachment"), ("Cache-Control", "a"),
                          ("Cache-Control", "b")]
            elif p == "continue":
                interim = True
            elif p == "bad-header":
                bad = True
            elif p == "upgrade":
                upgrade = True
            elif p == "name":
                body = b.name.encode()
            elif p == "fail" and i + 2 < len(parts):
                if b.name in parts[i + 1].split(","):
                    status = int(parts[i + 2])
                    reason = REASONS.get(status, "Whatever")
                i += 2
            elif p == "slow-on" and i + 2 < len(parts):
                if b.name in parts[i + 1].split(","):
                    header_delay = _duration(parts[i + 2])
                i += 2
            elif p in ("failfirst", "slowfirst") and i + 2 < len(parts):
                if prior < int(nxt):
                    if p == "failfirst":
                        status = int(parts[i + 2])
                        reason = REASONS.get(status, "Whatever")
                    else:
                        header_delay = _duration(parts[i + 2])
                i += 2
            elif p in ("dropfirst", "resetfirst") and nxt:
                if prior < int(nxt):
                    if p == "resetfirst":
                        self._rst()
                    else:
                        t.close()
                        self.closed = True
                    return False
                i += 1
            elif p == "drop-reused":
                if self.requests > 1:
                    t.close()
                    self.closed = True
                    return False
            elif p in ("drop-on", "reset-on") and nxt:
                if b.name in nxt.split(","):
                    if p == "reset-on":
                        self._rst()
                    else:
                        t.close()
                        self.closed = True
                    return False
                i += 1
            i += 1
        if header_delay:
            await asyncio.sleep(header_delay)
        if self.closed:
            return False
        if bad:
            t.write(b"HTTP/1.1 2OO Nope\r\nContent-Length: 0\r\n\r\n")
            return False
        if upgrade:
            t.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\n\r\n")
            if "upgrade" in low:  # the client asked: echo until it closes
                self.echo = asyncio.get_running_loop().create_future()
                if self.buf:
                    t.write(b"echo:" + bytes(self.buf))
                    self.buf.clear()
                await self.echo
            return False
        if interim:
            t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        if framing == "close":
            keep = False
        out = [f"{resp_version} {status}{' ' + reason if reason else ''}\r\n"]
        if ctype:
            out.append(f"Content-Type: {ctype_value}\r\n")
        if framing == "length" and status not in (204, 304):
            n = len(body) + (1000 if mid else 0)
            out.append(f"Content-Length: {n}\r\n")
        elif framing == "chunked" and not no_body:
            out.append("Transfer-Encoding: chunked\r\n")
        out.append(f"X-Backend: {b.name}\r\nX-Req: {self.requests}\r\n")
        for k, v in extra:
            out.append(f"{k}: {v}\r\n")
        if not keep and framing != "close":
            out.append("Connection: close\r\n")
        out.append("\r\n")
        head = "".join(out).encode("latin-1")
        if no_body:
            t.write(head)
            return keep
        if mid:
            t.write(head + body[:len(body) // 2])
            await asyncio.sleep(0.05)
            if mid == "reset-mid-body":
                self._rst()
            else:
                t.close()
                self.closed = True
            return False
        pieces = [body]
        if body_delay or framing == "chunked":
            half = len(body) // 2
            pieces = [body[:half], body[half:]]
        if framing == "chunked":
            t.write(head)
            for k, piece in enumerate(pieces):
                if k and body_delay:
                    await asyncio.sleep(body_delay)
                if piece:
                    t.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            t.write(b"0\r\n\r\n")
        else:
            t.write(head + pieces[0])
            for piece in pieces[1:]:
                if body_delay:
                    await asyncio.sleep(body_delay)
                t.write(piece)
        if framing == "close":
            t.close()
            self.closed = True
            return False
        return keep


REASONS = {100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
           202: "Accepted", 204: "No Content", 206: "Partial Content",
           301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
           307: "Temporary Redirect", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 418: "I'm a teapot",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout", 599: "Custom"}


class _Backend:
    def __init__(self, bset: BackendSet, name: str) -> None:
        self.set = bset
        self.name = name
        self.conns = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0


class BackendSet:
    """Named backends on 127.0.0.1 in a thread; `down` ones refuse, `blackhole` ones hang."""

    def __init__(self, names: list[str], down: tuple[str, ...] = (),
                 blackhole: tuple[str, ...] = ()) -> None:
        self.names = list(names)
        self.hits: list[Hit] = []
        self.conn_log: list[tuple[str, str, int]] = []  # (backend, peer, ordinal) per accept
        self.backends: dict[str, _Backend] = {}
        self.ports: dict[str, int] = {}
        self._socks: list[socket.socket] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="backends", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        for name in down:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))  # bound, never listening: connect() is refused
            self._socks.append(s)
            self.ports[name] = s.getsockname()[1]
        for name in blackhole:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(0)
            port = s.getsockname()[1]
            self._socks.append(s)
            for _ in range(3):  # fill the accept queue: further SYNs are dropped
                c = socket.socket()
                c.setblocking(False)
                with contextlib.suppress(BlockingIOError, OSError):
                    c.connect(("127.0.0.1", port))
                self._socks.append(c)
            self.ports[name] = port

    def start(self) -> BackendSet:
        self.thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            for name in self.names:
                b = _Backend(self, name)
                b.server = self.loop.run_until_complete(self.loop.create_server(
                    lambda b=b: _Conn(b), "127.0.0.1", 0, backlog=128))
                b.port = b.server.sockets[0].getsockname()[1]
                self.backends[name] = b
                self.ports[name] = b.port
        except BaseException as e:  # reported by start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        for b in self.backends.values():
            if b.server is not None:
                b.server.close()
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        with contextlib.suppress(BaseException):
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        for s in self._socks:
            s.close()
        self._socks.clear()

    def addr(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def substitute(self, text: str) -> str:
        """Config placeholders: %B_name% becomes 127.0.0.1:port of that backend."""
        for name in sorted(self.ports, key=len, reverse=True):
            text = text.replace(f"%B_{name}%", self.addr(name))
        return text

    def hits_for(self, peer: str, marker: str | None = None) -> list[Hit]:
        """Requests a proxy (by source address) sent, optionally only those whose request
        line contains `marker`."""
        return [h for h in list(self.hits) if h.peer == peer
                and (marker is None or marker in h.target)]

    def conns_for(self, peer: str, backend: str | None = None) -> int:
        return sum(1 for b, p, _ in list(self.conn_log) if p == peer
                   and (backend is None or b == backend))
