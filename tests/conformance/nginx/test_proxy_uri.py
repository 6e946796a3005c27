"""proxy_pass URI rules side by side: what nginx and halb send upstream (the backend echoes the
request it received), with and without a URI part, prefix / exact / regex / named locations,
after index, try_files and error_page internal redirects, with percent-encoded, UTF-8 and
unusual URIs, with arguments, and proxy_pass with variables naming an upstream or an address."""

from __future__ import annotations

import pytest
from harness import Case, compare, ids, req

pytestmark = pytest.mark.peer

BACKENDS = ["u1", "u2"]

CONFIG = r"""
    default_type text/plain;
    proxy_bind %ADDR%;
    upstream up { server %B_u1%; }
    upstream up2 { server %B_u2%; }
    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        root %WWW%;
        location /nouri/ { proxy_pass http://up; }
        location /slash/ { proxy_pass http://up/; }
        location /repl/ { proxy_pass http://up/new/; }
        location /repl-noslash/ { proxy_pass http://up/new; }
        location /noslash { proxy_pass http://up/x; }
        location = /exact { proxy_pass http://up/exactly; }
        location = /exact-nouri { proxy_pass http://up; }
        location /withargs/ { proxy_pass http://up/a?fixed=1; }
        location ~ ^/re/(.*)$ { proxy_pass http://up; }
        location ~* ^/RECI/ { proxy_pass http://up2; }
        location ~ ^/recap/(?<rest>.*)$ { proxy_pass http://up/captured/$1; }
        location /direct/ { proxy_pass http://%B_u1%; }
        location /direct-uri/ { proxy_pass http://%B_u2%/d/; }
        location /var/ { proxy_pass http://$arg_b; }
        location /varuri/ { proxy_pass http://$arg_b/vu$uri; }
        location /varreq/ { proxy_pass http://up2$request_uri; }
        location /tf/ { try_files $uri /slash/tf-fallback; }
        location /tfargs/ { try_files $uri /slash/tf-fallback?from=tf; }
        location /tfnamed/ { try_files $uri @named; }
        location @named { proxy_pass http://up; }
        location /dir/ { index index.html; }
        location ~ ^/dir/.*\.html$ { proxy_pass http://up; }
        location /ep/ { error_page 404 = /slash/ep-fallback; }
        location /ep404/ { error_page 404 /slash/ep-keep-status; }
        location /epnamed/ { error_page 404 = @named; }
        location /parent/ {
            location /parent/child/ { proxy_pass http://up2/c/; }
            location /parent/static/ { }
            proxy_pass http://up/p/;
        }
        location / { }
    }
"""


def get(path: str, **kw: object) -> bytes:
    return req(path, **kw)  # type: ignore[arg-type]


