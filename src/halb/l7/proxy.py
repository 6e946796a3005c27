"""proxy_pass: nginx's upstream module for HTTP/1.x backends.

One ProxyRequest per client request drives: body buffering (proxy_request_buffering) → pick a
peer (balancing/) → a cached keep-alive connection or a new one (proxy_connect_timeout) → send
(proxy_send_timeout) → read the response (proxy_read_timeout) → stream it to the client with
flow control. Failures follow ngx_http_upstream_next: `error`, `timeout` and `invalid_header`
always count against the peer (max_fails); `http_5xx`/`http_429` retry only when listed and
more tries remain, `http_403/404` retry without counting; a POST/LOCK/PATCH already sent is
retried only with `non_idempotent`; proxy_next_upstream_tries / _timeout bound the attempts.
Errors end with 502 (504 for timeouts), or the status nginx passes through.

No Task per request when the keep-alive cache is used: callbacks all the way. A new upstream
connection is made with loop.create_connection, the one coroutine on this path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import httptools

from halb.balancing import Outcome, Peer, PickContext
from halb.config.model import ProxyPass
from halb.l7 import handler, proxy_headers
from halb.l7.log import request_context
from halb.l7.response import Response
from halb.l7.static import Finish
from halb.l7.upstream import UpstreamGroup
from halb.l7.variables import expand

if TYPE_CHECKING:
    from halb.l7.http import HttpConnection
    from halb.l7.request import Request

NON_IDEMPOTENT = frozenset({"POST", "LOCK", "PATCH"})
STATUS_FT = {500: "http_500", 502: "http_502", 503: "http_503", 504: "http_504",
             403: "http_403", 404: "http_404", 429: "http_429"}
DEFAULT_NEXT = frozenset({"error", "timeout"})
PAUSE_BUFFERED = 1 << 20  # proxy_buffering on: read ahead of a slow client up to this much


class UpstreamConnection(asyncio.Protocol):
    """A connection to one peer; parses one response at a time for its current owner."""

    def __init__(self, peer: Peer, group: UpstreamGroup) -> None:
        self.peer = peer
        self.group = group
        self.transport: asyncio.Transport | None = None
        self.owner: ProxyRequest | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.requests = 0
        self.created = time.monotonic()
        self.closed = False
        self.idle_handle: asyncio.TimerHandle | None = None
        self.paused = False

    # transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner is None or self.parser is None:
            self.close()  # data on an idle connection: it cannot be reused
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            owner.fail("invalid_header", "upstream sent an upgrade response")
        except httptools.HttpParserError as e:
            if self.owner is owner:
                owner.fail("invalid_header", f"upstream sent invalid header: {e}")

    def eof_received(self) -> bool | None:
        owner = self.owner
        if owner is not None:
            owner.upstream_eof(self)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.idle_timer_cancel()
        owner = self.owner
        self.owner = None
        if owner is not None:
            owner.upstream_lost(self, exc)
        else:
            self.group.forget(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    # parser events → owner
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.owner is not None
        self.owner.resp_headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_status(self, status: bytes) -> None:
        assert self.owner is not None
        self.owner.resp_reason = status.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self.owner is not None:
            self.owner.upstream_headers(self)

    def on_body(self, body: bytes) -> None:
        if self.owner is not None:
            self.owner.upstream_body(body)

    def on_message_complete(self) -> None:
        if self.owner is not None:
            self.owner.upstream_done(self)

    # the cache
    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def go_idle(self, group: UpstreamGroup, timeout: float) -> None:
        self.owner = None
        self.parser = None
        loop = group.loop
        self.idle_handle = loop.call_later(timeout, self.close)

    def idle_timer_cancel(self) -> None:
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None

    def close(self) -> None:
        self.closed = True
        self.idle_timer_cancel()
        if self.transport is not None:
            self.transport.close()


class ProxyRequest:
    """The upstream side of one client request (ngx_http_upstream_t)."""

    def __init__(self, conn: HttpConnection, r: Request, pp: ProxyPass, group: UpstreamGroup,
                 host: str, port: int, uri_part: str | None) -> None:
        self.conn = conn
        self.r = r
        self.pp = pp
        self.group = group
        conf = r.conf
        assert conf is not None
        extra = conf.extra
        self.extra = extra
        self.loop = conn.loop
        self.next_upstream: frozenset[str] = extra.get("proxy_next_upstream", DEFAULT_NEXT)
        self.connect_timeout = extra.get("proxy_connect_timeout", 60.0)
        self.read_timeout = extra.get("proxy_read_timeout", 60.0)
        self.send_timeout = extra.get("proxy_send_timeout", 60.0)
        self.next_timeout = extra.get("proxy_next_upstream_timeout", 0.0)
        self.buffering = extra.get("proxy_buffering", True)
        self.http_version = extra.get("proxy_http_version", "1.0")
        tries = group.balancer.tries()
        cap = extra.get("proxy_next_upstream_tries", 0)
        self.tries = min(tries, cap) if cap else tries
        self.started = time.monotonic()
        self.proxy_host = host
        self.proxy_port = port
        self.uri_part = uri_part
        self.ctx = PickContext(now=time.monotonic(), rng=group.rng, client=_client_bytes(conn))
        key = group.config.key
        if key is not None:
            self.ctx.key = expand(key, r)
        self.peer: Peer | None = None
        self.upstream: UpstreamConnection | None = None
        self.request_sent = False
        self.header_sent = False
        self.keepalive_ok = False
        self.timer: asyncio.TimerHandle | None = None
        self.connecting: asyncio.Task[Any] | None = None
        self.attempt_start = 0.0
        self.connect_done = 0.0
        self.resp_headers: list[tuple[str, str]] = []
        self.resp_reason = ""
        self.resp_status = 0
        self.head: bytes = b""
        self.body: list[bytes] = []
        self.body_len = 0
        self.finished = False
        self.log_addrs: list[str] = []
        self.log_status: list[str] = []
        self.log_times: list[str] = []
        self.log_connect: list[str] = []
        self.log_header: list[str] = []

    # -- start --------------------------------------------------------------------------------

    def start(self) -> object:
        r = self.r
        self.r.var_cache = {**(r.var_cache or {}), "proxy_host": self.proxy_host,
                            "proxy_port": str(self.proxy_port)}
        if r.body_expected and not r.body_complete:
            self.conn.send_continue(r)
            self._take_buffered_body()
            r.on_body = self._body_chunk
            r.on_body_done = self._body_done
            return handler.PENDING
        self._take_buffered_body()
        self.connect_next()
        return handler.PENDING

    def _take_buffered_body(self) -> None:
        for chunk in self.r.body_chunks:
            self._body_chunk(chunk)
        self.r.body_chunks = []

    def _body_chunk(self, data: bytes) -> None:
        if self.extra.get("proxy_pass_request_body", True):
            self.body.append(data)
            self.body_len += len(data)

    def _body_done(self) -> None:
        self.r.on_body = None
        self.r.on_body_done = None
        if not self.finished:
            self.connect_next()

    def _build_head(self) -> bytes:
        r = self.r
        uri = proxy_headers.upstream_uri(r, self.pp, self.uri_part)
        has_body = r.content_length is not None or r.chunked
        if not self.extra.get("proxy_pass_request_body", True):
            has_body = False
        method_t = self.extra.get("proxy_method")
        method = expand(method_t, r) if method_t is not None else r.method
        return proxy_headers.request_head(
            r, method, uri, self.http_version, proxy_headers.set_headers(self.extra),
            self.body_len if has_body else None,
            self.extra.get("proxy_pass_request_headers", True))

    # -- connecting ---------------------------------------------------------------------------

    def connect_next(self) -> None:
        if self.finished:
            return
        self.ctx.now = time.monotonic()
        peer = self.group.balancer.pick(self.ctx)
        if peer is None:
            self.conn.server.error_log.log(
                "error", f'no live upstreams while connecting to upstream, upstream: '
                f'"{self.pp.scheme}://{self.group.name}{self.r.uri}"', self.conn.number,
                request_context(self.r))
            self.log_addrs.append(self.group.name)
            self.log_status.append("502")
            self.log_times.append("0.000")
            self._finish_error(502)
            return
        self.peer = peer
        self.attempt_start = time.monotonic()
        self.log_addrs.append(peer.address)
        if not self.head:
            self.head = self._build_head()
        cached = self.group.take_idle(peer)
        if cached is not None:
            self.connect_done = self.attempt_start
            self._attach(cached)
            return
        self._arm(self.connect_timeout, "connecting to upstream")
        self.connecting = self.loop.create_task(self._connect(peer))

    async def _connect(self, peer: Peer) -> None:
        up = UpstreamConnection(peer, self.group)
        try:
            if peer.host.startswith("unix:"):
                await self.loop.create_unix_connection(lambda: up, peer.host[5:])
            else:
                await self.loop.create_connection(lambda: up, peer.host, peer.port)
        except asyncio.CancelledError:
            up.close()
            raise
        except OSError as e:
            if not self.finished and self.peer is peer:
                self.fail("error", f"connect() failed ({e.errno}: {e.strerror}) while "
                          "connecting to upstream")
            return
        self.connecting = None
        if self.finished or self.peer is not peer:
            up.close()
            return
        self.connect_done = time.monotonic()
        self._attach(up)

    def _attach(self, up: UpstreamConnection) -> None:
        self.upstream = up
        up.owner = self
        up.parser = httptools.HttpResponseParser(up)
        up.requests += 1
        self.resp_headers = []
        self.resp_status = 0
        self.log_connect.append(f"{self.connect_done - self.attempt_start:.3f}")
        assert up.transport is not None
        data = self.head + b"".join(self.body) if self.body else self.head
        up.transport.write(data)
        self.request_sent = True
        self._arm(self.read_timeout, "reading response header from upstream")

    # -- timers -------------------------------------------------------------------------------

    def _arm(self, timeout: float, what: str) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(timeout, self._timed_out, what)

    def _timed_out(self, what: str) -> None:
        self.timer = None
        if self.finished:
            return
        self.fail("timeout", f"upstream timed out (110: Connection timed out) while {what}")

    # -- response -----------------------------------------------------------------------------

    def upstream_headers(self, up: UpstreamConnection) -> None:
        assert up.parser is not None
        status = up.parser.get_status_code()
        if 100 <= status < 200:
            self.resp_headers = []
            return  # an interim response: the final one follows
        self.resp_status = status
        self.log_header.append(f"{time.monotonic() - self.attempt_start:.3f}")
        ft = STATUS_FT.get(status)
        if ft is not None and self._should_retry(ft, status_based=True):
            self._next(ft, f"upstream answered {status}", log=False)
            return
        self._arm(self.read_timeout, "reading upstream")
        self._send_header(up)
        if self.r.method == "HEAD" or status in (204, 304):
            self.keepalive_ok = False
            self._complete(up, clean=status in (204, 304))

    def _send_header(self, up: UpstreamConnection) -> None:
        r = self.r
        status = self.resp_status
        resp = Response(status)
        resp.status_line = (f"HTTP/1.1 {status} {self.resp_reason}\r\n".encode("latin-1")
                            if self.resp_reason else None)
        hide = proxy_headers.HIDDEN.difference(self.extra.get("proxy_pass_header", ()))
        hide = hide.union(self.extra.get("proxy_hide_header", ()))
        length: int | None = None
        rules: list[tuple[str, str]] | None = None
        for name, value in self.resp_headers:
            low = name.lower()
            if low in hide:
                continue
            if low in proxy_headers.CONSUMED:
                if low == "content-length" and value.strip().isdigit():
                    length = int(value.strip())
                elif low == "content-type":
                    resp.content_type = value
                elif low == "last-modified":
                    resp.last_modified_raw = value
                elif low == "location":
                    if rules is None:
                        rules = proxy_headers.redirect_rules(r, self.pp, self.extra)
                    value = proxy_headers.rewrite_location(value, rules)
                    conf = r.conf
                    if value.startswith("/") and conf is not None and conf.absolute_redirect:
                        resp.location = handler.absolute_location(r, value)
                        resp.location_early = True  # the header filter's fixed position
                    else:
                        resp.headers.append((name, value))
                continue
            if low == "refresh":
                if rules is None:
                    rules = proxy_headers.redirect_rules(r, self.pp, self.extra)
                value = proxy_headers.rewrite_location(value, rules)
            resp.headers.append((name, value))
        assert up.parser is not None
        no_body = r.method == "HEAD" or status in (204, 304) or 100 <= status < 200
        if length is not None:
            resp.content_length = length
        else:  # chunked to an HTTP/1.1 client, else ended by close (none for HEAD, 204, 304)
            resp.unknown_length = True
        resp.no_body = no_body
        self.header_sent = True
        self.conn.stream_begin(r, resp, False, self._client_writable)

    def upstream_body(self, data: bytes) -> None:
        self._arm(self.read_timeout, "reading upstream")
        more = self.conn.stream_body(self.r, data)
        if not more and self.upstream is not None and self.upstream.transport is not None:
            limit = PAUSE_BUFFERED if self.buffering else 0
            if self.conn.write_buffered() > limit:
                self.upstream.transport.pause_reading()

    def _client_writable(self) -> None:
        up = self.upstream
        if up is not None and up.transport is not None and not up.closed:
            up.transport.resume_reading()

    def upstream_done(self, up: UpstreamConnection) -> None:
        if not self.header_sent:
            return
        assert up.parser is not None
        self.keepalive_ok = bool(up.parser.should_keep_alive()) and self.http_version == "1.1"
        self._complete(up, clean=True)

    def _complete(self, up: UpstreamConnection, clean: bool) -> None:
        if self.finished:
            return
        self._release(Outcome.SUCCESS)
        self.log_status.append(str(self.resp_status))
        self.upstream = None
        up.owner = None
        if clean and self.keepalive_ok and up.usable() and self.group.put_idle(up):
            pass
        else:
            up.close()
        self._end()
        self.conn.stream_end(self.r)

    def upstream_eof(self, up: UpstreamConnection) -> None:
        if self.finished or up is not self.upstream:
            return
        if self.header_sent:
            assert up.parser is not None
            if not up.parser.should_keep_alive() and up.parser.get_status_code() and \
                    self.resp_status and self._close_delimited():
                self._complete(up, clean=False)
                return
            self._mid_body_failure("upstream prematurely closed connection while reading "
                                   "upstream")
            return
        self.fail("error", "upstream prematurely closed connection while reading response "
                  "header from upstream")

    def _close_delimited(self) -> bool:
        return all(n.lower() not in ("content-length", "transfer-encoding")
                   for n, _ in self.resp_headers)

    def upstream_lost(self, up: UpstreamConnection, exc: Exception | None) -> None:
        if self.finished or up is not self.upstream:
            return
        reason = f"recv() failed ({exc})" if exc else "upstream prematurely closed connection"
        if self.header_sent:
            self._mid_body_failure(f"{reason} while reading upstream")
        else:
            self.fail("error", f"{reason} while reading response header from upstream")

    def _mid_body_failure(self, message: str) -> None:
        self.conn.server.error_log.log("error", message, self.conn.number,
                                       request_context(self.r))
        self._release(Outcome.FAILED)
        self._end()
        if self.upstream is not None:
            self.upstream.owner = None
            self.upstream.close()
            self.upstream = None
        self.conn.stream_abort(self.r)

    # -- failures -----------------------------------------------------------------------------

    def _should_retry(self, ft: str, status_based: bool = False) -> bool:
        if self.header_sent:
            return False
        wanted = {ft}
        if self.request_sent and self.r.method in NON_IDEMPOTENT:
            wanted.add("non_idempotent")
        if "off" in self.next_upstream or not wanted <= self.next_upstream:
            return False
        tries_left = self.tries - 1
        if status_based and tries_left < 1:
            return False
        if not status_based and tries_left <= 0:
            return False
        return not (self.next_timeout and time.monotonic() - self.started >= self.next_timeout)

    def fail(self, ft: str, message: str) -> None:
        """An attempt failed before the response header reached the client."""
        if self.finished:
            return
        if self.header_sent:
            self._mid_body_failure(message)
            return
        self._next(ft, message)

    def _next(self, ft: str, message: str, log: bool = True) -> None:
        """ngx_http_upstream_next: free the peer, then try another or finish."""
        if log:
            self.conn.server.error_log.log("error", message, self.conn.number,
                                           request_context(self.r) + self._upstream_ctx())
        outcome = Outcome.NEXT if ft in ("http_403", "http_404") else Outcome.FAILED
        status = {"timeout": 504, "http_500": 500, "http_503": 503, "http_403": 403,
                  "http_404": 404, "http_429": 429}.get(ft, 502)
        self.log_status.append(str(self.resp_status or status) if ft.startswith("http_")
                               else str(status))
        retry = self._should_retry(ft)
        self._release(outcome)
        self.tries -= 1
        if self.upstream is not None:
            self.upstream.owner = None
            self.upstream.close()
            self.upstream = None
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        if retry:
            self.connect_next()
            return
        self._finish_error(status)

    def _upstream_ctx(self) -> str:
        if self.peer is None:
            return ""
        return f', upstream: "{self.pp.scheme}://{self.peer.address}{self.r.uri}"'

    def _release(self, outcome: Outcome) -> None:
        peer = self.peer
        if peer is None:
            return
        self.peer = None
        now = time.monotonic()
        elapsed = now - self.attempt_start
        self.log_times.append(f"{elapsed:.3f}")
        header_time = None
        if self.log_header:
            with contextlib.suppress(ValueError):
                header_time = float(self.log_header[-1])
        self.group.balancer.release(peer, outcome, now, header_time=header_time,
                                    response_time=elapsed)

    def _finish_error(self, status: int) -> None:
        self._end()
        self.conn.finish_request(self.r, Finish(status))

    def _end(self) -> None:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        r = self.r
        cache = r.var_cache if r.var_cache is not None else {}
        cache["upstream_addr"] = ", ".join(self.log_addrs) or None
        cache["upstream_status"] = ", ".join(self.log_status) or None
        cache["upstream_response_time"] = ", ".join(self.log_times) or None
        cache["upstream_connect_time"] = ", ".join(self.log_connect) or None
        cache["upstream_header_time"] = ", ".join(self.log_header) or None
        r.var_cache = cache

    def client_gone(self) -> None:
        """The client closed its connection (nginx logs 499 unless ignore_client_abort)."""
        if self.finished:
            return
        if self.extra.get("proxy_ignore_client_abort", False) and not self.header_sent:
            return
        self._release(Outcome.SUCCESS)
        self._end()
        if self.connecting is not None:
            self.connecting.cancel()
        if self.upstream is not None:
            self.upstream.owner = None
            self.upstream.close()
            self.upstream = None


def _client_bytes(conn: HttpConnection) -> bytes | None:
    import ipaddress

    try:
        return ipaddress.ip_address(conn.remote_addr).packed
    except ValueError:
        return None


def proxy_pass(r: Request, pp: ProxyPass) -> object:
    """The content handler registered for locations with proxy_pass."""
    conn = r.conn
    upstreams = conn.server.upstreams
    uri_part: str | None = pp.uri.static if pp.uri is not None else None
    if pp.has_variables:
        url = expand(pp.url, r)
        scheme, _, rest = url.partition("://")
        if scheme not in ("http", "https") or not rest:
            conn.server.error_log.log("error", f'invalid URL prefix in "{url}"', conn.number,
                                      request_context(r))
            return Finish(500)
        slash = rest.find("/")
        hostport, uri_part = (rest, None) if slash < 0 else (rest[:slash], rest[slash:])
        group = upstreams.get(hostport)
        host, port = hostport, 80
        if group is None:
            from halb.config.nginx_upstream import resolve, split_host_port

            h, p, _ = split_host_port(hostport, 443 if scheme == "https" else 80)
            addrs = resolve(h) if p is not None else []
            if not addrs:
                conn.server.error_log.log("error", f"no resolver defined to resolve {h}",
                                          conn.number, request_context(r))
                return Finish(502)
            group = upstreams.adhoc(addrs[0], p or 80)
            port = p or 80
    else:
        assert pp.upstream is not None
        group = upstreams.get(pp.upstream)
        if group is None:
            return Finish(500, f'upstream "{pp.upstream}" is not configured')
        host, port = pp.host, pp.port
    if pp.scheme == "https":
        conn.server.error_log.log("error", "https upstreams are not supported yet", conn.number,
                                  request_context(r))
        return Finish(502)
    proxy = ProxyRequest(conn, r, pp, group, host, port, uri_part)
    r.proxy = proxy
    return proxy.start()


handler.CONTENT_HANDLERS["proxy_pass"] = proxy_pass  # type: ignore[assignment]
