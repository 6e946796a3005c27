"""Virtual server selection (server_name kinds, default_server, first server): nginx vs halb."""

from __future__ import annotations

import pytest
from harness import Case, compare, ids, req

pytestmark = pytest.mark.peer

CONFIG = r"""
    default_type text/plain;

    server {
        listen %ADDR%:%PORT%;
        server_name first.example;
        return 200 "first server host=$host server_name=$server_name\n";
    }
    server {
        listen %ADDR%:%PORT%;
        server_name exact.example www.exact.example exact.lead.example;
        location / { return 200 "exact host=$host\n"; }
        location /redirect { return 301 /elsewhere; }
    }
    server {
        listen %ADDR%:%PORT%;
        server_name *.lead.example;
        return 200 "lead wildcard host=$host\n";
    }
    server {
        listen %ADDR%:%PORT%;
        server_name *.sub.lead.example;
        return 200 "longer lead wildcard\n";
    }
    server {
        listen %ADDR%:%PORT%;
        server_name trail.*;
        return 200 "trail wildcard host=$host\n";
    }
    server {
        listen %ADDR%:%PORT%;
        server_name trail.longer.*;
        return 200 "longer trail wildcard\n";
    }
    server {
        listen %ADDR%:%PORT%;
        server_name ~^(?<user>[a-z]+)\.regex\.example$;
        location / { return 200 "regex user=$user\n"; }
    }
    server {
        listen %ADDR%:%PORT%;
        server_name ~^num(\d+)\.example$;
        location / { return 200 "regex num=$1\n"; }
        location ~ ^/loc/(\w+)$ { return 200 "location capture=$1\n"; }
    }
    server {
        listen %ADDR%:%PORT%;
        server_name ~^(www\.)?both\.example$ ~^second\.;
        return 200 "several regexes\n";
    }
    server {
        listen %ADDR%:%PORT%;
        server_name .dot.example;
        return 200 "dot name host=$host\n";
    }
    server {
        listen %ADDR%:%PORT%;
        server_name "";
        return 200 "empty server_name\n";
    }
    server {
        listen %ADDR%:%PORT%;
        server_name tokens.example;
        server_tokens off;
        location / { return 404; }
        location /r { return 302 /x; }
    }

    server {
        listen %ADDR%:%PORT2%;
        server_name a.port2;
        return 200 "port2 first\n";
    }
    server {
        listen %ADDR%:%PORT2% default_server;
        server_name b.port2;
        return 200 "port2 default_server\n";
    }
    server {
        listen %ADDR%:%PORT2%;
        server_name c.port2;
        location / { }
        root %WWW%;
    }
"""

P2 = {"port_index": 1}

