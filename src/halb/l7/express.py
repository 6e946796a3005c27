"""The proxy's express lane: the common proxied request, answered with far less Python.

A keep-alive client sends `GET` or `HEAD` without a body; its location only proxies to a
named upstream over plain HTTP (no rewrite, try_files, filters, cache, variables in
proxy_pass, hash or ip_hash keys); the request goes over a cached connection to the peer the
balancer picks (or a new one, made as proxy.py makes it); the answer is a 2xx with a
Content-Length that arrives whole in one read. That is most of the
traffic of a busy reverse proxy, and for it this module does in a few calls what the general
path (l7/http.py → handler → l7/proxy.py → the response writer) does in many: the request head
is checked and split by regular expressions, the location found once per URI, the upstream's
head parsed by l7/proxy_response.py (remembered by its bytes), and the answer written in one
piece.

Everything observable is the general path's: the same Request (header list, $host, $uri, $args,
keep-alive rules, request length) for variables and the access log, the same request head to
the upstream (l7/proxy_headers.request_head), the same response head (render_head, with the
proxy's hidden and consumed headers), the peer released with the same outcome and timings, the
connection cached under the same rules, the same $upstream_* record.

Anything else leaves the lane before it changes anything (the request then goes through the
httptools parser as usual), or, once a peer has been picked, is handed to a ProxyRequest in
the state the general path would have reached (promote): an answer of another shape (it
parses it again from the start), a connection refused (its retries and errors), an upstream
that closes, resets or times out, a client that goes away, a bug.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from halb.balancing import Outcome, Peer, PickContext
from halb.config.model import Server
from halb.l7.body import CONNECT, HEADER
from halb.l7.express_shapes import (
    OTHER,
    Answer,
    Filtered,
    Head,
    Route,
    answer_of,
    head_of,
    route_of,
)
from halb.l7.filters.chain import header_filter
from halb.l7.filters.gzip import GzipBody
from halb.l7.http_write import STATES
from halb.l7.proxy import ProxyRequest
from halb.l7.proxy_headers import (
    Plan,
    chunked_body,
    render_head,
    request_head,
    upstream_uri,
)
from halb.l7.proxy_timer import ConnectionTimer
from halb.l7.request import Request
from halb.l7.response import DATES, Response
from halb.l7.routing import validate_host
from halb.l7.static import Finish
from halb.l7.upstream import (
    Attempt,
    UpstreamConnection,
    UpstreamGroup,
    format_states,
    open_peer,
)
from halb.l7.variables import expand

if TYPE_CHECKING:
    from halb.l7.http import HttpConnection

_, _, _, WRITING, _, _ = STATES


def take(conn: HttpConnection, data: bytes) -> bool:
    """Answer `data` (a whole request head, nothing else) in the lane; False (nothing done)
    when it is not the lane's."""
    if len(data) > conn.conf.client_header_buffer_size:
        return False  # nginx's larger buffers: the general path simulates them
    h = head_of(data)
    if h is None:
        return False
    lane = conn.lane
    if lane[0] is h:  # (keep-alive clients repeat their heads: decided once per connection)
        _, host, server, route, group = lane
    else:
        found = _route(conn, h)
        if found is None:
            return False
        host, server, route, group = found
        conn.lane = (h, host, server, route, group)
    # the request, as the parser callbacks and the header checks would have made it
    now = time.monotonic()
    requests = conn.requests = conn.requests + 1
    sconf = conn.conf = server.conf
    keepalive = h.keepalive
    if keepalive and (sconf.keepalive_timeout <= 0 or conn.draining
                      or requests >= sconf.keepalive_requests
                      or now - conn.started > sconf.keepalive_time):
        keepalive = False
    r = Request.lane(conn, now, h.method, h.version, h.target, h.request_line, len(data),
                     h.header_list, h.headers, host, server, keepalive, h.path, h.query,
                     route.location, route.conf, requests)
    conn.responding = r
    conn.state = WRITING  # (conn.wait_upstream: no client timer while the upstream answers)
    if conn.timer is not None:
        conn.timer_off = True
    try:
        Express(conn, r, route, group, now, h)
    except Exception as e:  # a bug must cost one request, never the worker
        proxy = r.proxy
        if isinstance(proxy, (Express, ProxyRequest)):
            proxy.crashed(e)
        else:
            conn.log_error("alert", f"proxy failed: {e!r}", r)
            r.keepalive = False
            conn.finish_request(r, Finish(500))
    return True


