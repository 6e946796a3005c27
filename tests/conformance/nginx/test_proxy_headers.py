"""What crosses the proxy in both directions, side by side with nginx.

To the backend (echoed back in the body): the request line, nginx's default headers (Host
$proxy_host, Connection close, HTTP/1.0), proxy_set_header (empty values remove a header, a
level's list replaces its parent's), the hop-by-hop removals, X-Forwarded-For, the client's
headers in order, proxy_pass_request_headers/body off, proxy_method, request bodies (Content-
Length, chunked → Content-Length, Expect: 100-continue, client_max_body_size).

To the client: the backend's status line and reason phrase, hidden headers (Date, Server,
X-Pad, X-Accel-*), proxy_hide_header / proxy_pass_header, Location and Refresh rewriting by
proxy_redirect, Transfer-Encoding (chunked to HTTP/1.1 clients, close-delimited for 1.0),
HEAD, 204, 304, interim 100 responses, invalid upstream headers (502)."""

from __future__ import annotations

import pytest
from harness import Case, Pair, chunked, compare, ids, req, same_access_logs

pytestmark = pytest.mark.peer

BACKENDS = ["h1"]

CONFIG = r"""
    default_type text/plain;
    proxy_bind %ADDR%;
    log_format up '"$request" $status|$upstream_addr|$upstream_status|'
                  '$upstream_response_length|$upstream_bytes_received|$upstream_bytes_sent|'
                  '$upstream_http_x_backend|$upstream_connect_time|$upstream_header_time|'
                  '$upstream_response_time';
    access_log %PREFIX%/up.log up;
    upstream up { server %B_h1%; }
    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        root %WWW%;
        location / { proxy_pass http://up; }
        location = /a.txt { }
        location /set/ {
            proxy_pass http://up;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Host $host;
            proxy_set_header Accept-Encoding "";
            proxy_set_header User-Agent "";
            proxy_set_header X-Uri $uri;
            proxy_set_header X-Args $args;
            proxy_set_header X-Nothing $http_x_nothing;
            proxy_set_header X-Proxy $proxy_host:$proxy_port;
            proxy_set_header X-Method $request_method;
        }
        location /sethost/ { proxy_set_header Host $http_host; proxy_pass http://up; }
        location /hostport/ { proxy_set_header Host $host:$server_port; proxy_pass http://up; }
        location /setconn/ { proxy_set_header Connection keep-alive; proxy_pass http://up; }
        location /setcl/ { proxy_set_header Content-Length 3; proxy_pass http://up; }
        location /setexpect/ { proxy_set_header Expect $http_expect; proxy_pass http://up; }
        location /setupgrade/ {
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_pass http://up;
        }
        location /http11/ { proxy_http_version 1.1; proxy_pass http://up; }
        location /hide/ {
            proxy_hide_header X-Backend;
            proxy_hide_header set-cookie;
            proxy_pass_header Server;
            proxy_pass_header X-Accel-Expires;
            proxy_pass_header Date;
            proxy_pass_header X-Pad;
            proxy_pass http://up;
        }
        location /nohdrs/ { proxy_pass_request_headers off; proxy_pass http://up; }
        location /nobody/ { proxy_pass_request_body off; proxy_pass http://up; }
        location /nobody-nolen/ {
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_pass http://up;
        }
        location /redir-off/ { proxy_redirect off; proxy_pass http://up; }
        location /redir-explicit/ {
            proxy_redirect http://up/moved/ /there/;
            proxy_redirect /moved/ /rel/;
            proxy_pass http://up;
        }
        location /redir-uri/ { proxy_pass http://up/sub/; }
        location /redir-plus/ {
            proxy_pass http://up;
            proxy_redirect default;
            proxy_redirect http://other.example:8080/ /other/;
        }
        location /redir-vars/ {
            proxy_redirect http://$proxy_host/ http://$host:$server_port/v/;
            proxy_pass http://up;
        }
        location /noabs/ { absolute_redirect off; proxy_pass http://up; }
        location /small/ { client_max_body_size 10; proxy_pass http://up; }
        location /nochunk/ { chunked_transfer_encoding off; proxy_pass http://up; }
        location /method/ { proxy_method PUT; proxy_pass http://up; }
        location /tokens-off/ { server_tokens off; proxy_pass http://up; }
        location /intercept/ {
            proxy_intercept_errors on;
            error_page 404 /a.txt;
            error_page 401 /a.txt;
            error_page 503 =200 /a.txt;
            proxy_pass http://up;
        }
    }

    server {
        listen %ADDR%:%PORT%;
        server_name more;
        root %WWW%;
        location / { proxy_pass http://up; }
        location /ws/ {
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_pass http://up;
        }
        location /ignore-abort/ { proxy_ignore_client_abort on; proxy_pass http://up; }
        location ~ ^/reredir/ { proxy_pass http://up; }
        location /dir/ { }
        location = /a.txt { }
        location @accel { try_files /a.txt =404; }
        location /small/ { client_max_body_size 10; proxy_pass http://up; }
        location /unbuf/ { proxy_buffering off; proxy_pass http://up; }
        location /requnbuf/ {
            proxy_request_buffering off;
            proxy_http_version 1.1;
            proxy_pass http://up;
        }
        location /requnbuf10/ { proxy_request_buffering off; proxy_pass http://up; }
        location /sendtmo/ { send_timeout 300ms; client_body_timeout 300ms; proxy_pass http://up; }
    }

    server {
        listen %ADDR%:%PORT2%;
        server_name localhost;
        proxy_set_header X-Server-Level yes;
        proxy_set_header Host upstream-host;
        location / { proxy_pass http://up; }
        location /own/ { proxy_set_header X-Loc own; proxy_pass http://up; }
        location /empty-host/ { proxy_set_header Host ""; proxy_pass http://up; }
    }

    server {
        listen %ADDR%:%PORT2% default_server;
        server_name short-timeouts;
        send_timeout 300ms;
        client_body_timeout 300ms;
        client_header_timeout 300ms;
        keepalive_timeout 300ms;
        location / { proxy_pass http://up; }
        location /ws/ {
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_pass http://up;
        }
    }
"""

