"""The proxy's express lane (l7/express.py) side by side with nginx: keep-alive clients whose
later requests reach upstreams over cached connections, so that halb answers them in the lane
or hands them to the general path mid-way. Every session's answers (status, headers, the
echoed upstream request as body, keep-alive or close) and an access log with the variables the
lane fills in must be nginx's.

Each case is one client connection: the first request warms the upstream keep-alive cache (the
general path connects), the later ones are the lane's — or leave it: an answer of another
shape (404, redirect, chunked, 204, split over two reads, an HTTP/1.0 upstream, hidden
headers), an upstream that closes a reused connection or is too slow, requests the lane does
not take (pipelined, non-normalized URIs, bodies, odd headers), a location whose
proxy_set_header reads the client address."""

from __future__ import annotations

import pytest
from harness import Case, compare, req, same_access_logs

pytestmark = pytest.mark.peer

BACKENDS = ["e1", "e2", "e3", "e4", "e5", "e6"]
DOWN = ("e5",)  # refuses connections
BLACKHOLE = ("e6",)  # never accepts them

CONFIG = r"""
    default_type text/plain;
    proxy_bind %ADDR%;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    log_format ex '$request_uri|$status|$body_bytes_sent|$request_length|'
                  '$connection_requests|$upstream_addr|$upstream_status|'
                  '$upstream_response_length|$upstream_bytes_received|$upstream_bytes_sent|'
                  '$sent_http_content_type|$sent_http_x_backend|$upstream_http_x_req|'
                  '$upstream_http_x_backend|$http_user_agent|$host|$uri|$args|$request|'
                  '$request_method|$server_protocol|$upstream_response_time';
    access_log %PREFIX%/ex.log ex;
    # a line the lane formats once per client, head, answer and second (l7/log.py: stable)
    log_format st '$remote_addr|$request|$status|$body_bytes_sent|$http_user_agent|'
                  '$sent_http_content_type|$sent_http_x_backend|$upstream_http_x_req|$host|'
                  '$args|$request_length|$uri';
    access_log %PREFIX%/st.log st;
    upstream one { server %B_e1%; keepalive 4; }
    upstream two { server %B_e2%; server %B_e3% weight=2; keepalive 8; }
    upstream slow { server %B_e4%; keepalive 2; }
    upstream nokeep { server %B_e1%; }
    upstream downfirst { server %B_e5%; server %B_e2%; keepalive 2; }
    upstream hole { server %B_e6%; keepalive 2; }
    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        keepalive_requests 6;
        location /x/ { proxy_pass http://one; }
        location /rr/ { proxy_pass http://two; }
        location /uri/ { proxy_pass http://one/base/; }
        location /slow/ { proxy_read_timeout 1s; proxy_pass http://slow; }
        location /gz/ { gzip on; gzip_min_length 1; gzip_types text/plain; gzip_vary on;
                        proxy_pass http://one; }
        location /gzu/ { gzip on; gzip_min_length 1; gzip_types text/plain;
                         proxy_buffering off; proxy_pass http://one; }
        location /gzp/ { gzip on; gzip_min_length 1; gzip_types text/plain;
                         gzip_proxied any; proxy_pass http://one; }
        location /ah/ { add_header X-Lane yes; add_header Cache-Control no-store always;
                        expires epoch; proxy_pass http://one; }
        location /nk/ { proxy_pass http://nokeep; }
        location /df/ { proxy_pass http://downfirst; }
        location /hole/ { proxy_connect_timeout 500ms; proxy_pass http://hole; }
        location /addr/ {
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-UA $http_user_agent;
            proxy_pass http://one;
        }
        location /hdr/ {
            proxy_hide_header X-Backend;
            proxy_pass_header Server;
            proxy_pass http://one;
        }
    }
"""

UA = ("User-Agent", "express-test/1.0")


def session(*requests: bytes) -> tuple[bytes, ...]:
    return tuple(requests)  # (one write each, 50 ms apart: one read each)


def keep(path: str, **kw: object) -> bytes:
    return req(path, headers=[UA, ("Accept", "*/*")], **kw)  # type: ignore[arg-type]