def _route(conn: HttpConnection, h: Head) -> tuple[str, Server, Route, UpstreamGroup] | None:
    """The host, server, route and upstream of a head on this connection, if the lane's."""
    host_header = h.host_header
    if host_header is None:
        host = ""
    else:
        last = conn.last_host
        if host_header == last[0]:
            valid = last[1]
        else:
            valid = validate_host(host_header)
            conn.last_host = (host_header, valid)
        if valid is None:
            return None
        host = valid
    last_match = conn.last_match
    if host == last_match[0]:
        match = last_match[1]
    else:
        match = conn.table.find(host)
        conn.last_match = (host, match)
    if match.captures or match.named:
        return None
    server = match.server
    route = route_of(server, h.path)
    if route is None:
        return None
    group = conn.server.upstreams.get(route.upstream)
    if group is None or group.needs_client or group.config.key is not None:
        return None
    return host, server, route, group


def _idle(conn: HttpConnection, r: Request, t: asyncio.Transport) -> None:
    """conn._done for the lane's usual end (keep-alive, nothing else read meanwhile): the
    access log (DATES was updated for the answer), then idle until keepalive_timeout."""
    conn.responding = None
    logs = r.conf.access_log  # type: ignore[union-attr]
    if logs:
        conn.server.access_logs.log_memo(logs, r)
    t.resume_reading()
    conn._idle()