P2 = {"port_index": 1}
UA = ("User-Agent", "test-client/1.0")


def get(path: str, *headers: tuple[str, str] | str, **kw: object) -> bytes:
    return req(path, headers=headers, **kw)  # type: ignore[arg-type]


def post(path: str, body: bytes, *headers: tuple[str, str] | str, **kw: object) -> bytes:
    return req(path, method="POST", body=body, headers=headers, **kw)  # type: ignore[arg-type]


def te(path: str, body: bytes, *headers: tuple[str, str] | str) -> bytes:
    return req(path, method="POST", headers=(("Transfer-Encoding", "chunked"), *headers),
               body=body, length=False)


CASES = [
    # -- request headers -------------------------------------------------------------------
    Case("default", get("/plain", UA, ("Accept", "*/*"))),
    Case("default-http10", get("/plain", UA, version="HTTP/1.0")),
    Case("default-http10-nohost", get("/plain", version="HTTP/1.0", host=None)),
    # HTTP/0.9: proxied as HTTP/1.0 without a Host of the client's, the answer's bare body
    Case("http09-client", b"GET /plain?q=1\r\n", requests=1),
    Case("http09-client-set", b"GET /set/x\r\n", requests=1),
    Case("hop-by-hop", get("/hop", ("Connection", "keep-alive, X-Custom"), ("Keep-Alive", "300"),
                           ("TE", "trailers"), ("Upgrade", "websocket"), ("X-Custom", "1"),
                           ("Proxy-Connection", "keep-alive"), ("Expect", "something"))),
    Case("client-header-order", get("/order", ("X-B", "2"), ("x-a", "1"), ("X-B", "3"),
                                    ("cookie", "a=1"), ("Cookie", "b=2"), ("X-Empty", ""))),
    Case("client-header-underscore", get("/us", ("X_Under", "1"), ("X-Ok", "2"))),
    Case("client-host-with-port", get("/hp", host="localhost:8080")),
    Case("xff-none", get("/set/x?a=1", UA)),
    Case("xff-one", get("/set/x", ("X-Forwarded-For", "10.0.0.1"))),
    Case("xff-two-lines", get("/set/x", ("X-Forwarded-For", "10.0.0.1"),
                              ("X-Forwarded-For", "10.0.0.2, 10.0.0.3"))),
    Case("set-empty-removes", get("/set/y", ("Accept-Encoding", "gzip"), UA,
                                  ("X-Nothing", ""))),
    Case("set-with-value", get("/set/z", ("X-Nothing", "something"))),
    Case("set-uri-utf8", get("/set/caf\u00e9/%E2%98%95?q=\u00fc", ("X-Nothing", "\u00e9"))),
    Case("client-header-8bit", get("/h8", ("X-Latin", "caf\u00e9"))),
    Case("set-host-http-host", get("/sethost/a", host="example.com:81")),
    Case("set-host-http-host-missing", get("/sethost/a", version="HTTP/1.0", host=None)),
    Case("set-host-port", get("/hostport/a", host="Example.COM")),
    Case("set-connection", get("/setconn/a", ("Connection", "close"))),
    Case("set-content-length-no-body", get("/setcl/a")),
    Case("set-content-length-with-body", post("/setcl/a", b"hello")),
    Case("set-expect", get("/setexpect/a", ("Expect", "x-thing"))),
    Case("set-upgrade", get("/setupgrade/a", ("Upgrade", "h2c"), ("Connection", "Upgrade"))),
    Case("http11", get("/http11/a", ("Connection", "keep-alive"))),
    Case("http11-close", get("/http11/a", ("Connection", "close"))),
    Case("inherit-server-level", get("/inh"), **P2),
    Case("inherit-overridden", get("/own/x"), **P2),
    Case("host-empty", get("/empty-host/x"), **P2),
    Case("pass-request-headers-off", get("/nohdrs/x", UA, ("X-A", "1"))),
    Case("pass-request-headers-off-post", post("/nohdrs/x", b"body!", UA)),
    Case("pass-request-body-off", post("/nobody/x", b"body!")),
    Case("pass-request-body-off-nolen", post("/nobody-nolen/x", b"body!")),
    Case("proxy-method", get("/method/x")),
    Case("proxy-method-post", post("/method/x", b"abc")),
    # -- request bodies --------------------------------------------------------------------
    Case("post-length", post("/body", b"hello world")),
    Case("post-empty", post("/body", b"", ("Content-Length", "0"))),
    Case("post-chunked", te("/body", chunked(b"hello ", b"chunked ", b"world"))),
    Case("post-chunked-ext-trailer",
         te("/body", b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n")),
    Case("post-chunked-empty", te("/body", b"0\r\n\r\n")),
    Case("get-with-body", get("/body", body=b"a body on GET")),
    Case("put-binary", req("/body", method="PUT", body=bytes(range(256)))),
    Case("post-big", post("/body", b"x" * 200_000)),
    Case("post-split", (post("/body", b"0123456789" * 10)[:-50],
                        post("/body", b"0123456789" * 10)[-50:]), pause=0.2),
    Case("expect-continue", (get("/body", ("Expect", "100-continue"),
                                 ("Content-Length", "5"), method="POST"), b"abcde"),
         {"statuses": (100, 200)}, pause=0.3),
    Case("expect-continue-body-at-once", post("/body", b"abcde", ("Expect", "100-continue"))),
    Case("expect-continue-http10", get("/body", ("Expect", "100-continue"),
                                       ("Content-Length", "5"), method="POST",
                                       version="HTTP/1.0", body=b"abcde", length=False)),
    Case("body-too-large", post("/small/x", b"x" * 11), {"status": 413}),
    Case("body-too-large-chunked", te("/small/x", chunked(b"x" * 11)), {"status": 413}),
    Case("body-limit-exact", post("/small/x", b"x" * 10), {"status": 200}),
    Case("body-too-large-expect", get("/small/x", ("Expect", "100-continue"),
                                      ("Content-Length", "11"), method="POST"),
         {"status": 413}),
    # -- the response ----------------------------------------------------------------------
    Case("hidden-headers", get("/hdrs")),
    Case("hide-and-pass", get("/hide/hdrs")),
    Case("multi-headers", get("/multi")),
    Case("spaced-header-value", get("/ws-header")),
    Case("reason-custom", get("/reason/299/Custom_Reason_Here")),
    Case("reason-none", get("/reason/200/-")),
    Case("reason-404-custom", get("/reason/404/Nope")),
    Case("status-unknown", get("/status/599")),
    Case("status-418", get("/status/418")),
    Case("status-500", get("/status/500")),
    Case("status-503", get("/status/503")),
    Case("status-201", post("/status/201", b"created")),
    Case("no-ctype", get("/no-ctype")),
    Case("tokens-off", get("/tokens-off/status/502")),
    Case("lm", get("/lm")),
    Case("lm-404", get("/lm/status/404")),
    Case("lm-rfc850", get("/lm-rfc850")),
    Case("lm-bad", get("/lm-bad")),
    Case("lm-bad-404", get("/lm-bad/status/404")),
    Case("conditional-not-applied", get("/hdrs", ("If-None-Match", '"abc"'),
                                        ("If-Modified-Since", "Tue, 14 Nov 2023 22:13:20 GMT"))),
    Case("range-not-applied", get("/hdrs", ("Range", "bytes=0-3"))),
    Case("http10-backend", get("/http10")),
    Case("http10-backend-keepalive-client", get("/http10", ("Connection", "keep-alive"),
                                                version="HTTP/1.0")),
    # transfer encodings both ways
    Case("chunked-to-11", get("/chunked")),
    Case("chunked-to-10", get("/chunked", version="HTTP/1.0")),
    Case("chunked-to-10-keepalive", get("/chunked", ("Connection", "keep-alive"),
                                        version="HTTP/1.0")),
    Case("close-delimited-to-11", get("/close-delimited")),
    Case("close-delimited-to-10", get("/close-delimited", version="HTTP/1.0")),
    Case("nochunk-config", get("/nochunk/chunked")),
    Case("chunked-empty", get("/chunked/empty")),
    Case("chunked-pipelined", get("/chunked/1") + get("/chunked/2") + get("/a.txt")),
    Case("big-length", get("/big/3m")),
    Case("big-chunked", get("/big/3m/chunked")),
    Case("big-close", get("/big/1m/close-delimited")),
    Case("big-to-10", get("/big/1m/chunked", version="HTTP/1.0")),
    Case("slow-body", get("/slow-body/300ms")),
    Case("slow-body-chunked", get("/slow-body/300ms/chunked")),
    # HEAD, 204, 304
    Case("head", get("/h", method="HEAD")),
    Case("head-chunked", get("/chunked", method="HEAD")),
    Case("head-close-delimited", get("/close-delimited", method="HEAD")),
    Case("head-big", get("/big/1m", method="HEAD")),
    Case("head-then-get", get("/h1", method="HEAD") + get("/h2")),
    Case("head-404", get("/status/404", method="HEAD")),
    Case("status-204", get("/status/204")),
    Case("status-204-then-get", get("/status/204") + get("/after")),
    Case("status-304", get("/status/304/hdrs")),
    Case("status-304-then-get", get("/status/304") + get("/after")),
    Case("status-204-chunked", get("/status/204/chunked")),
    Case("interim-100", get("/continue")),
    Case("interim-100-post", post("/continue", b"abc")),
    # invalid answers
    Case("bad-header-http09", get("/bad-header")),  # passed through as HTTP/0.9
    Case("too-big-header", get("/bighdr/10k"), {"status": 502}),
    Case("big-header-fits", get("/bighdr/2k")),
    Case("upgrade-not-asked", get("/upgrade")),
    Case("cl-and-te", get("/cl-and-te")),
    Case("duplicate-cl", get("/dup-cl")),
    Case("x-accel-redirect", get("/xaccel")),
    # redirects
    Case("redirect-relative", get("/redirect-relative")),
    Case("redirect-absolute", get("/redirect-absolute")),
    Case("redirect-other", get("/redirect-other")),
    Case("redirect-8bit", get("/redirect-8bit")),
    Case("redirect-8bit-host", get("/redirect-8bit", host="ex\u00e4mple")),
    Case("redirect-off", get("/redir-off/redirect-absolute")),
    Case("redirect-off-relative", get("/redir-off/redirect-relative")),
    Case("redirect-explicit-abs", get("/redir-explicit/redirect-absolute")),
    Case("redirect-explicit-rel", get("/redir-explicit/redirect-relative")),
    Case("redirect-uri-part", get("/redir-uri/redirect-absolute")),
    Case("redirect-plus", get("/redir-plus/redirect-other")),
    Case("redirect-plus-default", get("/redir-plus/redirect-absolute")),
    Case("redirect-vars", get("/redir-vars/redirect-absolute")),
    Case("redirect-noabs", get("/noabs/redirect-relative")),
    Case("redirect-http10-nohost", get("/redirect-relative", version="HTTP/1.0", host=None)),
    Case("redirect-host-port", get("/redirect-relative", host="example.com:99")),
    Case("intercept-404", get("/intercept/status/404")),
    Case("intercept-200", get("/intercept/x")),
    Case("intercept-502", get("/intercept/status/502")),
    Case("intercept-401", get("/intercept/status/401/hdrs")),
    Case("intercept-503-as-200", get("/intercept/status/503")),
    Case("intercept-head", get("/intercept/status/404", method="HEAD")),
]


MORE = "more"
SHORT = "short-timeouts"
CASES += [
    # upgraded connections: 101 with a client that asked is a tunnel; without, a response
    Case("ws-upgrade", (get("/ws/upgrade", ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                            host=MORE), b"hello tunnel\r\n"), pause=0.3),
    Case("ws-upgrade-client-closes", (get("/ws/upgrade/close", ("Upgrade", "websocket"),
                                          ("Connection", "Upgrade"), host=MORE), b"bye\r\n",
                                      b""), pause=0.3, half_close=True),
    Case("ws-upgrade-not-101", get("/ws/x", ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                   host=MORE)),
    Case("upgrade-header-without-ws-location", get("/upgrade", ("Upgrade", "websocket"),
                                                   ("Connection", "Upgrade"), host=MORE)),
    # the client goes away (half-close) while the upstream thinks
    Case("client-fin-waiting", get("/slow-header/500ms", host=MORE), half_close=True),
    Case("client-fin-ignore-abort", get("/ignore-abort/slow-header/300ms", host=MORE),
         half_close=True),
    Case("client-fin-waiting-chunked", get("/slow-header/400ms/chunked", host=MORE),
         half_close=True),
    Case("client-fin-after-body", post("/slow-header/300ms", b"abc", host=MORE),
         half_close=True),
    # proxy_redirect default in a regex location
    Case("regex-location-redirect", get("/reredir/redirect-absolute", host=MORE)),
    # X-Accel-Redirect
    Case("x-accel-html", get("/xaccel-html", host=MORE)),
    Case("x-accel-named", get("/xaccel-named", host=MORE)),
    Case("x-accel-args", get("/xaccel-args", host=MORE)),
    Case("x-accel-missing", get("/xaccel-missing", host=MORE)),
    Case("x-accel-unsafe", get("/xaccel-unsafe", host=MORE)),
    Case("x-accel-head", get("/xaccel-html", method="HEAD", host=MORE)),
    Case("x-accel-post", post("/xaccel", b"abc", host=MORE)),
    # an answer that is not HTTP, then another request on the same connection
    Case("http09-then-request", (get("/bad-header", host=MORE), get("/a.txt", host=MORE),
                                 b""), requests=2, pause=0.4),  # (b"": wait before reading)
    # proxy_buffering off / X-Accel-Buffering: no
    Case("unbuffered-chunked", get("/unbuf/chunked", host=MORE)),
    Case("unbuffered-big", get("/unbuf/big/1m", host=MORE)),
    Case("unbuffered-close", get("/unbuf/close-delimited/big/100k", host=MORE)),
    Case("unbuffered-slow-body", get("/unbuf/slow-body/200ms/chunked", host=MORE)),
    Case("unbuffered-head", get("/unbuf/chunked", method="HEAD", host=MORE)),
    Case("unbuffered-204", get("/unbuf/status/204", host=MORE)),
    Case("unbuffered-http10-client", get("/unbuf/chunked", version="HTTP/1.0", host=MORE)),
    Case("unbuffered-close-mid-body", get("/unbuf/close-mid-body", host=MORE),
         {"closed": True}),
    Case("accel-buffering-no", get("/hdrs/slow-body/200ms", host=MORE)),
    # proxy_request_buffering off: the body as it comes (chunked stays chunked with 1.1)
    Case("request-unbuffered-length", post("/requnbuf/x", b"hello", host=MORE)),
    Case("request-unbuffered-chunked", req("/requnbuf/x", method="POST", host=MORE,
                                           headers=[("Transfer-Encoding", "chunked")],
                                           body=chunked(b"abc", b"defg"), length=False)),
    Case("request-unbuffered-chunked-10", req("/requnbuf10/x", method="POST", host=MORE,
                                              headers=[("Transfer-Encoding", "chunked")],
                                              body=chunked(b"abc", b"defg"), length=False)),
    Case("request-unbuffered-chunked-split", (req("/requnbuf/x", method="POST", host=MORE,
                                                  headers=[("Transfer-Encoding", "chunked")]),
                                              b"3\r\nabc\r\n", b"4\r\ndefg\r\n0\r\n\r\n"),
         pause=0.2),
    Case("request-unbuffered-split", (req("/requnbuf/x", method="POST", host=MORE,
                                          headers=[("Content-Length", "10")]), b"01234",
                                      b"56789"), pause=0.2),
    # send_timeout is for writing to the client, not for waiting for the upstream
    Case("slow-upstream-short-send-timeout", get("/sendtmo/slow-header/800ms", host=MORE)),
    Case("slow-upstream-server-send-timeout", get("/slow-header/800ms", host=SHORT), **P2),
    Case("slow-body-server-send-timeout", get("/slow-body/800ms", host=SHORT), **P2),
    Case("slow-upstream-server-body-timeout", post("/slow-header/800ms", b"x", host=SHORT),
         **P2),
    Case("ws-upgrade-idle", (get("/ws/upgrade", ("Upgrade", "websocket"),
                                 ("Connection", "Upgrade"), host=SHORT), b"late\r\n"),
         pause=0.6, **P2),
    # a chunked body over client_max_body_size arriving after the header
    Case("chunked-too-large-later", (req("/small/x", method="POST", host=MORE,
                                         headers=[("Transfer-Encoding", "chunked")]),
                                     chunked(b"x" * 6, b"y" * 6)), pause=0.2),
    Case("chunked-fits-later", (req("/small/x", method="POST", host=MORE,
                                    headers=[("Transfer-Encoding", "chunked")]),
                                chunked(b"x" * 6, b"y" * 4)), pause=0.2),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_headers(pair, case: Case) -> None:  # type: ignore[no-untyped-def]
    compare(pair, case)


def test_zz_access_logs(pair: Pair) -> None:
    """The $upstream_* variables of every request above (statuses, lengths with and without
    chunked framing, bytes received and sent, $upstream_http_*), request by request."""
    pair.prefetch(c for c in CASES)
    # (a client that goes away races with the upstream connection: not its 499 lines)
    assert same_access_logs(pair, r'^"([^"]*)" (?!499)', "up.log", unordered=True) > 50
