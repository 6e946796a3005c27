"""Connections: HTTP/1.0 and 1.1 keep-alive, pipelining, request bodies (length and chunked),
Expect: 100-continue, methods on static files, keepalive_requests and the Keep-Alive header."""

from __future__ import annotations

import pytest
from harness import Case, chunked, compare, ids, req

pytestmark = pytest.mark.peer

CONFIG = r"""
    default_type text/plain;
    types { text/plain txt; text/html html; }

    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        root %WWW%;
        location / { }
        location /ret { return 200 "answered $request_method $uri\n"; }
        location /r404 { return 404; }
        location /r404t { return 404 "not here\n"; }
        location /r302 { return 302 /elsewhere; }
        location /ep/ { error_page 404 /a.txt; }
        location /ep410/ { error_page 404 =410 /a.txt; }
        location /ep200/ { error_page 404 =200 /a.txt; }
        location /ep-eq/ { error_page 404 = /a.txt; }
        location /noindex/ { autoindex on; }
    }

    server {
        listen %ADDR%:%PORT2%;
        server_name localhost;
        root %WWW%;
        keepalive_timeout 30s 25s;
        keepalive_requests 3;
        location / { }
    }
"""

A = req("/a.txt")
P2 = {"port_index": 1}


def post(path: str, body: bytes, *headers: tuple[str, str] | str, version: str = "HTTP/1.1",
         method: str = "POST") -> bytes:
    return req(path, method=method, body=body, headers=headers, version=version)


def te(path: str, body: bytes, *headers: tuple[str, str] | str, method: str = "POST") -> bytes:
    return req(path, method=method, headers=(("Transfer-Encoding", "chunked"), *headers),
               body=body, length=False)