class Express:
    """The upstream side of one request in the lane (what ProxyRequest would be for it).
    What its $upstream_* variables show is kept as plain facts (an Attempt is made only when
    asked for, or when the general path takes over)."""

    body_len = None  # ($proxy_internal_body_length: no body)
    upchunked = False
    # (defaults: an instance sets what differs)
    answer: Answer | None = None
    timer: ConnectionTimer | None = None
    deadline = 0.0
    cached = False
    what = ""
    up: UpstreamConnection | None = None
    connecting: asyncio.Task[None] | None = None
    promoted: ProxyRequest | None = None
    pending = False  # picked, waiting for the end of the iteration to be sent (send)
    ctx: PickContext | None = None
    tried: set[int] | None = None
    peer: Peer | None = None  # until released
    picked: Peer | None = None
    head = b""
    over = False
    # the attempt's facts (upstream.Attempt's fields)
    connect = -1.0
    sent = 0
    received = 0
    status = 0
    header = -1.0
    length = 0

    def __init__(self, conn: HttpConnection, r: Request, route: Route, group: UpstreamGroup,
                 now: float, h: Head) -> None:
        self.conn = conn
        self.r = r
        self.route = route
        self.group = group
        self.plan = plan = route.plan
        self.started = now
        self.h = h
        r.proxy = self
        first = group.pick_first(now) if group.pick_first is not None else None
        if first is not None:  # (plain round robin: no PickContext unless promoted)
            peer, self.tried = first
        else:
            ctx = self.ctx = PickContext(now=now, rng=group.rng)
            peer = group.balancer.pick(ctx)
        if peer is None:  # no live upstreams: the general path's 502
            self._promote().connect_next()
            return
        self.peer = self.picked = peer
        head = h.upstream_heads.get(route) if route.static else None
        if head is None:
            pp = route.pp
            uri = upstream_uri(r, pp, pp.uri.static if pp.uri is not None else None)
            head = request_head(r, plan, r.method, uri, None)
            if route.static:
                h.upstream_heads[route] = head
        self.head = head
        timer = conn.proxy_timer
        if timer is None:
            timer = conn.proxy_timer = ConnectionTimer(conn.loop)
        elif timer.owner is not None:
            timer = ConnectionTimer(conn.loop)
        self.timer = timer
        self.pending = True
        conn.server.held.send_later(self)  # (the connection is chosen then: l7/cork.py)

    def send(self) -> None:
        """At the end of the iteration: the request to a cached connection to the peer picked,
        or to a new one."""
        if not self.pending:
            return  # (promoted meanwhile, and sent then)
        self.pending = False
        peer = self.peer
        assert peer is not None and self.timer is not None
        up = self.group.take_idle(peer)
        if up is None:  # no cached connection to this peer: a new one
            loop = self.conn.loop
            self.what = "connecting to upstream"
            self.deadline = deadline = loop.time() + self.plan.connect_timeout
            self.timer.start(self, deadline)  # type: ignore[arg-type]
            self.connecting = loop.create_task(self._connect(peer))
            return
        self.connect = 0.0
        self.cached = True
        self._attach(up, self.timer)

    def _attach(self, up: UpstreamConnection, timer: ConnectionTimer) -> None:
        self.up = up
        up.owner = self  # type: ignore[assignment]
        up.requests += 1
        head = self.head
        up.write(head)
        self.sent = len(head)
        self.what = "reading response header from upstream"
        self.deadline = deadline = self.conn.loop.time() + self.plan.read_timeout
        timer.start(self, deadline)  # type: ignore[arg-type]

    async def _connect(self, peer: Peer) -> None:
        """As ProxyRequest._connect (plain HTTP: no TLS); a failure goes to the general path
        (its retries, its error), and so does the connection when the request went there while
        it was being made."""
        try:
            bind = self.plan.bind
            local = (expand(bind, self.r), 0) if bind is not None and \
                not peer.host.startswith("unix:") else None
            up = await open_peer(self.conn.loop, peer, self.group, local)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # (promoted, the ProxyRequest has this connect as its own, in CONNECT)
            (self.promoted or self._promote()).connect_failed(peer, e)
            return
        self.connecting = None
        if self.promoted is not None:  # (its connecting task was this one)
            self.promoted.connected(peer, up)
            return
        assert self.timer is not None
        self.connect = time.monotonic() - self.started
        self._attach(up, self.timer)

    def attempt(self) -> Attempt | None:
        """The attempt as ProxyRequest records it (None: no peer was picked)."""
        peer = self.picked
        if peer is None:
            return None
        addresses = self.group.addresses
        addr = addresses.get(id(peer))
        if addr is None:
            addr = addresses[id(peer)] = peer.address
        att = Attempt(addr, self.started)
        att.connect = self.connect
        att.sent = self.sent
        att.received = self.received
        att.status = self.status
        att.header = att.response = self.header
        att.length = self.length
        return att

    # -- what the request's variables ask -----------------------------------------------------

    @property
    def proxy_host(self) -> str:
        return self.route.pp.host

    @property
    def proxy_port(self) -> int:
        return self.route.pp.port

    def variable(self, name: str) -> str | None:
        att = self.attempt()
        return format_states([att] if att is not None else [], name, self.over)

    def upstream_header(self, name: str) -> str | None:
        """$upstream_http_NAME (the first of the name, as ResponseHead.get)."""
        a = self.answer
        if a is None:
            return None
        low = name.replace("_", "-")
        for field, (_, value) in a.fields:
            if field == low:
                return value
        return None

    # -- the answer ---------------------------------------------------------------------------

    def upstream_data(self, up: UpstreamConnection, data: bytes) -> None:
        r = self.r
        a = answer_of(data)
        head_only = r.method == "HEAD"
        if a is OTHER or up is not self.up or a.size > self.plan.buffer_size or \
                len(data) - a.size != (0 if head_only else a.length):
            self._promote().upstream_data(up, data)
            return
        self.answer = a
        conn = self.conn
        now = time.monotonic()
        self.received = len(data)
        self.status = r.status = a.code
        self.header = now - self.started
        if conn.draining:
            r.keepalive = False
        route = self.route
        DATES.update(time.time())  # (the Date of a head rendered in an earlier second is old)
        if route.conf.filters is not None:
            if not head_only:
                self.length = a.length
            data_out = self._filtered(a, data, r, route)
        else:
            rendered = a.rendered.get((route, r.keepalive))
            if rendered is None or rendered[0] != DATES.second:
                rendered = a.render(route, r)
            _, head, r.response = rendered
            if head_only or not a.length:
                data_out = head
            else:
                self.length = r.body_bytes_sent = a.length
                data_out = head + data[a.size:]
        r.bytes_sent = len(data_out)
        # the peer and the connection, as _done_with_upstream leaves them
        peer = self.peer
        if peer is not None:
            self.peer = None
            self.group.balancer.release(peer, Outcome.SUCCESS, now, header_time=self.header,
                                        response_time=self.header)
        self.up = None
        up.owner = None
        ut = up.transport
        if a.close or up.closed or ut is None or ut.is_closing() or \
                not self.group.put_idle(up):  # (up.usable())
            up.close()
        self.over = True
        timer = self.timer
        if timer is not None:
            if timer.owner is self:  # (timer.stop)
                timer.owner = None
            self.timer = None
        conn.on_writable = None
        r.log_memo = (self.h, a, route, r.keepalive)
        t = conn.transport
        if t is None or conn.closing:
            if conn.responding is r:
                conn._done(r, False)
        elif conn.responding is not r:
            t.write(data_out)
        elif not r.keepalive or conn.draining or conn.queue or conn.pending is not None or \
                conn.cur is not None:
            t.write(data_out)
            conn._done(r, False)  # (logged: the request and this object may part)
        else:  # the usual end: the answer held to the end of the iteration, the client idle
            conn.server.held.hold(conn, data_out)  # type: ignore[arg-type]
            _idle(conn, r, t)
        self.r = None  # type: ignore[assignment]
        r.proxy = None

    def _filtered(self, a: Answer, data: bytes, r: Request, route: Route) -> bytes:
        """add_header, expires, gzip: the head as ProxyRequest._send_head renders it through
        the header filter, the body through the body filter in the pieces the general path
        gives it (the whole body at the end; with proxy_buffering off, or postpone_output
        reached, first as data, then an empty end), chunk-framed when the length went."""
        plan = route.plan
        conf = route.conf
        head_only = r.method == "HEAD"
        memo_key = (route, r.keepalive, self.h)
        memo = a.filtered.get(memo_key) if route.filters_static else None
        if memo is not None and memo.second == DATES.second:
            r.keepalive = memo.keepalive
            resp = r.response = memo.resp
            head = memo.head
            if head_only:
                return head
            body_filter = None
            if memo.gzip is not None:
                body_filter = resp.gzip = GzipBody(*memo.gzip)
            return head + self._body(head, data[a.size:], body_filter, memo.chunked, plan, r)
        out, content_type = a.passed(plan.hide)
        length = a.length
        code = a.code
        resp = Response(code, headers=out, content_type=content_type, content_length=length)
        body_filter = header_filter(r, resp, conf.filters, upstream=True)
        if resp.unknown_length:
            length = -1
        gzip = conf.filters.gzip
        params = None if resp.gzip is None or gzip is None else (
            gzip.level, gzip.wbits, gzip.memlevel, a.length)
        if head_only:
            body_filter = None
        chunked = chunked_body(r, conf, code, length)
        second = DATES.second
        head = render_head(r, code, a.status_line, content_type, length, None, resp.headers,
                           plan, chunked, r.keepalive, resp.vary)
        r.response = resp
        if route.filters_static and DATES.second == second:
            if len(a.filtered) >= 64:
                a.filtered.clear()
            a.filtered[memo_key] = Filtered(second, head, resp, params, chunked, r.keepalive)
        if head_only:
            return head
        return head + self._body(head, data[a.size:], body_filter, chunked, plan, r)

    @staticmethod
    def _body(head: bytes, body: bytes, body_filter: GzipBody | None, chunked: bool,
              plan: Plan, r: Request) -> bytes:
        pieces = []
        if body_filter is not None:
            # (the general path counts the rendered head into postpone_output)
            if not plan.buffering or len(head) + len(body) >= plan.postpone:
                pieces.append(body_filter.data(body, not plan.buffering))
                body = b""
            pieces.append(body_filter.last(body))
        else:
            pieces.append(body)
        if chunked:
            framed = [b"%x\r\n%b\r\n" % (len(p), p) for p in pieces if p]
            framed.append(b"0\r\n\r\n")
            pieces = framed
        sent = b"".join(pieces)
        r.body_bytes_sent = len(sent)
        return sent

    # -- everything else: the general path takes over ------------------------------------------

    def _promote(self) -> ProxyRequest:
        """A ProxyRequest in the state the general path would have reached by now (a request
        still waiting to be sent is sent first, as the general path would have sent it)."""
        if self.pending:
            self.send()
        conn = self.conn
        r = self.r
        route = self.route
        pp = route.pp
        proxy = ProxyRequest(conn, r, pp, self.group, pp.host, pp.port, None)
        proxy.body_done = True
        if self.ctx is None:  # (the lane's first pick went without one)
            self.ctx = PickContext(now=self.started, rng=self.group.rng,
                                   tried=self.tried or set())
        proxy.ctx = self.ctx
        proxy.started = self.started
        proxy.peer = self.peer
        att = proxy.att = self.attempt()
        proxy.states = [att] if att is not None else []
        proxy.head = self.head
        r.proxy = proxy
        up = self.up
        self.up = None
        if up is not None:
            proxy.up = up
            up.owner = proxy
            proxy.cached = self.cached  # (a cached connection's failure uses up no try)
            proxy.request_sent = True
            proxy.phase = HEADER
        elif self.connecting is not None:
            proxy.phase = CONNECT
            proxy.cached = False
            proxy.connecting = self.connecting
            self.connecting = None
        timer = self.timer
        self.timer = None
        if timer is not None and timer.owner is self:  # type: ignore[comparison-overlap]
            proxy.timer = timer
            proxy.deadline = self.deadline
            proxy.timer_what = self.what
            timer.owner = proxy
        self.over = True
        self.promoted = proxy
        return proxy

    def _on_timer(self) -> None:
        self._promote()._on_timer()

    def upstream_eof(self, up: UpstreamConnection) -> None:
        self._promote().upstream_eof(up)

    def upstream_lost(self, up: UpstreamConnection, exc: Exception | None) -> None:
        self._promote().upstream_lost(up, exc)

    def upstream_writable(self) -> None:
        pass  # (the request head was written whole; nothing waits for the upstream)

    def crashed(self, exc: Exception) -> None:
        """A bug: one request lost, never the worker (before the answer: the general path's
        500; after it was decided: logged, and the client's connection closed)."""
        if self.promoted is not None:
            self.promoted.crashed(exc)
        elif not self.over:
            self._promote().crashed(exc)
        else:
            if self.r is not None:
                self.conn.log_error("alert", f"proxy failed: {exc!r}", self.r)
            self.conn._force_close()

    def client_gone(self) -> None:
        if not self.over:
            self._promote().client_gone()

    def client_eof(self) -> bool:
        if self.over:
            return False
        return self._promote().client_eof()


__all__ = ["Express", "take"]
