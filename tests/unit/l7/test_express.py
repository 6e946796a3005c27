"""The proxy's express lane (l7/express.py) in process, with fake transports: which requests it
takes, that what it writes is what the general path writes for the same exchange, and that it
hands a request over (promote) when the answer is not its shape. Side by side with nginx:
tests/conformance/nginx/test_proxy_express.py."""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from halb.l7 import express
from halb.l7.express import Express
from halb.l7.http import HttpConnection
from halb.l7.proxy import ProxyRequest
from halb.l7.upstream import UpstreamConnection
from halb.testing.fakes import FakeTransport
from halb.testing.l7_rig import ServerRig, turn

CONFIG = """events {{}} http {{ access_log {log} combined;
 upstream b {{ server 127.0.0.1:19101; keepalive 8; }}
 server {{ listen 127.0.0.1:9; server_name localhost;
   location / {{ proxy_pass http://b; proxy_http_version 1.1;
                 proxy_set_header Connection ""; }}
   location /addr/ {{ proxy_set_header X-Real-IP $remote_addr; proxy_pass http://b; }}
   location /gz/ {{ gzip on; gzip_min_length 1; gzip_types text/plain; proxy_pass http://b;
                    proxy_http_version 1.1; proxy_set_header Connection ""; }}
   location /re/ {{ rewrite ^ /x; proxy_pass http://b; }}
   location /ica/ {{ proxy_ignore_client_abort on; proxy_pass http://b; }}
   location /ux/ {{ proxy_pass http://ux; proxy_http_version 1.1;
                    proxy_set_header Connection ""; }} }}
 upstream ux {{ server unix:{sock}; keepalive 2; }} }}"""

GET = b"GET /a?b=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: t\r\n\r\n"
OK = (b"HTTP/1.1 200 OK\r\nServer: x\r\nDate: Sat, 21 Nov 2026 06:11:07 GMT\r\n"
      b"Content-Type: text/plain\r\nContent-Length: 3\r\nX-Up: 1\r\n\r\nabc")


