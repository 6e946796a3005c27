"""Limits (414, 494 "Request Header Or Cookie Too Large", 413) and bad input: smuggling
shapes, bad Host, bad URIs, garbage request lines, unsupported versions."""

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
        location /ret { return 200 "answered $request_method uri=$uri args=$args\n"; }
        location /r404text { return 404 "not here: $server_protocol [$request]\n"; }
        location /r404 { return 404; }
        location /r302 { return 302 /elsewhere; }
        location /small/ {
            client_max_body_size 10;
            return 200 "small\n";
        }
        location /small-static/ {
            client_max_body_size 10;
            alias %WWW%/;
        }
        location /unlimited/ {
            client_max_body_size 0;
            return 200 "unlimited\n";
        }
        location /ep413/ {
            client_max_body_size 10;
            error_page 413 /errors/generic.html;
            return 200 "never\n";
        }
    }

    server {
        listen %ADDR%:%PORT2%;
        server_name localhost;
        root %WWW%;
        large_client_header_buffers 2 1k;
        client_header_buffer_size 256;
        server_tokens off;
        location / { }
    }
"""

P2 = {"port_index": 1}


def line(total: int, method: str = "GET") -> bytes:
    """A request whose request line is `total` bytes long with its CRLF."""
    n = total - len(f"{method}  HTTP/1.1\r\n") - 1
    return f"{method} /{'a' * n} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


def headers(count: int, size: int) -> bytes:
    """A request with `count` extra header lines of `size` bytes each (with CRLF)."""
    hs = "".join(f"X-H{i:04d}: {'v' * (size - 11)}\r\n" for i in range(count))
    return f"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n{hs}\r\n".encode()


def raw(*lines: str, body: bytes = b"") -> bytes:
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


CASES = [
    # 414: the request line must fit in one large header buffer (8k by default)
    Case("uri-fits-8192", line(8192), {"status": 404}),
    Case("uri-414-8193", line(8193), {"status": 414, "closed": True}),
    Case("uri-414-huge", line(70000), {"status": 414}),
    Case("uri-fits-1k-buffers", line(1024), {"status": 404}, **P2),
    Case("uri-414-1k-buffers", line(1025), {"status": 414}, **P2),
    # 494, answered as 400 "Request Header Or Cookie Too Large"
    Case("header-fits-8192", headers(1, 8192), {"status": 200}),
    Case("header-too-long", headers(1, 8193), {"status": 400, "closed": True}),
    Case("header-huge", headers(1, 100000), {"status": 400}),
    # a header line that fills a large buffer is answered before its end comes
    Case("header-too-long-unended", b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nX-Long: "
         + b"v" * 9000, {"status": 400}),
    Case("header-too-long-trickled", [b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nX-L: "]
         + [b"v" * 3000] * 4, {"status": 400}),
    Case("first-header-too-long-unended", b"GET /a.txt HTTP/1.1\r\nX-Long: " + b"v" * 9000,
         {"status": 400}),
    Case("header-name-too-long-unended", b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n"
         + b"X" * 9000),
    Case("uri-too-long-unended", b"GET /" + b"a" * 9000, {"status": 414}),
    Case("headers-fit-32", headers(32, 1000), {"status": 200}),
    Case("headers-too-many-33", headers(33, 1000), {"status": 400}),
    Case("headers-too-many-small", headers(4000, 20), {"status": 400}),
    Case("headers-4-of-8k", headers(4, 8000), {"status": 200}),
    Case("headers-5-of-8k", headers(5, 8000), {"status": 400}),
    Case("cookie-too-large", req("/a.txt", headers=[("Cookie", "c" * 9000)]),
         {"status": 400}),
    Case("header-too-long-small-buffers", headers(1, 1100), {"status": 400}, **P2),
    Case("headers-too-many-small-buffers", headers(3, 600), {"status": 400}, **P2),
    Case("headers-fit-small-buffers", headers(1, 600), {"status": 200}, **P2),
    Case("header-too-long-head", req("/a.txt", method="HEAD", headers=[("X", "y" * 9000)]),
         {"status": 400}),
    # 413: client_max_body_size
    Case("body-413-length", req("/small/", method="POST", body=b"x" * 11),
         {"status": 413, "closed": True}),
    Case("body-fits-length", req("/small/", method="POST", body=b"x" * 10), {"status": 200}),
    Case("body-413-length-no-body-sent", req("/small/", method="POST",
                                             headers=[("Content-Length", "1000000")]),
         {"status": 413}),
    # nginx checks a chunked body against client_max_body_size only where it reads the body
    # (proxy_pass, ...): a body that is discarded (return, static) is not limited
    Case("body-chunked-over-1m-discarded", req("/ret", method="POST", headers=[
        ("Transfer-Encoding", "chunked")], body=chunked(b"z" * 600_000, b"z" * 600_000),
        length=False), {"status": 200}),
    Case("body-413-chunked", req("/small/", method="POST", headers=[
        ("Transfer-Encoding", "chunked")], body=chunked(b"x" * 20), length=False)),
    Case("body-413-chunked-static", req("/small-static/a.txt", headers=[
        ("Transfer-Encoding", "chunked")], body=chunked(b"x" * 20), length=False)),
    Case("body-413-static-get", req("/small-static/a.txt", body=b"x" * 11), {"status": 413}),
    Case("body-413-default-1m", req("/ret", method="POST",
                                    headers=[("Content-Length", "1048577")]),
         {"status": 413}),
    Case("body-1m-fits", req("/ret", method="POST", body=b"y" * 1048576), {"status": 200}),
    Case("body-unlimited", req("/unlimited/", method="POST",
                               headers=[("Content-Length", "5000000")]), {"status": 200},
         requests=1, wait=1.0),
    Case("body-413-error-page", req("/ep413/", method="POST", body=b"x" * 11),
         {"status": 413}),
    Case("body-413-expect", req("/small/", method="POST", headers=[
        ("Content-Length", "100"), ("Expect", "100-continue")]), {"status": 413}),
    # request smuggling shapes
    Case("cl-and-te", raw("POST /ret HTTP/1.1", "Host: localhost", "Content-Length: 5",
                          "Transfer-Encoding: chunked", body=chunked(b"hello")),
         {"status": 400, "closed": True}),
    Case("te-and-cl", raw("POST /ret HTTP/1.1", "Host: localhost",
                          "Transfer-Encoding: chunked", "Content-Length: 5",
                          body=chunked(b"hello")), {"status": 400}),
    Case("duplicate-cl", raw("POST /ret HTTP/1.1", "Host: localhost", "Content-Length: 5",
                             "Content-Length: 5", body=b"hello"), {"status": 400}),
    Case("duplicate-cl-different", raw("POST /ret HTTP/1.1", "Host: localhost",
                                       "Content-Length: 5", "Content-Length: 6",
                                       body=b"hello!"), {"status": 400}),
    Case("duplicate-te", raw("POST /ret HTTP/1.1", "Host: localhost",
                             "Transfer-Encoding: chunked", "Transfer-Encoding: chunked",
                             body=chunked(b"x")), {"status": 400}),
    Case("duplicate-host", raw("GET /a.txt HTTP/1.1", "Host: localhost", "Host: other"),
         {"status": 400}),
    Case("duplicate-host-same", raw("GET /a.txt HTTP/1.1", "Host: localhost",
                                    "host: localhost"), {"status": 400}),
    Case("invalid-cl-letters", raw("POST /ret HTTP/1.1", "Host: localhost",
                                   "Content-Length: abc"), {"status": 400}),
    Case("invalid-cl-negative", raw("POST /ret HTTP/1.1", "Host: localhost",
                                    "Content-Length: -1"), {"status": 400}),
    Case("invalid-cl-plus", raw("POST /ret HTTP/1.1", "Host: localhost",
                                "Content-Length: +5", body=b"hello"), {"status": 400}),
    Case("invalid-cl-two-numbers", raw("POST /ret HTTP/1.1", "Host: localhost",
                                       "Content-Length: 1 2"), {"status": 400}),
    Case("invalid-cl-huge", raw("POST /ret HTTP/1.1", "Host: localhost",
                                "Content-Length: 99999999999999999999999"), {"status": 400}),
    Case("cl-leading-zeros", raw("POST /ret HTTP/1.1", "Host: localhost",
                                 "Content-Length: 0005", body=b"hello"), {"status": 200}),
    Case("cl-empty", raw("POST /ret HTTP/1.1", "Host: localhost", "Content-Length: ")),
    Case("bad-chunk-size", raw("POST /ret HTTP/1.1", "Host: localhost",
                               "Transfer-Encoding: chunked", body=b"zz\r\nhello\r\n0\r\n\r\n"),
         {"status": 400}),
    Case("bad-chunk-size-static", raw("GET /a.txt HTTP/1.1", "Host: localhost",
                                      "Transfer-Encoding: chunked",
                                      body=b"5x\r\nhello\r\n0\r\n\r\n")),
    Case("bad-chunk-missing-crlf", raw("POST /ret HTTP/1.1", "Host: localhost",
                                       "Transfer-Encoding: chunked",
                                       body=b"5\r\nhelloXX0\r\n\r\n")),
    Case("chunk-size-overflow", raw("POST /ret HTTP/1.1", "Host: localhost",
                                    "Transfer-Encoding: chunked",
                                    body=b"fffffffffffffffffff\r\nx\r\n0\r\n\r\n")),
    Case("unknown-te", raw("POST /ret HTTP/1.1", "Host: localhost",
                           "Transfer-Encoding: gzip", body=b"xxxxx"), {"status": 501}),
    Case("te-gzip-chunked", raw("POST /ret HTTP/1.1", "Host: localhost",
                                "Transfer-Encoding: gzip, chunked", body=chunked(b"x")),
         {"status": 501}),
    Case("te-identity", raw("GET /a.txt HTTP/1.1", "Host: localhost",
                            "Transfer-Encoding: identity"), {"status": 501}),
    Case("te-http10", raw("POST /ret HTTP/1.0", "Transfer-Encoding: chunked",
                          body=chunked(b"x")), {"status": 400}),
    # Host
    Case("missing-host-http11", raw("GET /a.txt HTTP/1.1"), {"status": 400}),
    Case("missing-host-http10", raw("GET /a.txt HTTP/1.0"), {"status": 200}),
    Case("empty-host-http11", raw("GET /a.txt HTTP/1.1", "Host: "), {"status": 400}),
    Case("host-slash", raw("GET /a.txt HTTP/1.1", "Host: a/b"), {"status": 400}),
    Case("host-dotdot", raw("GET /a.txt HTTP/1.1", "Host: a..b"), {"status": 400}),
    Case("host-leading-dot", raw("GET /a.txt HTTP/1.1", "Host: .example")),
    Case("host-space", raw("GET /a.txt HTTP/1.1", "Host: a b"), {"status": 400}),
    Case("host-bad-port", raw("GET /a.txt HTTP/1.1", "Host: localhost:abc"), {"status": 200}),
    Case("host-only-port", raw("GET /a.txt HTTP/1.1", "Host: :80"), {"status": 400}),
    Case("host-backslash", raw("GET /a.txt HTTP/1.1", "Host: a\\b")),
    Case("host-ipv6-unclosed", raw("GET /a.txt HTTP/1.1", "Host: [::1")),
    Case("host-utf8", b"GET /a.txt HTTP/1.1\r\nHost: caf\xc3\xa9.example\r\n\r\n"),
    # URIs
    Case("dotdot-above-root", req("/../a.txt"), {"status": 400}),
    Case("dotdot-above-root-deep", req("/dir/../../a.txt"), {"status": 400}),
    Case("dotdot-encoded", req("/%2e%2e/a.txt"), {"status": 400}),
    Case("dotdot-inside", req("/dir/../a.txt"), {"status": 200}),
    Case("dotdot-trailing", req("/dir/.."), {"status": 200}),
    Case("dot-segment", req("/./a.txt"), {"status": 200}),
    Case("nul-encoded", req("/a.txt%00.html"), {"status": 400}),
    Case("nul-raw", b"GET /a\x00b HTTP/1.1\r\nHost: localhost\r\n\r\n", {"status": 400}),
    Case("bad-escape", req("/a%zz.txt"), {"status": 400}),
    Case("bad-escape-short", req("/a.txt%4"), {"status": 400}),
    Case("encoded-slash", req("/encoded/a%2Fb.txt"), {"body": b"nested a slash b\n"}),
    Case("encoded-slash-lower", req("/encoded/a%2fb.txt"), {"status": 200}),
    Case("encoded-letters", req("/%61.txt"), {"body": b"hello from a.txt\n"}),
    Case("encoded-question-mark", req("/ret%3Fx=1"), {"status": 200}),
    Case("double-slash", req("//a.txt"), {"status": 200}),
    Case("fragment", req("/a.txt#frag"), {"status": 200}),
    Case("args-not-decoded", req("/ret?a=%00&b=%zz"), {"status": 200}),
    Case("space-in-uri", b"GET /hello world.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    Case("control-in-uri", b"GET /a\x01b HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    Case("utf8-in-uri-ret", "GET /ret/caf\u00e9?q=\u00e9 HTTP/1.1\r\nHost: localhost\r\n\r\n"
         .encode(), {"status": 200}),
    Case("no-leading-slash", b"GET a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
         {"status": 400}),
    Case("asterisk-get", b"GET * HTTP/1.1\r\nHost: localhost\r\n\r\n", {"status": 400}),
    Case("options-asterisk", b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    # absolute-URI request targets
    Case("absolute-uri", req("http://localhost/a.txt", host="other"), {"status": 200}),
    Case("absolute-uri-https", req("https://localhost/a.txt"), {"status": 200}),
    Case("absolute-uri-no-path", req("http://localhost"), {"status": 200}),
    Case("absolute-uri-query", req("http://localhost?x=1"), {"status": 200}),
    Case("absolute-uri-upper-scheme", req("HTTP://localhost/a.txt"), {"status": 200}),
    Case("absolute-uri-ftp", req("ftp://localhost/a.txt")),
    Case("absolute-uri-bad-host", req("http://a..b/a.txt"), {"status": 400}),
    Case("absolute-uri-port", req("http://localhost:8080/a.txt"), {"status": 200}),
    Case("absolute-uri-userinfo", req("http://user@localhost/a.txt")),
    # an HTTP/1.1 request needs a Host header even with a host in the request line
    Case("absolute-uri-no-host-header-11", b"GET http://localhost/a.txt HTTP/1.1\r\n\r\n",
         {"status": 400}),
    Case("absolute-uri-redirect", req("http://localhost/dir", host="other"),
         {"status": 301}),
    # garbage and versions
    Case("garbage-line", b"HELLO\r\n\r\n", {"status": 400, "closed": True}),
    Case("garbage-binary", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
         {"status": 400}),
    Case("method-only", b"GET\r\n\r\n", {"status": 400}),
    Case("lowercase-method", b"get /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
         {"status": 400}),
    Case("unknown-method", b"FOO /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    Case("unknown-method-ret", b"BREW /ret HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    Case("known-rare-method", b"PROPFIND /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    Case("bad-version-word", b"GET /a.txt FOO/1.1\r\nHost: localhost\r\n\r\n",
         {"status": 400}),
    Case("http2-request-line", b"GET / HTTP/2.0\r\nHost: localhost\r\n\r\n"),
    Case("http3-request-line", b"GET / HTTP/3.0\r\nHost: localhost\r\n\r\n"),
    Case("http12-request-line", b"GET /a.txt HTTP/1.2\r\nHost: localhost\r\n\r\n"),
    # HTTP/0.9: a request line without a version is answered with the bare body, then closed
    Case("http09-request", b"GET /a.txt\r\n", {"status": 0, "closed": True}, requests=1),
    Case("http09-bare-lf", b"GET /a.txt\n", {"status": 0}, requests=1),
    Case("http09-404", b"GET /nope.txt\r\n", {"status": 0}, requests=1),
    Case("http09-return", b"GET /ret?x=1\r\n", {"status": 0}, requests=1),
    Case("http09-split", [b"GET /a.t", b"xt", b"\r\n"], {"status": 0}, requests=1),
    Case("http09-return-404-text", b"GET /r404text\r\n", requests=1),
    Case("http09-return-404", b"GET /r404\r\n", requests=1),
    Case("http09-return-302", b"GET /r302\r\n", requests=1),
    Case("http09-post", b"POST /a.txt\r\n", requests=1),
    Case("http09-head", b"HEAD /a.txt\r\n", requests=1),
    Case("http09-then-crlf", b"GET /a.txt\r\n\r\n", requests=1),
    Case("http09-then-header", b"GET /a.txt\r\nHost: localhost\r\n\r\n", requests=1),
    Case("http09-explicit", b"GET /a.txt HTTP/0.9\r\n\r\n", requests=1),
    Case("http09-after-keepalive", req("/a.txt") + b"GET /a.txt\r\n", requests=2),
    Case("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    Case("version-garbage", b"GET /a.txt HTTP/x.y\r\nHost: localhost\r\n\r\n",
         {"status": 400}),
    Case("bare-lf", b"GET /a.txt HTTP/1.1\nHost: localhost\n\n", {"status": 200}),
    Case("header-no-colon", raw("GET /a.txt HTTP/1.1", "Host: localhost", "NoColonHere"),
         {"status": 200}),
    Case("header-space-in-name", raw("GET /a.txt HTTP/1.1", "Host: localhost",
                                     "Bad Name: x")),
    Case("header-space-before-colon", raw("GET /a.txt HTTP/1.1", "Host: localhost",
                                          "X-Foo : x")),
    Case("header-underscore", raw("GET /a.txt HTTP/1.1", "Host: localhost", "X_Foo: 1"),
         {"status": 200}),
    Case("header-obs-fold", raw("GET /a.txt HTTP/1.1", "Host: localhost", "X-Foo: a",
                                " continued")),
    Case("header-nul-value", b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nX: a\x00b\r\n\r\n",
         {"status": 400}),
    Case("header-ctl-value", b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nX: a\x01b\r\n\r\n"),
    Case("header-utf8-value",
         "GET /a.txt HTTP/1.1\r\nHost: localhost\r\nX: caf\u00e9\r\n\r\n".encode()),
    Case("header-empty-name", raw("GET /a.txt HTTP/1.1", "Host: localhost", ": x")),
    Case("bad-then-good", b"BAD\r\n\r\n" + req("/a.txt"), {"statuses": (400,),
                                                            "closed": True}),
    Case("server-tokens-off-400", b"HELLO\r\n\r\n", {"status": 400}, **P2),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_bad_input(pair, case: Case) -> None:  # type: ignore[no-untyped-def]
    compare(pair, case)