CASES = [
    # HTTP/1.0 and keep-alive
    Case("http10-close", req("/a.txt", version="HTTP/1.0", host=None), {"closed": True}),
    Case("http10-host", req("/a.txt", version="HTTP/1.0"), {"closed": True}),
    Case("http10-keepalive", req("/a.txt", version="HTTP/1.0",
                                 headers=[("Connection", "keep-alive")]),
         {"closed": False, "header:connection": "keep-alive"}),
    Case("http10-keepalive-mixed-case", req("/a.txt", version="HTTP/1.0",
                                            headers=[("Connection", "Keep-Alive")]),
         {"closed": False}),
    Case("http10-keepalive-404", req("/nope", version="HTTP/1.0",
                                     headers=[("Connection", "keep-alive")]),
         {"status": 404, "closed": False}),
    Case("http10-keepalive-pipelined",
         req("/a.txt", version="HTTP/1.0", headers=[("Connection", "keep-alive")])
         + req("/style.css", version="HTTP/1.0", headers=[("Connection", "keep-alive")])
         + req("/a.txt", version="HTTP/1.0"),
         {"statuses": (200, 200, 200), "closed": True}),
    Case("http10-keepalive-autoindex", req("/noindex/", version="HTTP/1.0",
                                           headers=[("Connection", "keep-alive")]),
         {"closed": True}),
    Case("http10-keepalive-autoindex-head",
         req("/noindex/", method="HEAD", version="HTTP/1.0",
             headers=[("Connection", "keep-alive")]), {"closed": False}),
    Case("http11-default-keepalive", A, {"closed": False, "header:connection": "keep-alive"}),
    Case("http11-close", req("/a.txt", headers=[("Connection", "close")]),
         {"closed": True, "header:connection": "close"}),
    Case("http11-close-mixed-case", req("/a.txt", headers=[("Connection", "Close")]),
         {"closed": True}),
    Case("http11-connection-list", req("/a.txt", headers=[("Connection", "TE, close")])),
    Case("http11-keepalive-404", req("/nope"), {"status": 404, "closed": False}),
    Case("http11-return-404-keepalive", req("/r404"), {"status": 404, "closed": False}),
    # pipelining: several requests in one write, answered in order
    Case("pipeline-3", A + req("/style.css") + req("/data.json"),
         {"statuses": (200, 200, 200), "closed": False}),
    Case("pipeline-head-middle", A + req("/a.txt", method="HEAD") + req("/style.css"),
         {"statuses": (200, 200, 200)}),
    Case("pipeline-404-middle", A + req("/nope") + req("/style.css"),
         {"statuses": (200, 404, 200)}),
    Case("pipeline-redirect-middle", A + req("/dir") + A, {"statuses": (200, 301, 200)}),
    Case("pipeline-last-close", A + A + req("/a.txt", headers=[("Connection", "close")]),
         {"statuses": (200, 200, 200), "closed": True}),
    Case("pipeline-close-first", req("/a.txt", headers=[("Connection", "close")]) + A + A,
         {"statuses": (200,), "closed": True}),
    Case("pipeline-big-files", req("/big1m.bin") + req("/big64k.bin") + A,
         {"statuses": (200, 200, 200)}),
    Case("pipeline-with-body", post("/ret", b"abc") + A, {"statuses": (200, 200)}),
    Case("pipeline-with-chunked-body", te("/ret", chunked(b"hello", b"world")) + A,
         {"statuses": (200, 200)}),
    Case("pipeline-bad-middle", A + b"BAD\r\n\r\n" + A, {"statuses": (200, 400),
                                                          "closed": True}),
    Case("pipeline-10", A * 10, {"closed": False}),
    Case("pipeline-big-then-bad", req("/big1m.bin") + b"BAD\r\n\r\n",
         {"statuses": (200, 400), "closed": True}),
    Case("pipeline-upgrade", req("/a.txt", headers=[("Connection", "Upgrade"),
                                                     ("Upgrade", "websocket")]) + A),
    Case("upgrade-static", req("/a.txt", headers=[("Connection", "Upgrade"),
                                                   ("Upgrade", "websocket")])),
    Case("pipeline-return", req("/ret") + req("/ret?x") + req("/ret/y"),
         {"statuses": (200, 200, 200)}),
    # the same requests written in pieces
    Case("split-request-line", (b"GET /a.t", b"xt HTTP/1.1\r\nHost: localhost\r\n\r\n"),
         {"status": 200}),
    Case("split-headers", (b"GET /a.txt HTTP/1.1\r\nHo", b"st: localhost\r\n", b"\r\n"),
         {"status": 200}),
    Case("split-between-requests", (A, A), {"statuses": (200, 200)}),
    Case("split-mid-second", (A + b"GET /style", b".css HTTP/1.1\r\nHost: x\r\n\r\n"),
         {"statuses": (200, 200)}),
    Case("leading-crlf", b"\r\n" + A, {"status": 200}),
    # request bodies
    Case("post-return", post("/ret", b"x=1&y=2"), {"status": 200}),
    Case("post-return-empty-body", post("/ret", b"", ("Content-Length", "0"))),
    Case("post-static-405", post("/a.txt", b"data"), {"status": 405}),
    Case("put-static-405", post("/a.txt", b"data", method="PUT"), {"status": 405}),
    Case("delete-static-405", req("/a.txt", method="DELETE"), {"status": 405}),
    Case("delete-dir-405", req("/", method="DELETE"), {"status": 405}),
    Case("options-static-405", req("/a.txt", method="OPTIONS"), {"status": 405}),
    Case("patch-static-405", post("/a.txt", b"{}", method="PATCH"), {"status": 405}),
    Case("post-missing-404", post("/nope.txt", b"data"), {"status": 404}),
    Case("post-dir-redirect", post("/dir", b"data"), {"status": 301}),
    Case("post-dir-index-405", post("/dir/", b"data"), {"status": 405}),
    Case("get-with-body", req("/a.txt", body=b"ignored body") + A,
         {"statuses": (200, 200)}),
    Case("chunked-post-return", te("/ret", chunked(b"a" * 100, b"b" * 3000)), {"status": 200}),
    Case("chunked-post-static", te("/a.txt", chunked(b"data")), {"status": 405}),
    Case("chunked-extension", te("/ret", chunked(b"abc", ext=";name=value")),
         {"status": 200}),
    Case("chunked-trailer", te("/ret", b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n") + A,
         {"statuses": (200, 200)}),
    Case("chunked-trailer-40k", [te("/ret", b"3\r\nabc\r\n0\r\nX-Trailer: ")]
         + [b"t" * 8000] * 5 + [b"\r\n\r\n" + A], {"statuses": (200, 200)}),
    Case("chunked-extensions-40k", [te("/ret", b"3")] + [b";e=" + b"x" * 7997] * 5
         + [b"\r\nabc\r\n0\r\n\r\n" + A], {"statuses": (200, 200)}),
    Case("chunked-upper-hex", te("/ret", b"A\r\n0123456789\r\n0\r\n\r\n"), {"status": 200}),
    Case("chunked-mixed-case-te", req("/ret", method="POST",
                                      headers=[("Transfer-Encoding", "Chunked")],
                                      body=chunked(b"xy"), length=False), {"status": 200}),
    Case("chunked-in-pieces", (te("/ret", b"")[:-0 or None], b"5\r\nhel", b"lo\r\n",
                               b"0\r\n\r\n"), {"status": 200}),
    Case("body-in-pieces", (req("/ret", method="POST", headers=[("Content-Length", "10")]),
                            b"01234", b"56789"), {"status": 200}),
    # Expect: 100-continue
    Case("expect-continue-return", (req("/ret", method="POST", headers=[
        ("Content-Length", "5"), ("Expect", "100-continue")]), b"hello")),
    Case("expect-continue-static-get", (req("/a.txt", headers=[
        ("Content-Length", "5"), ("Expect", "100-continue")]), b"hello")),
    Case("expect-continue-static-post", (req("/a.txt", method="POST", headers=[
        ("Content-Length", "5"), ("Expect", "100-continue")]), b"hello"), {"status": 405}),
    Case("expect-continue-404", (req("/nope", method="POST", headers=[
        ("Content-Length", "5"), ("Expect", "100-continue")]), b"hello"), {"status": 404}),
    Case("expect-continue-return-404-text", (req("/r404t", method="POST", headers=[
        ("Content-Length", "5"), ("Expect", "100-continue")]), b"hello"), {"status": 404}),
    Case("expect-continue-return-302", (req("/r302", method="POST", headers=[
        ("Content-Length", "5"), ("Expect", "100-continue")]), b"hello"), {"status": 302}),
    Case("expect-continue-return-404", (req("/r404", method="POST", headers=[
        ("Content-Length", "5"), ("Expect", "100-continue")]), b"hello"), {"status": 404}),
    Case("expect-continue-error-page", (req("/ep/x", headers=[
        ("Content-Length", "5"), ("Expect", "100-continue")]), b"hello"), {"status": 404}),
    Case("expect-continue-error-page-code", (req("/ep410/x", headers=[
        ("Content-Length", "5"), ("Expect", "100-continue")]), b"hello"), {"status": 410}),
    Case("expect-continue-error-page-200", (req("/ep200/x", headers=[
        ("Content-Length", "5"), ("Expect", "100-continue")]), b"hello"), {"status": 200}),
    Case("expect-continue-error-page-eq", (req("/ep-eq/x", headers=[
        ("Content-Length", "5"), ("Expect", "100-continue")]), b"hello"), {"status": 200}),
    Case("expect-continue-304", (req("/a.txt", headers=[
        ("Content-Length", "5"), ("Expect", "100-continue"), ("If-None-Match", "*")]),
        b"hello"), {"status": 304}),
    Case("expect-continue-dir-301", (req("/dir", headers=[
        ("Content-Length", "5"), ("Expect", "100-continue")]), b"hello"), {"status": 301}),
    Case("expect-continue-uppercase", (req("/ret", method="POST", headers=[
        ("Content-Length", "5"), ("Expect", "100-Continue")]), b"hello")),
    Case("expect-continue-no-body", req("/ret", headers=[("Expect", "100-continue")])),
    Case("expect-continue-http10", (req("/ret", method="POST", version="HTTP/1.0", headers=[
        ("Content-Length", "5"), ("Expect", "100-continue")]), b"hello")),
    Case("expect-other", (req("/ret", method="POST", headers=[
        ("Content-Length", "5"), ("Expect", "something")]), b"hello")),
    Case("expect-continue-chunked", (req("/ret", method="POST", headers=[
        ("Transfer-Encoding", "chunked"), ("Expect", "100-continue")]), chunked(b"hello"))),
    # keepalive_requests 3 and keepalive_timeout 30 25 on the second port
    Case("keepalive-header", A, {"header:keep-alive": "timeout=25"}, **P2),
    Case("keepalive-requests-limit", A * 4, {"statuses": (200, 200, 200), "closed": True},
         **P2),
    Case("keepalive-requests-exact", A * 3, {"statuses": (200, 200, 200), "closed": True},
         **P2),
    Case("keepalive-header-http10", req("/a.txt", version="HTTP/1.0",
                                        headers=[("Connection", "keep-alive")]), **P2),
    Case("keepalive-header-close", req("/a.txt", headers=[("Connection", "close")]), **P2),
    Case("keepalive-header-404", req("/nope"), **P2),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_connection(pair, case: Case) -> None:  # type: ignore[no-untyped-def]
    compare(pair, case)