class LoopTransport(FakeTransport):
    """A FakeTransport whose reader sees what is written by the end of the loop's iteration
    (the lane holds its writes to then)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop

    def take(self) -> bytes:
        turn(self.loop)
        return super().take()


class Rig(ServerRig):
    """A server, one client connection and cached upstream connections, all fake."""

    def __init__(self, tmp: Path) -> None:
        self.log = tmp / "access.log"
        self.sock = tmp / "up.sock"
        super().__init__(CONFIG.format(log=self.log, sock=self.sock), LoopTransport)
        group = self.srv.upstreams.get("b")
        assert group is not None
        self.group = group
        self.ups: list[tuple[UpstreamConnection, FakeTransport]] = []
        for _ in range(2):
            up = UpstreamConnection(group.balancer.peers[0], group)
            ut = LoopTransport(self.loop)
            up.connection_made(ut)  # type: ignore[arg-type]
            group.put_idle(up)
            self.ups.append((up, ut))

    def busy(self) -> tuple[UpstreamConnection, FakeTransport]:
        turn(self.loop)
        for up, ut in self.ups:
            if ut.out:
                return up, ut
        raise AssertionError("no upstream connection got a request")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with Rig(tmp_path) as r:
        yield r


def test_common_request_is_taken_and_answered(rig: Rig) -> None:
    rig.conn.data_received(GET)
    r = rig.conn.responding
    assert r is not None and isinstance(r.proxy, Express)
    up, ut = rig.busy()
    sent = ut.take()
    assert sent == (b"GET /a?b=1 HTTP/1.1\r\nHost: b\r\nUser-Agent: t\r\n\r\n")
    up.data_received(OK)
    answer = rig.client.take()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert body == b"abc"
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert lines[1].startswith(b"Server: halb/") and lines[2].startswith(b"Date: ")
    assert lines[3:] == [b"Content-Type: text/plain", b"Content-Length: 3",
                         b"Connection: keep-alive", b"X-Up: 1"]
    assert rig.conn.responding is None and r.status == 200 and r.body_bytes_sent == 3
    assert up in rig.group.idle and up.owner is None  # back in the keep-alive cache
    peer = rig.group.balancer.peers[0]
    assert peer.conns == 0


GZ = b"GET /gz/a HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n"
GZ_HEAD = b"HEAD /gz/a HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n"


@pytest.mark.parametrize("request_bytes", [GET, GZ, GZ_HEAD], ids=["plain", "gzip", "gzip-head"])
def test_same_bytes_as_the_general_path(rig: Rig, request_bytes: bytes) -> None:
    """The lane's answers (the first one rendered, the next ones from its memos) equal the
    general path's for the same exchange (a pipelined pair is not the lane's: both of its
    requests take the general path)."""
    answer = OK[:OK.index(b"\r\n\r\n") + 4] if request_bytes.startswith(b"HEAD") else OK
    lane = []
    for _ in range(3):
        rig.conn.data_received(request_bytes)
        r = rig.conn.responding
        assert r is not None and isinstance(r.proxy, Express)
        up, ut = rig.busy()
        lane_up = ut.take()
        up.data_received(answer)
        lane.append(rig.client.take())
    assert len(set(map(_undated, lane))) == 1
    rig.conn.data_received(request_bytes + request_bytes)
    r = rig.conn.responding
    assert r is not None and isinstance(r.proxy, ProxyRequest)
    for _ in range(2):
        up, ut = rig.busy()
        assert ut.take() == lane_up
        up.data_received(answer)
    general = rig.client.take()
    assert _undated(general) == _undated(lane[0] + lane[0])
    if request_bytes is GZ:
        head, _, body = lane[2].partition(b"\r\n\r\n")
        assert b"Content-Encoding: gzip" in head and b"Transfer-Encoding: chunked" in head
        size, _, rest = body.partition(b"\r\n")
        assert zlib.decompress(rest[:int(size, 16)], 16 + 15) == b"abc"


def _undated(data: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: -\r\n", data)


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 302 Found\r\nLocation: http://b/x\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc",  # the rest comes later
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n",  # the head is not whole yet
])
def test_other_answers_are_promoted(rig: Rig, answer: bytes) -> None:
    rig.conn.data_received(GET)
    r = rig.conn.responding
    assert r is not None
    up, _ut = rig.busy()
    up.data_received(answer)
    assert isinstance(r.proxy, ProxyRequest)  # the general path goes on with it
    assert r.proxy.att is not None and r.proxy.up in (up, None)


@pytest.mark.parametrize("data", [
    b"POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nx",
    b"GET /a//b HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /a/./b HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /a%20b HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: localhost\r\nX-A:  spaced\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: localhost\r\nHost: other\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\r\n",
    b"GET /a HTTP/1.1\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: localhost\r\n",
    b"GET /addr/x HTTP/1.1\r\nHost: localhost\r\n\r\n",  # (taken: a non-static head)
    b"GET /gz/x HTTP/1.1\r\nHost: localhost\r\n\r\n",  # (taken: filters run in the lane)
    b"GET /re/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
])
def test_what_the_lane_leaves(rig: Rig, data: bytes) -> None:
    taken = express.take(rig.conn, data)
    assert taken == data.startswith((b"GET /addr/", b"GET /gz/"))
    if data.startswith(b"GET /addr/"):
        _up, ut = rig.busy()
        assert b"X-Real-IP: 127.0.0.1\r\n" in ut.take()


def test_no_cached_connection_connects_and_a_refusal_goes_to_the_general_path(
        rig: Rig) -> None:
    """Without a cached connection the lane connects (127.0.0.1:19101 refuses): the failure
    is the general path's (its error log line, its retries, 502), and the connection that was
    being made does not outlive the request."""
    for up, _ in rig.ups:
        rig.group.forget(up)
        up.idle_timer_cancel()
    assert express.take(rig.conn, GET) is True
    turn(rig.loop)  # (the connection is chosen at the end of the iteration)
    r = rig.conn.responding
    assert r is not None and isinstance(r.proxy, Express) and r.proxy.connecting is not None
    for _ in range(100):
        if rig.conn.responding is None:
            break
        rig.loop.run_until_complete(asyncio.sleep(0.01))
    assert rig.conn.responding is None and r.status == 502
    assert isinstance(r.proxy, ProxyRequest) and r.proxy.connecting is None
    assert rig.client.take().startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert r.proxy.variable("addr") == "127.0.0.1:19101"
    assert r.proxy.variable("status") == "502"


def test_repeated_lines_are_formatted_once_when_stable(rig: Rig) -> None:
    """The lane's requests carry a log memo; a line of stable variables is formatted once per
    client, head, answer and second, and equals what format_line gives."""
    from halb.config.nginx import load_text as load
    from halb.l7.log import format_line, stable

    fmts = load("events {} http { log_format a '$remote_addr $request $status $http_x'; "
                "log_format b '$request $request_time'; log_format c '$msec'; "
                "log_format d '$upstream_addr $status'; log_format e '$connection_requests'; "
                "server { listen 127.0.0.1:9; } }").http.log_formats  # type: ignore[union-attr]
    assert stable(fmts["a"]) and not any(stable(fmts[k]) for k in "bcde")
    for _ in range(3):
        rig.conn.data_received(GET)
        up, _ut = rig.busy()
        _ut.take()
        up.data_received(OK)
    logs = rig.srv.access_logs
    assert len(logs.lines) == 1  # three requests, one line formatted
    line = next(iter(logs.lines.values()))
    r = general_request(rig)
    general = format_line(rig.srv.config.http.conf.access_log[0].format, r)

    def untimed(b: bytes) -> bytes:
        return re.sub(rb"\[[^]]*\]", b"[T]", b)

    assert untimed(line) == untimed(general) and b'"GET /a?b=1 HTTP/1.1" 200 3' in line


def general_request(rig: Rig) -> Any:
    """A request like the lane's last one, through the general path's parser."""
    rig.conn.data_received(GET + GET)  # (pipelined: the general path)
    r = rig.conn.responding
    assert r is not None
    for _ in range(2):
        up, ut = rig.busy()
        ut.take()
        up.data_received(OK)
    return r


def test_a_bug_before_the_answer_costs_one_request(rig: Rig,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> bytes:
        raise RuntimeError("injected")

    monkeypatch.setattr(express, "request_head", broken)
    assert express.take(rig.conn, GET) is True
    assert rig.conn.responding is None
    assert rig.client.take().startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert all(up in rig.group.idle for up, _ in rig.ups)  # (no connection was taken)
    assert rig.group.balancer.peers[0].conns == 0  # the peer picked was released


def test_a_bug_after_the_answer_closes_the_client(rig: Rig,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rig.conn.data_received(GET)
    up, ut = rig.busy()
    ut.take()

    def broken(*args: Any) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(rig.srv.access_logs, "log_memo", broken)  # (the lane's access log)
    up.data_received(OK)  # (UpstreamConnection hands the exception to its owner)
    assert rig.client.take().endswith(b"abc") and rig.client.closed
    assert up in rig.group.idle  # the upstream side was finished before


def test_a_refused_connect_reaches_a_request_promoted_while_connecting(rig: Rig) -> None:
    """The client goes away while the lane connects (proxy_ignore_client_abort: the request
    goes on in the general path); the refusal then ends it there at once, not at
    proxy_connect_timeout."""
    for up, _ in rig.ups:
        rig.group.forget(up)
        up.idle_timer_cancel()
    assert express.take(rig.conn, GET.replace(b"/a?b=1", b"/ica/a")) is True
    turn(rig.loop)
    r = rig.conn.responding
    assert r is not None and isinstance(r.proxy, Express) and r.proxy.connecting is not None
    rig.conn.connection_lost(None)
    proxy = r.proxy
    assert isinstance(proxy, ProxyRequest) and proxy.connecting is not None
    for _ in range(100):
        if proxy.connecting is None:
            break
        rig.loop.run_until_complete(asyncio.sleep(0.01))
    assert proxy.connecting is None and proxy.variable("status") == "502"


def test_a_unix_socket_upstream(rig: Rig) -> None:
    """The lane connects to a unix: peer as proxy.py does, and reuses the connection."""
    got: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                got.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(OK)
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    server = rig.loop.run_until_complete(asyncio.start_unix_server(answer, str(rig.sock)))
    try:
        for _ in range(2):
            assert express.take(rig.conn, GET.replace(b"/a?b=1", b"/ux/a")) is True
            for _ in range(200):
                if rig.conn.responding is None:
                    break
                rig.loop.run_until_complete(asyncio.sleep(0.005))
            assert rig.client.take().endswith(b"\r\n\r\nabc")
        assert len(got) == 2 and got[0].startswith(b"GET /ux/a HTTP/1.1\r\nHost: ux\r\n")
        ux = rig.srv.upstreams.get("ux")
        assert ux is not None and len(ux.idle) == 1  # one connection, made once, cached
    finally:
        rig.srv.upstreams.close()  # (the cached connection)
        rig.loop.run_until_complete(asyncio.sleep(0.02))
        server.close()
        rig.loop.run_until_complete(server.wait_closed())


# -- writes held to the end of the iteration (l7/cork.py) -----------------------------------


def test_the_answer_waits_for_the_end_of_the_iteration(rig: Rig) -> None:
    rig.conn.data_received(GET)
    up, ut = rig.busy()
    assert ut.take().startswith(b"GET /a?b=1 HTTP/1.1\r\n")
    up.data_received(OK)
    assert rig.client.out == [] and rig.conn.corked is not None  # held, the client idle
    assert rig.conn.responding is None and up in rig.group.idle
    assert rig.client.take().endswith(b"\r\n\r\nabc") and rig.conn.corked is None


def test_a_held_answer_goes_before_anything_else_the_connection_sends(rig: Rig) -> None:
    """The next request arrives before the iteration ends and is answered at once by the
    general path (a 400): the held answer is written first."""
    rig.conn.data_received(GET)
    up, _ut = rig.busy()
    up.data_received(OK)
    rig.conn.data_received(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n")
    out = list(rig.client.out)
    assert len(out) >= 2 and out[0].endswith(b"\r\n\r\nabc")
    assert b"".join(out[1:]).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    turn(rig.loop)
    assert rig.client.out == out  # (nothing written twice)


def test_a_held_answer_is_written_before_a_close(rig: Rig) -> None:
    rig.conn.data_received(GET)
    up, _ut = rig.busy()
    up.data_received(OK)
    rig.conn._force_close()  # (a graceful stop closing idle connections, a timer)
    assert b"".join(rig.client.out).endswith(b"abc") and rig.client.closed
    rig.conn.eof_received()


def test_a_held_answer_goes_when_the_client_half_closes(rig: Rig) -> None:
    rig.conn.data_received(GET)
    up, _ut = rig.busy()
    up.data_received(OK)
    rig.conn.eof_received()
    assert b"".join(rig.client.out).endswith(b"abc")


def test_a_held_answer_is_dropped_with_a_lost_connection(rig: Rig) -> None:
    rig.conn.data_received(GET)
    up, _ut = rig.busy()
    up.data_received(OK)
    rig.conn.connection_lost(None)
    assert rig.client.take() == b"" and rig.conn.corked is None


def test_the_upstream_connection_is_chosen_at_the_end_of_the_iteration(rig: Rig) -> None:
    """An answer handled in the same iteration puts its connection back before the next
    request takes one: with a single cached connection, two requests in a row use it and
    no connection is made."""
    only, only_t = rig.ups[0]
    rig.group.forget(rig.ups[1][0])
    rig.ups[1][0].idle_timer_cancel()
    rig.conn.data_received(GET)
    first = rig.conn.responding
    assert first is not None and isinstance(first.proxy, Express) and first.proxy.pending
    assert only_t.out == [] and only in rig.group.idle  # nothing taken yet
    turn(rig.loop)
    assert first.proxy.up is only and only_t.take().startswith(b"GET /a?b=1 ")
    other = HttpConnection(rig.srv, 2)
    other_t = LoopTransport(rig.loop)
    other.connection_made(other_t)  # type: ignore[arg-type]
    try:
        other.data_received(GET)  # the cache is empty now...
        second = other.responding
        assert second is not None and isinstance(second.proxy, Express)
        only.data_received(OK)  # ...and refilled in the same iteration
        assert only in rig.group.idle
        turn(rig.loop)
        assert second.proxy.up is only and second.proxy.connecting is None
        assert only_t.take().startswith(b"GET /a?b=1 ")
        only.data_received(OK)
        assert other_t.take().endswith(b"\r\n\r\nabc") and rig.client.take().endswith(b"abc")
    finally:
        other.connection_lost(None)


def test_a_request_promoted_before_it_was_sent_is_sent_first(rig: Rig) -> None:
    """The client half-closes before the end of the iteration: the request goes to the
    general path as it would have (sent over a cached connection), which then ends it."""
    rig.conn.data_received(GET)
    r = rig.conn.responding
    assert r is not None and isinstance(r.proxy, Express) and r.proxy.pending
    rig.conn.eof_received()
    assert isinstance(r.proxy, ProxyRequest) or r.proxy is None
    sent = [ut for up, ut in rig.ups if ut.out]
    assert len(sent) == 1 and b"".join(sent[0].out).startswith(b"GET /a?b=1 ")
    turn(rig.loop)
    assert sum(1 for _up, ut in rig.ups if ut.out) == 1  # (not sent twice)


def test_a_full_cache_is_trimmed_after_the_iterations_requests_took_theirs(rig: Rig) -> None:
    """keepalive 1: two answers put their connections back in one iteration (one more than
    the cache holds), two requests of the same iteration take both, none is made or closed;
    then an extra cached connection is closed at the end of the iteration (nginx's bound)."""
    rig.group.keepalive = 1
    (up1, ut1), (up2, ut2) = rig.ups
    other = HttpConnection(rig.srv, 2)
    other_t = LoopTransport(rig.loop)
    other.connection_made(other_t)  # type: ignore[arg-type]
    try:
        for _ in range(2):
            rig.conn.data_received(GET)
            other.data_received(GET)
            turn(rig.loop)
            assert {id(up1.owner), id(up2.owner)} == {id(rig.conn.responding.proxy),
                                                        id(other.responding.proxy)}
            assert ut1.take().startswith(b"GET ") and ut2.take().startswith(b"GET ")
            up1.data_received(OK)
            up2.data_received(OK)
            assert len(rig.group.idle) == 2 and not ut1.closed and not ut2.closed
        assert rig.client.take().endswith(b"abc") and other_t.take().endswith(b"abc")
        assert len(rig.group.idle) == 1 and (ut1.closed != ut2.closed)  # trimmed: the oldest
    finally:
        other.connection_lost(None)