CASES = [
    Case("first-by-name", req("/", host="first.example"), {"body_contains": b"first server"}),
    Case("unknown-host-first-server", req("/", host="nobody.example"),
         {"body_contains": b"first server host=nobody.example"}),
    Case("exact", req("/", host="exact.example"), {"body": b"exact host=exact.example\n"}),
    Case("exact-second-name", req("/", host="www.exact.example"), {"body_contains": b"exact"}),
    Case("exact-mixed-case", req("/", host="ExAcT.Example"),
         {"body": b"exact host=exact.example\n"}),
    Case("exact-with-port", req("/", host="exact.example:8080"), {"body_contains": b"exact"}),
    Case("exact-trailing-dot", req("/", host="exact.example."), {"body_contains": b"exact"}),
    Case("exact-beats-lead-wildcard", req("/", host="exact.lead.example"),
         {"body_contains": b"exact host"}),
    Case("exact-redirect-uses-host", req("/redirect", host="Exact.Example:99"),
         {"header:location": "http://exact.example:%PORT%/elsewhere"}),
    Case("lead-wildcard", req("/", host="x.lead.example"), {"body_contains": b"lead wildcard"}),
    Case("lead-wildcard-deep", req("/", host="a.b.c.lead.example"),
         {"body_contains": b"lead wildcard"}),
    Case("lead-wildcard-longest", req("/", host="y.sub.lead.example"),
         {"body": b"longer lead wildcard\n"}),
    Case("lead-wildcard-not-bare", req("/", host="lead.example"),
         {"body_contains": b"first server"}),
    Case("trail-wildcard", req("/", host="trail.org"), {"body_contains": b"trail wildcard"}),
    Case("trail-wildcard-deep", req("/", host="trail.a.b"), {"body_contains": b"trail wildcard"}),
    Case("trail-wildcard-longest", req("/", host="trail.longer.net"),
         {"body": b"longer trail wildcard\n"}),
    Case("trail-wildcard-not-bare", req("/", host="trail"), {"body_contains": b"first server"}),
    Case("regex-named-capture", req("/", host="bob.regex.example"),
         {"body": b"regex user=bob\n"}),
    Case("regex-caseless", req("/", host="BOB.Regex.Example"), {"body": b"regex user=bob\n"}),
    Case("regex-positional-capture", req("/", host="num42.example"), {"body": b"regex num=42\n"}),
    Case("regex-location-capture-wins", req("/loc/abc", host="num7.example"),
         {"body": b"location capture=abc\n"}),
    Case("regex-second-of-several", req("/", host="second.anything"),
         {"body": b"several regexes\n"}),
    Case("regex-optional-group", req("/", host="both.example"), {"body": b"several regexes\n"}),
    Case("regex-no-match", req("/", host="bob1.regex.example"),
         {"body_contains": b"first server"}),
    Case("dot-name-bare", req("/", host="dot.example"), {"body_contains": b"dot name"}),
    Case("dot-name-sub", req("/", host="a.dot.example"), {"body_contains": b"dot name"}),
    Case("empty-name-no-host-http10", req("/", host=None, version="HTTP/1.0"),
         {"body": b"empty server_name\n"}),
    Case("empty-host-header-http10", req("/", host="", version="HTTP/1.0")),
    Case("absolute-uri-selects-server", req("http://exact.example/", host="first.example"),
         {"body": b"exact host=exact.example\n"}),
    Case("absolute-uri-with-port", req("http://X.Lead.Example:81/p", host="first.example"),
         {"body": b"lead wildcard host=x.lead.example\n"}),
    Case("absolute-uri-https", req("https://trail.x/", host="zzz")),
    Case("host-ipv6-literal", req("/", host="[::1]:80"), {"body_contains": b"host=[::1]"}),
    Case("host-underscore", req("/", host="a_b.example"), {"status": 200}),
    Case("host-ip", req("/", host="127.0.0.2"), {"status": 200}),
    Case("server-tokens-off-page", req("/", host="tokens.example"), {"status": 404}),
    Case("server-tokens-off-redirect", req("/r", host="tokens.example"), {"status": 302}),
    # a second port: default_server, not the first server, answers unknown names
    Case("port2-by-name", req("/", host="a.port2"), {"body": b"port2 first\n"}, **P2),
    Case("port2-default-server", req("/", host="zzz"), {"body": b"port2 default_server\n"},
         **P2),
    Case("port2-no-host-http10", req("/", host=None, version="HTTP/1.0"),
         {"body": b"port2 default_server\n"}, **P2),
    Case("port2-other-port-name", req("/", host="exact.example"),
         {"body": b"port2 default_server\n"}, **P2),
    Case("port2-static", req("/a.txt", host="c.port2"), {"status": 200}, **P2),
    Case("port2-dir-redirect", req("/dir", host="c.port2"),
         {"status": 301, "header:location": "http://c.port2:%PORT%/dir/"}, **P2),
    Case("port2-dir-no-host-default", req("/dir", host=None, version="HTTP/1.0"),
         {"body": b"port2 default_server\n"}, **P2),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_server_names(pair, case: Case) -> None:  # type: ignore[no-untyped-def]
    compare(pair, case)
