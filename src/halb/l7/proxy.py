"""proxy_pass: nginx's upstream module for HTTP/1.x backends.

One ProxyRequest per client request (ngx_http_upstream_t) drives: reading the request body
(proxy_request_buffering) → pick a peer (balancing/) → a cached keep-alive connection or a new
one (proxy_connect_timeout) → send → read the response header (proxy_read_timeout, parsed as
nginx parses it: l7/proxy_response.py) → pass the body to the client.

Failures follow ngx_http_upstream_next: `error`, `timeout` and `invalid_header` always count
against the peer (max_fails); `http_5xx`/`http_429` retry only when listed and more than one try
remains, `http_403/404` retry without counting; a POST/LOCK/PATCH already sent is retried only
with `non_idempotent`; a cached connection that fails does not use up a try;
proxy_next_upstream_tries / _timeout bound the attempts. Errors end with 502 (504 for
timeouts) or, for the http_* kinds, the status (nginx's own page). A failure after the header
went out closes the client connection.

Output follows nginx's buffering: the header and small pieces of body are held until
postpone_output bytes are pending or the response ends (so an upstream that fails early leaves
nothing half-sent), with proxy_buffering off (or X-Accel-Buffering: no) every read is passed on
at once. Also: X-Accel-Redirect (an internal redirect keeping Content-Type, Set-Cookie, ...),
proxy_intercept_errors, 101 Switching Protocols as a tunnel when the client asked to upgrade,
an answer without a valid status line passed through as HTTP/0.9, and the $upstream_*
variables of every attempt. proxy_cache (l7/cache.py) hooks in at the start, the header, the
body, the end and the final failure.

No Task per request when a cached keep-alive connection is used: callbacks all the way. A new
upstream connection is made with loop.create_connection, the one coroutine on this path.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import TYPE_CHECKING, Any

from halb.balancing import Outcome, Peer, PickContext
from halb.config.model import ProxyPass
from halb.l7 import handler
from halb.l7.body import BODY, CONNECT, HEADER, OVER, READ_AHEAD, STREAM, TUNNEL, RequestBody
from halb.l7.cache import CacheRequest
from halb.l7.cache import begin as cache_begin
from halb.l7.filters.chain import header_filter
from halb.l7.proxy_body import RequestBodySender
from halb.l7.proxy_fail import UpstreamFailures
from halb.l7.proxy_headers import (
    CONSUMED,
    chunked_body,
    plan_for,
    render_head,
    request_head,
    rewrite_redirect,
    upstream_uri,
)
from halb.l7.proxy_response import (
    CHUNKED,
    DONE,
    EMPTY,
    HTTP09,
    INVALID,
    LENGTH,
    NEED_MORE,
    TOO_BIG,
    UNTIL_CLOSE,
    BodyReader,
    ResponseHead,
    parse_head,
)
from halb.l7.proxy_timer import ConnectionTimer
from halb.l7.proxy_tunnel import AccelAndTunnel, _prepend
from halb.l7.response import Response
from halb.l7.static import Finish
from halb.l7.tls import check_peer, upstream_error, upstream_tls
from halb.l7.upstream import Attempt, UpstreamConnection, UpstreamGroup, format_states, open_peer
from halb.l7.variables import expand

if TYPE_CHECKING:
    from halb.l7.http import HttpConnection
    from halb.l7.request import Request

NON_IDEMPOTENT = frozenset({"POST", "LOCK", "PATCH"})
STATUS_FT = {500: "http_500", 502: "http_502", 503: "http_503", 504: "http_504",
             403: "http_403", 404: "http_404", 429: "http_429"}
DEFAULT_NEXT = frozenset({"error", "timeout"})

# ProxyRequest phases


class ProxyRequest(RequestBodySender, AccelAndTunnel, UpstreamFailures):
    """The upstream side of one client request (ngx_http_upstream_t)."""

    __slots__ = (
        "att",
        "body",
        "body_done",
        "body_len",
        "body_sent",
        "buffering",
        "cache",
        "cached",
        "client_paused",
        "conn",
        "connecting",
        "ctx",
        "deadline",
        "group",
        "hbuf",
        "head",
        "header_committed",
        "kept",
        "loop",
        "out",
        "out_len",
        "paused",
        "peer",
        "phase",
        "plan",
        "pp",
        "proxy_host",
        "proxy_port",
        "r",
        "reader",
        "request_sent",
        "resp",
        "started",
        "states",
        "streaming",
        "timer",
        "timer_what",
        "tls_args",
        "tries",
        "up",
        "upchunked",
        "uri_part",
    )

    def __init__(self, conn: HttpConnection, r: Request, pp: ProxyPass, group: UpstreamGroup,
                 host: str, port: int, uri_part: str | None) -> None:
        self.conn = conn
        self.r = r
        self.pp = pp
        self.group = group
        conf = r.conf
        assert conf is not None
        plan = self.plan = plan_for(conf.extra, DEFAULT_NEXT)
        self.loop = conn.loop
        cap = plan.tries_cap
        tries = group.tries
        self.tries = min(tries, cap) if cap else tries
        self.buffering = plan.buffering
        self.started = 0.0
        self.proxy_host = host
        self.proxy_port = port
        self.uri_part = uri_part
        self.tls_args: dict[str, Any] | None = None  # proxy_pass https:// (l7/tls.py)
        self.ctx: PickContext | None = None
        self.peer: Peer | None = None
        self.up: UpstreamConnection | None = None
        self.cached = False
        self.cache: CacheRequest | None = None  # proxy_cache (l7/cache.py)
        self.request_sent = False
        self.header_committed = False  # the client's response has started (or was decided)
        self.timer: ConnectionTimer | None = None  # the connection's, while this request runs it
        self.deadline = 0.0
        self.timer_what = ""
        self.connecting: asyncio.Task[None] | None = None
        self.head = b""
        self.body = RequestBody(conf.client_body_buffer_size)
        self.body_sent = 0  # bytes of self.body sent in the current attempt
        self.client_paused = False  # reading the client waits for the upstream (streaming)
        self.body_done = False
        self.streaming = False  # proxy_request_buffering off: the body goes up as it comes
        self.upchunked = False  # ... chunked (a chunked request body with HTTP/1.1)
        self.body_len: int | None = None
        self.hbuf: bytearray | None = None
        self.resp: ResponseHead | None = None
        self.reader: BodyReader | None = None
        self.out: list[bytes] = []
        self.out_len = 0
        self.paused = False
        self.phase = BODY
        self.att: Attempt | None = None
        prev = r.proxy  # an earlier proxy_pass of this request (error_page, X-Accel-Redirect)
        self.states: list[Attempt | None] = (
            [*prev.states, None] if isinstance(prev, ProxyRequest) and prev.states else [])
        # headers an X-Accel-Redirect kept, for the response of the redirected request
        self.kept: list[tuple[str, str]] | None = prev.kept if isinstance(
            prev, ProxyRequest) else None

    # -- the request body ---------------------------------------------------------------------

    def start(self) -> object:
        r = self.r
        if r.expect_continue or r.send_continue:
            self.conn.send_continue(r)  # ngx_http_read_client_request_body tests Expect first
        if r.chunked:
            conf = r.conf
            assert conf is not None
            limit = conf.client_max_body_size
            if limit and r.body_received > limit:
                return self._too_large()
        for chunk in r.body_chunks:
            self._body_chunk(chunk)
        r.body_chunks = []
        if self.phase == OVER:
            return handler.PENDING
        if r.body_expected and not r.body_complete:
            r.on_body = self._body_chunk
            r.on_body_done = self._body_done
            plan = self.plan
            if not plan.request_buffering and plan.pass_body and (
                    not r.chunked or plan.version_tail == b" HTTP/1.1\r\n"):
                # (a body that came whole with the header is sent as a buffered one)
                self.streaming = True
                self.upchunked = r.chunked
                self._begin()
            return handler.PENDING
        self.body_done = True
        self._begin()
        return handler.PENDING

    def _begin(self) -> None:
        r = self.r
        # $proxy_internal_body_length: the client's length (also with pass_request_body off)
        self.body_len = None if self.upchunked else \
            r.body_received if r.chunked else r.content_length
        group = self.group
        self.ctx = PickContext(now=time.monotonic(), rng=group.rng, client=_client_bytes(
            self.conn.remote_addr) if group.needs_client else None)
        key = self.group.config.key
        if key is not None:
            self.ctx.key = expand(key, r)
        self.connect_next()


    # -- connecting ---------------------------------------------------------------------------

    def connect_next(self) -> None:
        if self.phase == OVER:
            return
        now = time.monotonic()
        if not self.started:
            self.started = now
        ctx = self.ctx
        assert ctx is not None
        ctx.now = now
        peer = self.group.balancer.pick(ctx)
        if peer is None:
            att = Attempt(self.group.name, now)
            att.status = 502
            att.response = 0.0
            self.states.append(att)
            self.conn.log_error("error", 'no live upstreams while connecting to upstream, '
                                f'upstream: "{self.pp.scheme}://{self.group.name}'
                                f'{self.r.uri}"', self.r)
            self._finish_error(502)
            return
        self.peer = peer
        addresses = self.group.addresses  # ($upstream_addr: peer.address, formatted once)
        addr = addresses.get(id(peer))
        if addr is None:
            addr = addresses[id(peer)] = peer.address
        att = self.att = Attempt(addr, now)
        self.states.append(att)
        self.phase = CONNECT
        if not self.head:
            self.head = self._build_head()
        cached = self.group.take_idle(peer)
        if cached is not None:
            self.cached = True
            self._attach(cached)
            return
        self.cached = False
        self._arm(self.plan.connect_timeout, "connecting to upstream")
        self.connecting = self.loop.create_task(self._connect(peer))

    def _build_head(self) -> bytes:
        r = self.r
        plan = self.plan
        uri = upstream_uri(r, self.pp, self.uri_part)
        method = expand(plan.method, r) if plan.method is not None else r.method
        if method == "HEAD" and self.cache is not None and self.cache.converted:
            method = "GET"  # proxy_cache_convert_head
        return request_head(r, plan, method, uri, self.body_len, self.upchunked)

    async def _connect(self, peer: Peer) -> None:
        try:
            bind = self.plan.bind
            local = (expand(bind, self.r), 0) if bind is not None and \
                not peer.host.startswith("unix:") else None
            up = await open_peer(self.loop, peer, self.group, local, self.tls_args)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.connect_failed(peer, e)
            return
        self.connected(peer, up)

    def connect_failed(self, peer: Peer, e: Exception) -> None:
        """The connection to `peer` could not be made (an OSError: `error`), or a bug."""
        if not isinstance(e, OSError):
            self.connecting = None
            self.crashed(e)
        elif self.phase == CONNECT and self.peer is peer:
            self.connecting = None
            why = None if self.tls_args is None else upstream_error(e, self.tls_args["name"])
            self.fail("error", why or f"connect() failed ({e.errno}: {e.strerror}) while "
                                      "connecting to upstream")

    def connected(self, peer: Peer, up: UpstreamConnection) -> None:
        self.connecting = None
        if self.phase != CONNECT or self.peer is not peer:
            up.close()
            return
        why = None if self.tls_args is None else check_peer(up.transport, self.tls_args)
        if why is not None:  # proxy_ssl_verify without SNI: the name is checked here
            up.close()
            self.fail("error", why)
            return
        try:
            self._attach(up)
        except Exception as e:
            self.crashed(e)

    def _attach(self, up: UpstreamConnection) -> None:
        att = self.att
        assert att is not None
        self.up = up
        up.owner = self
        up.requests += 1
        self.hbuf = None
        self.resp = None
        self.reader = None
        self.phase = HEADER
        att.connect = time.monotonic() - att.start
        sent = up.sent
        body = self.body
        self.body_sent = 0
        if body.fd < 0 and not self.upchunked and self.body_done:  # (body.in_memory)
            up.write(self.head + body.memory() if body.size else self.head)  # one write
            self.body_sent = body.size
            att.sent += up.sent - sent
            self.request_sent = True
            self._arm(self.plan.read_timeout, "reading response header from upstream")
            return
        up.write(self.head)
        att.sent += up.sent - sent
        self.request_sent = True
        self._arm(self.plan.send_timeout, "sending request to upstream")
        self._pump_body(up)

    # -- timers (one handle, moved by deadline) -----------------------------------------------

    def _arm(self, timeout: float, what: str) -> None:
        self.deadline = deadline = self.loop.time() + timeout
        self.timer_what = what
        if self.timer is None:  # the first arm fires at its deadline, as a new timer would
            timer = self.conn.proxy_timer
            if timer is None:
                timer = self.conn.proxy_timer = ConnectionTimer(self.loop)
            elif timer.owner is not None and timer.owner is not self:
                timer = ConnectionTimer(self.loop)  # busy (a background refresh): one of its own
            timer.start(self, deadline)
            self.timer = timer

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.stop(self)
            self.timer = None

    def _on_timer(self) -> None:
        timer = self.timer
        self.timer = None
        if self.phase == OVER or self.paused:
            if timer is not None:
                timer.stop(self)
            return
        now = self.loop.time()
        if now < self.deadline:
            assert timer is not None
            timer.start(self, self.deadline)
            self.timer = timer
            return
        self.fail("timeout", f"upstream timed out (110: Connection timed out) while "
                             f"{self.timer_what}")

    # -- the response header ------------------------------------------------------------------

    def upstream_data(self, up: UpstreamConnection, data: bytes) -> None:
        if up is not self.up:
            up.close()
            return
        att = self.att
        assert att is not None
        att.received += len(data)
        phase = self.phase
        if phase == STREAM:
            self._body_data(data)
            return
        if phase == TUNNEL:
            self.conn.tunnel_write(data)
            self._arm(self.plan.read_timeout, "reading upstream")
            if self.conn.write_buffered() > READ_AHEAD and up.transport is not None:
                up.transport.pause_reading()  # until the client takes it (_client_writable)
                self.paused = True
            return
        if phase != HEADER:
            return
        hbuf = self.hbuf
        if hbuf is None:
            buf: bytes | bytearray = data
        else:
            hbuf += data
            buf = hbuf
        status, head, message = parse_head(buf, self.plan.buffer_size)
        if status == NEED_MORE:
            if hbuf is None:
                self.hbuf = bytearray(data)
            return
        if status == DONE:
            assert head is not None
            rest = bytes(buf[head.size:]) if len(buf) > head.size else b""
            self.hbuf = None
            self._got_head(head, rest)
        elif status == HTTP09:
            self.hbuf = None
            self._http09(bytes(buf))
        elif status == TOO_BIG:
            self.hbuf = None
            self.resp = head  # the lines that fitted ($upstream_http_*)
            att.received = min(att.received, self.plan.buffer_size)  # nginx read no further
            self.fail("invalid_header", "upstream sent too big header while reading response "
                                        "header from upstream")
        elif status == INVALID:
            self.fail("invalid_header", f"{message} while reading response header from "
                                        "upstream")

    def _got_head(self, head: ResponseHead, rest: bytes) -> None:
        r = self.r
        att = self.att
        assert att is not None
        now = time.monotonic()
        att.header = now - att.start
        status = head.status
        att.status = status
        self.resp = head
        ft = STATUS_FT.get(status)
        if ft is not None and self.tries > 1 and self._retry_allowed(ft):
            self._next(ft, None)
            return
        plan = self.plan
        conf = r.conf
        assert conf is not None
        if plan.intercept_errors and status >= 300 and status in conf.error_pages:
            self._done_with_upstream(head, rest, Outcome.SUCCESS)
            auth = head.get("www-authenticate") if status == 401 else None

            def amend(resp: Response) -> None:  # a 401's challenge stays with the page
                if auth is not None:
                    _prepend(resp, [("WWW-Authenticate", auth)])

            self.conn.finish_request(r, Finish(status), amend if auth is not None else None)
            return
        accel = head.get("x-accel-redirect") if head.accel else None
        if accel is not None:
            self._done_with_upstream(head, rest, Outcome.SUCCESS)
            self._accel_redirect(head, accel)
            return
        if status == 101 and "upgrade" in r.headers:
            self._tunnel(head, rest)
            return
        cache = self.cache
        if cache is not None and cache.on_head(head, rest):
            return  # a stale answer from the cache instead (proxy_cache_use_stale)
        if (r.method == "HEAD" and not (cache is not None and cache.converted)) or \
                status in (204, 304):
            mode = EMPTY
        elif head.chunked:
            mode = CHUNKED
        elif head.content_length == 0:
            mode = EMPTY
        elif head.content_length > 0:
            mode = LENGTH
        else:
            mode = UNTIL_CLOSE
        self.reader = BodyReader(mode, head.content_length)
        buffering = head.get("x-accel-buffering") if head.accel else None
        if buffering is not None:
            low = buffering.lower()
            if low in ("yes", "no"):
                self.buffering = low == "yes"
        self._send_head(head)
        self.phase = STREAM
        self._arm(plan.read_timeout, "reading upstream")
        if rest:
            self._body_data(rest)
        elif self.reader.done:
            self._complete()

    def _retry_allowed(self, ft: str) -> bool:
        """ngx_http_upstream_next's conditions, except tries (the caller's)."""
        wanted = self.plan.next_upstream
        if ft not in wanted or (self.streaming and self.request_sent):
            return False
        if self.request_sent and self.r.method in NON_IDEMPOTENT and \
                "non_idempotent" not in wanted:
            return False
        timeout = self.plan.next_timeout
        return not (timeout and time.monotonic() - self.started >= timeout)

    def _send_head(self, head: ResponseHead) -> None:
        r = self.r
        conf = r.conf
        assert conf is not None
        plan = self.plan
        status = head.status
        line: str | None = head.status_line
        if r.err_status:  # ngx_http_send_header: an error_page's status replaces it
            status = r.err_status
            line = None
        hide = plan.hide
        content_type: str | None = None
        location: str | None = None
        rules = plan.redirects
        out: list[tuple[str, str]] = []
        for low, (name, value) in zip(head.lows, head.headers, strict=True):
            if low in hide:
                continue
            if low in CONSUMED:
                if low == "content-type":
                    content_type = value
                continue
            if rules is not None and low in ("location", "refresh"):
                if low == "location":
                    new = rewrite_redirect(r, rules, value)
                    if new is not None:
                        if new.startswith("/") and conf.absolute_redirect:
                            location = handler.absolute_location(r, new)
                            continue
                        value = new
                else:
                    at = value.lower().find("url=")
                    if at >= 0:
                        new = rewrite_redirect(r, rules, value, at + 4)
                        if new is not None:
                            value = new
            out.append((name, value))
        kept = self.kept
        if kept:  # an earlier X-Accel-Redirect's headers come first
            out[:0] = [(n, v) for n, v in kept if n.lower() != "content-type"]
            if content_type is None:
                content_type = next((v for n, v in kept if n.lower() == "content-type"), None)
        length = head.content_length
        resp = Response(status, headers=out, content_type=content_type,
                        content_length=length if length >= 0 else None)
        resp.unknown_length = length < 0
        body_filter = None
        if conf.filters is not None:  # add_header, expires, gzip (l7/filters/)
            body_filter = header_filter(r, resp, conf.filters, upstream=True)
            out = resp.headers
            if resp.unknown_length:
                length = -1
            if r.method == "HEAD":
                body_filter = None
        if self.conn.draining:
            r.keepalive = False
        chunked = chunked_body(r, conf, status, length)
        data = render_head(r, status, line, content_type, length, location, out, plan,
                           chunked, r.keepalive, resp.vary)
        self.header_committed = True
        self.conn.stream_start(r, resp, data, chunked, self._client_writable, body_filter)
        self.out_len = len(data)

    def _http09(self, data: bytes) -> None:
        """ngx_http_proxy_process_status_line: no status line, the bytes are the body."""
        r = self.r
        att = self.att
        assert att is not None
        self.conn.log_error("error", "upstream sent no valid HTTP/1.0 header while reading "
                                     "response header from upstream", r)
        att.header = time.monotonic() - att.start
        att.status = 200  # the client's keep-alive stays (the response's status is 0)
        self.resp = ResponseHead()
        self.resp.connection_close = True
        self.reader = BodyReader(UNTIL_CLOSE)
        self.header_committed = True
        self.conn.stream_start(r, Response(9), b"", False, self._client_writable)
        self.out_len = 0
        self.phase = STREAM
        self._arm(self.plan.read_timeout, "reading upstream")
        self._body_data(data)

    # -- the body -----------------------------------------------------------------------------

    def _body_data(self, data: bytes) -> None:
        reader = self.reader
        assert reader is not None
        if reader.mode != EMPTY:  # $upstream_response_length: what was read after the header
            self.att.length += len(data)  # type: ignore[union-attr]
        body = reader.feed(data)
        if reader.error:
            self._mid_body_failure(f"{reader.error} while reading upstream")
            return
        cache = self.cache
        if cache is not None and body:
            cache.write(body)
        if body and not self.r.is_head:
            if self.buffering:
                self.out.append(body)
                self.out_len += len(body)
                if self.out_len >= self.plan.postpone:
                    self._flush()
            else:
                self.out.append(body)
                self._flush()
        if reader.done:
            self._complete()
        elif self.phase == STREAM:
            self._arm(self.plan.read_timeout, "reading upstream")

    def _flush(self) -> None:
        out = self.out
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.out_len = 0
        if not self.conn.stream_body(self.r, data, not self.buffering):
            up = self.up
            if up is not None and up.transport is not None and \
                    (not self.buffering or self.conn.write_buffered() > READ_AHEAD):
                up.transport.pause_reading()
                self.paused = True

    def _client_writable(self) -> None:
        if not self.paused:
            return
        self.paused = False
        up = self.up
        if up is not None and up.transport is not None and not up.closed:
            up.transport.resume_reading()
            self._arm(self.plan.read_timeout, "reading upstream")

    def _complete(self) -> None:
        """The whole response has been read."""
        if self.phase == OVER:
            return
        reader = self.reader
        head = self.resp
        assert reader is not None and head is not None
        keep = (not head.connection_close and reader.done and not reader.extra
                and head.status != 101 and reader.mode != UNTIL_CLOSE)
        if self.cache is not None:
            self.cache.complete(reader.done and not reader.error)
        self._done_with_upstream(head, None, Outcome.SUCCESS, keep)
        out = self.out
        tail = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.conn.stream_end(self.r, tail)

    def _done_with_upstream(self, head: ResponseHead | None, rest: bytes | None,
                            outcome: Outcome, keep: bool | None = None) -> None:
        """Free the peer and the connection (to the cache when the response ended cleanly);
        with `rest` (the body was not read): keep-alive only for a response without one."""
        att = self.att
        now = time.monotonic()
        if att is not None:
            att.response = now - att.start
        self._release(outcome, now)
        up = self.up
        self.up = None
        if up is not None:
            up.owner = None
            if keep is None:
                keep = head is not None and not head.connection_close and not rest and (
                    self.r.method == "HEAD" or head.status in (204, 304)
                    or (head.content_length == 0 and not head.chunked))
            if not (keep and up.usable() and self.group.put_idle(up)):
                up.close()
        self._over()

    def _release(self, outcome: Outcome, now: float) -> None:
        peer = self.peer
        if peer is None:
            return
        self.peer = None
        att = self.att
        header_time = att.header if att is not None and att.header >= 0 else None
        self.group.balancer.release(peer, outcome, now, header_time=header_time,
                                    response_time=now - att.start if att else None)

    def _over(self) -> None:
        self.phase = OVER
        if self.cache is not None:
            self.cache.finish()
        body = self.body
        if body.fd >= 0 or body.chunks:
            body.close()
        if self.client_paused:
            self.client_paused = False
            self.conn.tunnel_pause(False)
        self._disarm()
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None

    # -- proxy_cache_use_stale -----------------------------------------------------------------

    def _next(self, ft: str, message: str | None) -> None:
        if self.cache is not None:
            self.cache.ft = ft
        super()._next(ft, message)

    def _finish_error(self, status: int) -> None:
        if self.cache is not None and self.cache.on_error(status):
            return
        super()._finish_error(status)

    # -- $upstream_* --------------------------------------------------------------------------

    def variable(self, name: str) -> str | None:
        """$upstream_addr, _status, _response_time, ... of every attempt."""
        return format_states(self.states, name, self.phase == OVER)

    def upstream_header(self, name: str) -> str | None:
        """$upstream_http_NAME."""
        head = self.resp
        if head is None:
            return None
        return head.get(name.replace("_", "-"))


def _client_bytes(addr: str) -> bytes | None:
    try:
        return ipaddress.ip_address(addr).packed
    except ValueError:
        return None


def proxy_pass(r: Request, pp: ProxyPass) -> object:
    """The content handler registered for locations with proxy_pass."""
    conn = r.conn
    upstreams = conn.server.upstreams
    uri_part: str | None = pp.uri.static if pp.uri is not None else None
    scheme = pp.scheme
    if pp.has_variables:
        url = expand(pp.url, r)
        scheme, _, rest = url.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https") or not rest:
            conn.log_error("error", f'invalid URL prefix in "{url}"', r)
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
                conn.log_error("error", f"no resolver defined to resolve {h}", r)
                return Finish(502)
            group = upstreams.adhoc(addrs[0], p or 80)
            port = p or 80
    else:
        assert pp.upstream is not None
        group = upstreams.get(pp.upstream)
        if group is None:
            return Finish(500, f'upstream "{pp.upstream}" is not configured')
        host, port = pp.host, pp.port
    proxy = ProxyRequest(conn, r, pp, group, host, port, uri_part)
    if scheme == "https":
        proxy.tls_args = upstream_tls(r, host)
    r.proxy = proxy
    conf = r.conf
    zone = conf.extra.get("proxy_cache") if conf is not None else None
    if zone is not None:
        answer = cache_begin(proxy, zone)
        if answer is not None:
            return answer
    return proxy.start()


handler.CONTENT_HANDLERS["proxy_pass"] = proxy_pass  # type: ignore[assignment]