CASES = [
    # no URI part: the client's request-target, untouched
    Case("nouri-plain", get("/nouri/a/b")),
    Case("nouri-args", get("/nouri/a?x=1&y=%20z")),
    Case("nouri-empty-args", get("/nouri/a?")),
    Case("nouri-pct", get("/nouri/a%20b%2Fc")),
    Case("nouri-pct-lower", get("/nouri/%7euser/caf%c3%a9")),
    Case("nouri-utf8-raw", get("/nouri/caf\u00e9/\u2615")),
    Case("nouri-dotdot", get("/nouri/x/../y/./z")),
    Case("nouri-double-slash", get("/nouri//a///b")),
    Case("nouri-plus-semicolon", get("/nouri/a+b;c=d,e")),
    Case("nouri-hash-encoded", get("/nouri/a%23b%3Fc")),
    Case("nouri-absolute-form", get("http://localhost/nouri/abs?q=1")),
    Case("nouri-absolute-form-other-host", get("http://example.org:81/nouri/abs2")),
    Case("nouri-dot-then-pct", get("/nouri/a.b%20c")),
    # a URI part replaces the location's prefix of the normalized URI
    Case("slash", get("/slash/a/b?q=1")),
    Case("slash-root", get("/slash/")),
    Case("slash-pct", get("/slash/a%20b")),
    Case("slash-pct-slash", get("/slash/a%2Fb")),
    Case("slash-utf8-raw", get("/slash/caf\u00e9")),
    Case("slash-utf8-pct", get("/slash/caf%C3%A9?x=%C3%A9")),
    Case("slash-dotdot", get("/slash/a/../b")),
    Case("slash-double", get("/slash//a//b")),
    Case("slash-unreserved-pct", get("/slash/%41%42%7E")),
    Case("slash-dot-then-pct", get("/slash/a.b%20c")),
    Case("slash-pct-in-args-only", get("/slash/caf\u00e9?x=%41")),
    Case("slash-question-encoded", get("/slash/a%3Fb")),
    Case("slash-control-encoded", get("/slash/a%01b%7Fc")),
    Case("repl", get("/repl/a/b")),
    Case("repl-args", get("/repl/a?x=1")),
    Case("repl-root", get("/repl/")),
    Case("repl-noslash", get("/repl-noslash/a")),
    Case("noslash-longer", get("/noslashfoo/bar")),
    Case("noslash-exact", get("/noslash")),
    Case("exact", get("/exact?k=v")),
    Case("exact-nouri", get("/exact-nouri?k=v")),
    Case("withargs", get("/withargs/b?c=d")),
    Case("withargs-noargs", get("/withargs/b")),
    # auto redirect: a location ending in "/" that proxies
    Case("auto-redirect", get("/slash"), {"status": 301}),
    Case("auto-redirect-args", get("/repl?x=1"), {"status": 301}),
    # regex locations: no URI part; the request-target as sent
    Case("regex", get("/re/a%20b?z=1")),
    Case("regex-caseless", get("/reci/X")),
    Case("regex-captures-variable-uri", get("/recap/one/two?q=1")),
    Case("regex-captures-pct", get("/recap/a%20b")),
    # the implicit upstream of an address: Host is host:port
    Case("direct", get("/direct/x?y")),
    Case("direct-uri", get("/direct-uri/x?y")),
    # variables: an upstream's name, an address, nothing resolvable
    Case("var-upstream", get("/var/x?b=up")),
    Case("var-upstream2", get("/var/x?b=up2&c=1")),
    Case("var-address", get("/var/x?b=%B_u1%")),
    Case("var-unknown-host", get("/var/x?b=nosuch.invalid"), {"status": 502}),
    Case("var-empty", get("/var/x"), {"status": 500}),
    Case("var-pct", get("/var/a%20b?b=up")),
    Case("varuri", get("/varuri/x?b=up")),
    Case("varuri-pct", get("/varuri/a%20b?b=up")),
    Case("varreq", get("/varreq/a%20b?q=1")),
    # internal redirects: the changed URI, escaped
    Case("try-files", get("/tf/none?a=1")),
    Case("try-files-args", get("/tfargs/none?a=1")),
    Case("try-files-named", get("/tfnamed/none%20x?a=1")),
    Case("try-files-existing", get("/tf/")),
    Case("index", get("/dir/")),
    Case("index-args", get("/dir/?x=1")),
    Case("regex-direct-html", get("/dir/page.html")),
    Case("error-page-eq", get("/ep/missing?z=2")),
    Case("error-page-keep-status", get("/ep404/missing")),
    Case("error-page-named", get("/epnamed/missing%20y?z=3")),
    Case("error-page-post", get("/ep/missing", method="POST", body=b"hello")),
    # nested locations
    Case("nested-child", get("/parent/child/x")),
    Case("nested-parent", get("/parent/y")),
    Case("nested-without-proxy-pass", get("/parent/static/x")),
    # more URI shapes
    Case("slash-dotdot-then-pct", get("/slash/a/../b%20c")),
    Case("slash-double-slash-then-pct", get("/slash//b%20c")),
    Case("slash-hash-then-pct", get("/slash/b%23c%20d")),
    Case("slash-raw-hash-then-pct", get("/slash/b#c%20d")),
    Case("slash-dotdot-pct-dot", get("/slash/a/%2e%2e/b%20c")),
    Case("nouri-raw-space", get("/nouri/a b")),
    Case("slash-raw-space", get("/slash/a b")),
    Case("slash-pct-utf8-invalid", get("/slash/%C3%28")),
    Case("slash-long", get("/slash/" + "x" * 3000)),
    Case("nouri-http10", get("/nouri/ten", version="HTTP/1.0")),
    Case("repl-exact-prefix", get("/repl/")),
    # methods pass through
    Case("method-put", get("/slash/m", method="PUT", body=b"data")),
    Case("method-delete", get("/slash/m", method="DELETE")),
    Case("method-options", get("/slash/m", method="OPTIONS")),
    Case("method-unknown", get("/slash/m", method="FOO")),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_uri(pair, backends, case: Case) -> None:  # type: ignore[no-untyped-def]
    if b"%B_" in case.payload:
        raw = backends.substitute(case.payload.decode("latin-1")).encode("latin-1")
        case = Case(case.name + "-sub", raw, case.expect)
    compare(pair, case)