# (not CASES: the sessions run one after the other, as upstream connection reuse depends on
# the order; the harness would run a CASES table concurrently)
SESSIONS = [
    Case("plain", session(*(keep(f"/x/plain/{i}?a={i}&b") for i in range(5)))),
    Case("head-mixed", session(keep("/x/h0"), keep("/x/h1", method="HEAD"), keep("/x/h2"),
                               keep("/x/h3", method="HEAD"))),
    Case("keepalive-requests", session(*(keep(f"/x/kr{i}") for i in range(7))),
         requests=6),
    Case("http10-keepalive", session(
        keep("/x/a10"), req("/x/b10", version="HTTP/1.0", headers=[("Connection", "keep-alive")]),
        req("/x/c10", version="HTTP/1.0", host=None, headers=[("Connection", "keep-alive")]),
        req("/x/d10", version="HTTP/1.0"))),
    Case("connection-close", session(keep("/x/c1"), req("/x/c2", headers=[("Connection",
                                                                            "close")]))),
    Case("round-robin", session(*(keep(f"/rr/name/{i}") for i in range(9)))),
    Case("uri-part", session(keep("/uri/a"), keep("/uri/b/c?d=e"), keep("/uri/"))),
    Case("shapes", session(keep("/x/s0"), keep("/x/status/404"), keep("/x/s1"),
                           keep("/x/redirect-relative"), keep("/x/chunked"), keep("/x/s2"),
                           keep("/x/status/204"))),
    Case("shapes2", session(keep("/x/t0"), keep("/x/empty"), keep("/x/slow-body/100ms"),
                            keep("/x/no-ctype"), keep("/x/multi"), keep("/x/t1"))),
    Case("hidden-headers", session(keep("/x/u0"), keep("/x/hdrs"), keep("/x/big/100k"),
                                   keep("/x/u1"))),
    Case("http10-upstream", session(keep("/x/v0"), keep("/x/http10"), keep("/x/v1"),
                                    keep("/x/v2"))),
    Case("reused-dropped", session(keep("/x/w0"), keep("/x/drop-reused"), keep("/x/w1"))),
    Case("slow", session(keep("/slow/y0"), keep("/slow/slow-header/1500ms"), keep("/slow/y1")),
         wait=5.0),
    Case("not-taken", session(
        keep("/x/n0"), keep("/x//n1"), keep("/x/./n2"), keep("/x/n%33"),
        req("/x/n4", headers=[UA, ("X_Under", "1")]),
        req("/x/n5", headers=[UA, ("X-Space", "a  b ")]),
        req("/x/n6", headers=[UA, ("Cookie", "a=1"), ("Cookie", "b=2")]),
        keep("/x/n7", method="POST", body=b"abc"),
        keep("/x/n8"))),
    Case("pipelined", (keep("/x/p0"), keep("/x/p1") + keep("/x/p2"), keep("/x/p3"))),
    Case("client-address", session(keep("/addr/z0"), keep("/addr/z1"),
                                   req("/addr/z2", headers=[("X-Forwarded-For", "10.0.0.1")]))),
    Case("hide-and-pass", session(keep("/hdr/q0"), keep("/hdr/hdrs"), keep("/hdr/q1"))),
    Case("gzip", session(*(req(f"/gz/{p}", headers=[UA, ("Accept-Encoding", ae)])
                           for p, ae in (("a0", "gzip"), ("a1", "gzip"), ("a2", "deflate"),
                                         ("big/3k", "gzip"), ("a3", "gzip, br"),
                                         ("a4", "identity"), ("big/1500", "gzip"))),
                         req("/gz/a5", method="HEAD", headers=[("Accept-Encoding", "gzip")]),
                         req("/gz/a6", headers=[("Accept-Encoding", "gzip"), ("Via", "x")]))),
    # (unbuffered, a body larger than nginx's proxy_buffer_size is compressed with a flush per
    # read, so its bytes depend on nginx's buffer and on timing: small bodies only)
    Case("gzip-unbuffered", session(*(req(f"/gzu/{p}", headers=[("Accept-Encoding", "gzip")])
                                      for p in ("b0", "b1", "big/1k", "b2")))),
    Case("gzip-proxied", session(*(req(f"/gzp/c{i}", headers=[("Accept-Encoding", "gzip"),
                                                              ("Via", "1.1 x")])
                                   for i in range(3)))),
    Case("gzip-http10", session(req("/gz/h0", headers=[("Accept-Encoding", "gzip")]),
                                req("/gz/h1", version="HTTP/1.0", headers=[
                                    ("Connection", "keep-alive"), ("Accept-Encoding", "gzip")]))),
    Case("add-header", session(keep("/ah/j0"), keep("/ah/j1"), keep("/ah/status/404"),
                               keep("/ah/j2", method="HEAD"))),
    Case("no-keepalive", session(keep("/nk/f0"), keep("/nk/f1"), keep("/nk/f2"))),
    Case("down-first", session(keep("/df/g0"), keep("/df/g1"), keep("/df/g2"), keep("/df/g3"))),
    Case("connect-timeout", session(keep("/hole/i0"), keep("/hole/i1")), wait=5.0),
    Case("client-eof", session(keep("/slow/e0"), keep("/slow/slow-header/300ms")),
         half_close=True, requests=1),
    Case("bad-duplicate-host", session(keep("/x/d0"), req("/x/d1", headers=[("Host", "b")]))),
]


def test_express_lane(pair) -> None:  # type: ignore[no-untyped-def]
    for case in SESSIONS:
        compare(pair, case)
    # (the built-in pages of 400 and 504 name the server: their lengths differ by design; a
    # chunked answer is framed per read, so its $body_bytes_sent depends on timing)
    assert same_access_logs(pair, r"^(/(?!x/chunked)[^|]*)\|(?!400|504)", name="ex.log") >= 60
    assert same_access_logs(pair, r"^[^|]*\|((?:GET|HEAD) (?!/x/chunked)[^|]*)\|(?!400|504)",
                            name="st.log") >= 60
