"""Upstream keep-alive side by side: with `keepalive N`, proxy_http_version 1.1 and
`proxy_set_header Connection ""` both proxies must reuse their upstream connections for the
same requests (the backend numbers the requests of each connection: X-Req), and open new ones
for the same reasons: an HTTP/1.0 or Connection: close answer, a body ended by close,
keepalive_requests, keepalive_timeout, a backend that closed the idle connection, a cached
connection that fails when reused (retried on a new one, without using up a try)."""

from __future__ import annotations

import time

import pytest
from backends import BackendSet
from harness import HALB_ADDR, NGINX_ADDR, Case, Pair, chunked, compare, req, same_access_logs

pytestmark = pytest.mark.peer

BACKENDS = ["k1", "k2", "k3", "k4", "k5", "k6", "k7"]

CONFIG = r"""
    default_type text/plain;
    proxy_bind %ADDR%;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    log_format up '$request_uri|$status|$upstream_addr|$upstream_status|'
                  '$upstream_response_length|$upstream_bytes_received|$upstream_bytes_sent|'
                  '$upstream_connect_time|$upstream_header_time|$upstream_response_time';
    access_log %PREFIX%/up.log up;
    upstream ka { server %B_k1%; keepalive 2; }
    upstream ka2 { server %B_k2%; server %B_k3%; keepalive 4; }
    upstream kreq { server %B_k4%; keepalive 2; keepalive_requests 3; }
    upstream ktmo { server %B_k5%; keepalive 2; keepalive_timeout 500ms; }
    upstream noka { server %B_k6%; }
    upstream kreuse { server %B_k7%; keepalive 2; }
    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        location /ka/ { proxy_pass http://ka; }
        location /ka10/ { proxy_http_version 1.0; proxy_pass http://ka; }
        location /kaclose/ { proxy_set_header Connection close; proxy_pass http://ka; }
        location /ka2/ { proxy_pass http://ka2; }
        location /kreq/ { proxy_pass http://kreq; }
        location /ktmo/ { proxy_pass http://ktmo; }
        location /noka/ { proxy_pass http://noka; }
        location /kreuse/ { proxy_pass http://kreuse; }
        location /kreuse-off/ { proxy_next_upstream off; proxy_pass http://kreuse; }
    }
"""


def conns(backends: BackendSet, backend: str) -> dict[str, int]:
    return {name: backends.conns_for(addr, backend)
            for name, addr in (("nginx", NGINX_ADDR), ("halb", HALB_ADDR))}


def seq(pair: Pair, tag: str, requests: list[bytes], pause: float = 0.0,
        **kw: object) -> list[str | None]:
    """Requests one after the other, each on its own client connection; returns nginx's
    X-Req values."""
    out = []
    for i, data in enumerate(requests):
        got = compare(pair, Case(f"{tag}-{i}", data, **kw))  # type: ignore[arg-type]
        last = got["nginx"].last
        out.append(last.header("x-req") if last else None)
        if pause:
            time.sleep(pause)
    return out


def settle(backends: BackendSet, backend: str) -> dict[str, int]:
    time.sleep(0.05)
    c = conns(backends, backend)
    assert c["nginx"] == c["halb"], f"{backend}: connections opened differ: {c}"
    return c


def test_reuse_sequence(pair: Pair, backends: BackendSet) -> None:
    got = seq(pair, "reuse", [req(f"/ka/r{i}") for i in range(5)])
    assert got == ["1", "2", "3", "4", "5"]
    # shapes that keep the connection reusable: HEAD, 204, 304, chunked, empty, big, errors
    shapes = [req("/ka/h", method="HEAD"), req("/ka/status/204"), req("/ka/status/304"),
              req("/ka/chunked"), req("/ka/empty"), req("/ka/big/300k"),
              req("/ka/status/404"), req("/ka/status/500"),
              req("/ka/p", method="POST", body=b"abc"),
              req("/ka/c", method="POST", headers=[("Transfer-Encoding", "chunked")],
                  body=chunked(b"xyz"), length=False),
              req("/ka/big/300k/chunked"), req("/ka/slow-body/200ms")]
    seq(pair, "shapes", shapes)
    settle(backends, "k1")


def test_not_reused(pair: Pair, backends: BackendSet) -> None:
    """Answers after which the connection is closed: HTTP/1.0 requests (Connection: close),
    an HTTP/1.0 answer, Connection: close, a body ended by close."""
    seq(pair, "nr", [req("/ka10/a"), req("/ka10/b"), req("/ka/http10"), req("/ka/after10"),
                     req("/kaclose/a"), req("/ka/afterclose"), req("/ka/close-delimited"),
                     req("/ka/afterdelim"), req("/ka/bad-header"), req("/ka/afterbad")])
    settle(backends, "k1")


def test_two_peers(pair: Pair, backends: BackendSet) -> None:
    seq(pair, "two", [req(f"/ka2/x{i}") for i in range(6)])
    settle(backends, "k2")
    settle(backends, "k3")


def test_keepalive_requests(pair: Pair, backends: BackendSet) -> None:
    got = seq(pair, "kreq", [req(f"/kreq/x{i}") for i in range(7)])
    assert got == ["1", "2", "3", "1", "2", "3", "1"]
    settle(backends, "k4")


def test_keepalive_timeout(pair: Pair, backends: BackendSet) -> None:
    got = seq(pair, "ktmo", [req(f"/ktmo/x{i}") for i in range(3)], pause=0.8)
    assert got == ["1", "1", "1"]
    settle(backends, "k5")


def test_no_keepalive_directive(pair: Pair, backends: BackendSet) -> None:
    got = seq(pair, "noka", [req(f"/noka/x{i}") for i in range(3)])
    assert got == ["1", "1", "1"]
    settle(backends, "k6")


def test_pipelined_client(pair: Pair, backends: BackendSet) -> None:
    compare(pair, Case("pipelined", req("/ka/p1") + req("/ka/p2") + req("/ka/p3")))
    settle(backends, "k1")


def test_cached_connection_fails(pair: Pair, backends: BackendSet) -> None:
    """The backend drops a reused connection without answering: the request is retried on a
    new connection (a cached connection's error does not use up the single try); a POST is
    not (it was sent)."""
    seq(pair, "kr", [req("/kreuse/drop-reused/a"), req("/kreuse/drop-reused/b"),
                     req("/kreuse/drop-reused/c")])
    seq(pair, "kr-off", [req("/kreuse-off/drop-reused/a"), req("/kreuse-off/drop-reused/b")])
    seq(pair, "kr-post", [req("/kreuse/drop-reused/p", method="POST", body=b"x"),
                          req("/kreuse/drop-reused/p", method="POST", body=b"x")])
    settle(backends, "k7")


def test_zz_access_logs(pair: Pair, backends: BackendSet) -> None:
    """$upstream_bytes_sent / _received / _response_length and the times of every request
    above, on new and on reused connections. (Run apart from them, as xdist's worksteal may,
    it makes some of their requests itself.)"""
    if not same_access_logs(pair, r"^([^|]+)\|", "up.log"):
        test_reuse_sequence(pair, backends)
        test_cached_connection_fails(pair, backends)
        assert same_access_logs(pair, r"^([^|]+)\|", "up.log")
