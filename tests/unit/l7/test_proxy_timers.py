"""One timer per connection, not one per request: the client connection keeps its handle
while a proxied request waits for the upstream, and a cached upstream connection keeps its
idle handle when it is taken. Either way the timeouts fire when they would with fresh timers:
keepalive_timeout after a proxied answer (though client_header_timeout was armed first), and
an upstream's keepalive_timeout after it went back to the cache, however often it was used.
In process, with fake transports (no sockets)."""

from __future__ import annotations

import time
from typing import Any

from halb.config.nginx import load_text
from halb.l7.http import HttpConnection
from halb.l7.log import ErrorLogger
from halb.l7.server import HttpServer
from halb.l7.upstream import UpstreamConnection
from halb.runtime.loop import new_event_loop
from halb.testing.fakes import FakeTransport

CONFIG = """events {} http { access_log off; keepalive_timeout 300ms; client_header_timeout 60s;
 upstream b { server 127.0.0.1:19101; keepalive 4; keepalive_timeout 400ms; }
 server { listen 127.0.0.1:9; location / { proxy_pass http://b; proxy_http_version 1.1;
          proxy_set_header Connection ""; } } }"""
REQUEST = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_timeouts_fire_as_with_fresh_timers() -> None:
    loop = new_event_loop()
    try:
        srv = HttpServer(load_text(CONFIG), loop, ErrorLogger(()), 0)
        group = srv.upstreams.get("b")
        assert group is not None
        up = UpstreamConnection(group.balancer.peers[0], group)
        ut = FakeTransport()
        up.connection_made(ut)  # type: ignore[arg-type]
        group.put_idle(up)
        conn = HttpConnection(srv, 1)
        ct = FakeTransport()
        conn.connection_made(ct)  # type: ignore[arg-type]
        for _ in range(3):  # the upstream connection is taken and cached again each time
            conn.data_received(REQUEST)
            turn(loop)  # (the lane holds its writes to the end of the iteration)
            assert ut.out and up.owner is not None
            ut.out.clear()
            up.data_received(RESPONSE)
            turn(loop)
            answered = time.monotonic()
            assert b"".join(ct.out).endswith(b"\r\n\r\nok")
            loop.run_until_complete(_sleep(loop, 0.1))
            assert ct.closed_at is None and ut.closed_at is None
        deadline = answered + 10
        while (ct.closed_at is None or ut.closed_at is None) and time.monotonic() < deadline:
            loop.run_until_complete(_sleep(loop, 0.05))
        assert ct.closed_at is not None and ut.closed_at is not None
        # keepalive_timeout 0.3 s (not client_header_timeout 60 s), the upstream's 0.4 s
        assert 0.25 <= ct.closed_at - answered < 5
        assert 0.35 <= ut.closed_at - answered < 5
    finally:
        loop.close()


def turn(loop: Any) -> None:
    """One iteration of the loop."""
    loop.call_soon(loop.stop)
    loop.run_forever()


async def _sleep(loop: Any, seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


CONFIG2 = """events {} http { access_log off;
 upstream b { server 127.0.0.1:19101; keepalive 4; }
 server { listen 127.0.0.1:9;
   location /slow { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection "";
                    proxy_read_timeout 30s; }
   location /fast { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection "";
                    proxy_read_timeout 300ms; } } }"""


def test_proxy_timeout_after_a_longer_one_on_the_same_connection() -> None:
    """The connection's proxy timer, started by a request with a 30 s proxy_read_timeout, is
    moved for the next request's 300 ms: that one gets its 504 on time."""
    loop = new_event_loop()
    try:
        srv = HttpServer(load_text(CONFIG2), loop, ErrorLogger(()), 0)
        group = srv.upstreams.get("b")
        assert group is not None
        ups = []
        for _ in range(2):
            up = UpstreamConnection(group.balancer.peers[0], group)
            ut = FakeTransport()
            up.connection_made(ut)  # type: ignore[arg-type]
            group.put_idle(up)
            ups.append((up, ut))
        conn = HttpConnection(srv, 1)
        ct = FakeTransport()
        conn.connection_made(ct)  # type: ignore[arg-type]
        conn.data_received(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        turn(loop)
        up, ut = next((u, t) for u, t in ups if t.out)
        up.data_received(RESPONSE)
        turn(loop)
        assert b"".join(ct.out).endswith(b"\r\n\r\nok")
        ct.out.clear()
        asked = time.monotonic()
        conn.data_received(b"GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")  # never answered
        while not ct.out and time.monotonic() < asked + 10:
            loop.run_until_complete(_sleep(loop, 0.05))
        assert b"".join(ct.out).startswith(b"HTTP/1.1 504 ")
        assert 0.25 <= time.monotonic() - asked < 5
    finally:
        loop.close()
