"""Location matching, return, error_page, internal and named locations: nginx vs halb."""

from __future__ import annotations

import pytest
from harness import Case, compare, ids, req

pytestmark = pytest.mark.peer

CONFIG = r"""
    types {
        text/html html htm;
        text/plain txt;
        text/css css;
        application/javascript js;
        image/png png;
        image/jpeg jpg jpeg;
        image/gif gif;
        application/json json;
    }
    default_type application/octet-stream;

    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        root %WWW%;

        location = / { return 200 "exact root\n"; }
        location / { }
        location = /exact { return 200 "exact match\n"; }
        location /exact { return 200 "prefix of exact: $uri\n"; }
        location = /both/ { return 200 "exact both/\n"; }
        location ^~ /images/ { return 200 "noregex images: $uri\n"; }
        location ~ \.(gif|jpg|png)$ { return 200 "regex image: $1 $uri\n"; }
        location ~* \.PHP$ { return 200 "caseless php: $uri\n"; }
        location ~ ^/re/(?<word>[a-z]+)/(\d+)$ { return 200 "word=$word num=$2 one=$1\n"; }
        location ~ ^/order/ { return 200 "first regex\n"; }
        location ~ ^/order/x { return 200 "second regex\n"; }
        location /longer/prefix/ { return 200 "longest prefix\n"; }
        location /longer/ { return 200 "shorter prefix\n"; }
        location /docs/ {
            location ~ \.jpg$ { return 200 "nested regex in docs: $uri\n"; }
            location /docs/inner/ {
                location ~ ^/docs/inner/(\w+)\.txt$ { return 200 "doubly nested $1\n"; }
                return 200 "nested prefix\n";
            }
        }
        location ^~ /static/ {
            location ~ \.css$ { return 200 "regex nested in ^~: $uri\n"; }
        }

        location /tf/ { try_files $uri @fallback; }
        location @fallback { return 200 "named fallback for $uri args=$args\n"; }

        location /internal/ { internal; }

        location /ret/ {
            location = /ret/200 { return 200 "plain text\n"; }
            location = /ret/200.html { return 200 "<p>html by extension</p>\n"; }
            location = /ret/200-empty { return 200; }
            location = /ret/204 { return 204; }
            location = /ret/204-text { return 204 "ignored?"; }
            location = /ret/404 { return 404; }
            location = /ret/404-text { return 404 "custom 404 text\n"; }
            location = /ret/403 { return 403; }
            location = /ret/410 { return 410; }
            location = /ret/418 { return 418; }
            location = /ret/429 { return 429; }
            location = /ret/500 { return 500; }
            location = /ret/503 { return 503; }
            location = /ret/301-rel { return 301 /target/path; }
            location = /ret/301-rel-args { return 301 /target?a=1&b=2; }
            location = /ret/302-abs { return 302 http://example.com/abs; }
            location = /ret/303 { return 303 /see-other; }
            location = /ret/307 { return 307 https://example.com:8443/t; }
            location = /ret/308 { return 308 /perm; }
            location = /ret/bare-url { return http://example.org/bare; }
            location = /ret/var-url { return 301 $scheme://$host$request_uri; }
            location = /ret/301-text-only { return 301 not-a-url; }
            location = /ret/444 { return 444; }
            location = /ret/vars { return 200 "uri=$uri args=$args arg_x=$arg_x host=$host method=$request_method proto=$server_protocol ruri=$request_uri is_args=$is_args\n"; }
            location = /ret/200-json.json { return 200 '{"ok": true}'; }
            location = /ret/999 { return 599 "odd code\n"; }
        }

        location /ep/ {
            error_page 404 /errors/404.html;
        }
        location /ep-code/ {
            error_page 404 =200 /errors/404.html;
        }
        location /ep-eq/ {
            error_page 404 = /ret/404-text;
        }
        location /ep-eq-ok/ {
            error_page 404 = /a.txt;
        }
        location /ep-named/ {
            error_page 404 = @named404;
        }
        location /ep-named-code/ {
            error_page 404 =410 @named404;
        }
        location @named404 { return 200 "named handler saw $uri\n"; }
        location /ep-url/ {
            error_page 404 http://example.com/notfound;
        }
        location /ep-url301/ {
            error_page 404 =301 http://example.com/moved;
        }
        location /ep-rel-url/ {
            error_page 404 =302 /elsewhere;
        }
        location /ep-500/ {
            error_page 500 502 503 504 /errors/50x.html;
            return 500;
        }
        location /ep-internal/ {
            error_page 404 /internal/secret.txt;
        }
        location /ep-418/ {
            error_page 418 =200 /errors/generic.html;
            return 418;
        }
        location /ep-missing/ {
            error_page 404 /no/such/page.html;
        }
        location /ep-loop/ {
            error_page 404 /ep-loop/again;
        }
        location /ep-403/ {
            error_page 403 /errors/generic.html;
            alias %WWW%/noindex/;
        }
        location /ep-head/ {
            error_page 404 /errors/404.html;
        }
    }
"""

CASES = [
    # exact, prefix, ^~, regex, caseless regex, nested
    Case("exact-root", req("/"), {"status": 200, "body": b"exact root\n"}),
    Case("prefix-root-file", req("/a.txt"), {"status": 200}),
    Case("exact-hit", req("/exact"), {"body": b"exact match\n"}),
    Case("exact-miss-prefix", req("/exactly"), {"body": b"prefix of exact: /exactly\n"}),
    Case("exact-with-args", req("/exact?x=1"), {"body": b"exact match\n"}),
    Case("exact-trailing-slash", req("/exact/"), {"body": b"prefix of exact: /exact/\n"}),
    Case("exact-dir-name", req("/both/"), {"body": b"exact both/\n"}),
    Case("exact-dir-name-file", req("/both/index.html"), {"status": 200}),
    Case("noregex-beats-regex", req("/images/logo.gif"), {"body_contains": b"noregex images"}),
    Case("noregex-sub", req("/images/sub/deep.png"), {"body_contains": b"noregex"}),
    Case("regex-over-prefix", req("/dir/x.png"), {"body": b"regex image: png /dir/x.png\n"}),
    Case("regex-case-sensitive-miss", req("/image.JPG"), {"status": 200}),
    Case("regex-caseless", req("/php/x.php"), {"body": b"caseless php: /php/x.php\n"}),
    Case("regex-caseless-upper", req("/php/X.PhP"), {"body_contains": b"caseless"}),
    Case("regex-named-captures", req("/re/abc/42"), {"body": b"word=abc num=42 one=abc\n"}),
    Case("regex-no-match-404", req("/re/ABC/42"), {"status": 404}),
    Case("regex-first-wins", req("/order/xyz"), {"body": b"first regex\n"}),
    Case("longest-prefix", req("/longer/prefix/x"), {"body": b"longest prefix\n"}),
    Case("shorter-prefix", req("/longer/pre"), {"body": b"shorter prefix\n"}),
    Case("nested-regex", req("/docs/pic.jpg"), {"body_contains": b"nested regex in docs"}),
    Case("nested-regex-before-outer", req("/docs/x.png"), {"body_contains": b"regex image"}),
    Case("nested-prefix", req("/docs/inner/zzz"), {"body": b"nested prefix\n"}),
    Case("doubly-nested-regex", req("/docs/inner/abc.txt"), {"body": b"doubly nested abc\n"}),
    Case("nested-parent-static", req("/docs/readme.txt"), {"status": 200}),
    Case("nested-in-noregex", req("/static/site.css"), {"body_contains": b"regex nested in ^~"}),
    Case("noregex-no-outer-regex", req("/static/logo.png"), {"status": 404}),
    Case("normalized-dotdot", req("/docs/../exact"), {"body": b"exact match\n"}),
    Case("normalized-dot", req("/./exact"), {"body": b"exact match\n"}),
    Case("normalized-slashes", req("//exact"), {"body": b"exact match\n"}),
    Case("normalized-encoded", req("/%65xact"), {"body": b"exact match\n"}),
    # named locations through try_files
    Case("try-named-hit", req("/tf/"), {"status": 200}),
    Case("try-named-fallback", req("/tf/nothing?q=1"),
         {"body": b"named fallback for /tf/nothing args=q=1\n"}),
    # internal
    Case("internal-direct-404", req("/internal/secret.txt"), {"status": 404}),
    Case("internal-via-error-page", req("/ep-internal/missing"), {"status": 404,
                                                                    "body": b"internal only\n"}),
    # return
    Case("return-200-text", req("/ret/200"), {"status": 200, "header:content-type":
                                              "application/octet-stream"}),
    Case("return-200-html-ext", req("/ret/200.html"), {"header:content-type": "text/html"}),
    Case("return-200-empty", req("/ret/200-empty"), {"status": 200}),
    Case("return-204", req("/ret/204"), {"status": 204}),
    Case("return-204-text", req("/ret/204-text")),
    Case("return-404", req("/ret/404"), {"status": 404}),
    Case("return-404-text", req("/ret/404-text"), {"body": b"custom 404 text\n"}),
    Case("return-403", req("/ret/403"), {"status": 403}),
    Case("return-410", req("/ret/410"), {"status": 410}),
    Case("return-418", req("/ret/418"), {"status": 418}),
    Case("return-429", req("/ret/429"), {"status": 429}),
    Case("return-500", req("/ret/500"), {"status": 500}),
    Case("return-503", req("/ret/503"), {"status": 503}),
    Case("return-599-text", req("/ret/999"), {"status": 599}),
    Case("return-301-relative", req("/ret/301-rel"),
         {"status": 301, "header:location": "http://localhost:%PORT%/target/path"}),
    Case("return-301-relative-no-host", req("/ret/301-rel", version="HTTP/1.0", host=None)),
    Case("return-301-relative-args", req("/ret/301-rel-args")),
    Case("return-302-absolute", req("/ret/302-abs"),
         {"status": 302, "header:location": "http://example.com/abs"}),
    Case("return-303", req("/ret/303"), {"status": 303}),
    Case("return-307", req("/ret/307"), {"status": 307}),
    Case("return-308", req("/ret/308"), {"status": 308}),
    Case("return-bare-url", req("/ret/bare-url"), {"status": 302}),
    Case("return-var-url", req("/ret/var-url?z=9", host="Example.COM:1234"),
         {"header:location": "http://example.com/ret/var-url?z=9"}),
    Case("return-301-not-a-url", req("/ret/301-text-only")),
    Case("return-444", req("/ret/444"), {"closed": True, "statuses": ()}),
    Case("return-444-pipelined", req("/a.txt") + req("/ret/444") + req("/a.txt"),
         {"closed": True, "statuses": (200,)}),
    Case("return-vars", req("/ret/vars?x=%41b&y", host="Host.Example"),
         {"status": 200}),
    Case("return-json-ext", req("/ret/200-json.json"),
         {"header:content-type": "application/json"}),
    Case("return-head", req("/ret/200", method="HEAD")),
    Case("return-post", req("/ret/200", method="POST", body=b"abc")),
    # error_page
    Case("error-page-uri", req("/ep/missing"), {"status": 404, "body":
                                                b"<p>custom not found</p>\n"}),
    Case("error-page-code", req("/ep-code/missing"), {"status": 200}),
    Case("error-page-eq-target-status", req("/ep-eq/missing"), {"status": 404,
                                                                 "body": b"custom 404 text\n"}),
    Case("error-page-eq-ok", req("/ep-eq-ok/missing"), {"status": 200}),
    Case("error-page-named", req("/ep-named/missing?a=b"),
         {"status": 200, "body": b"named handler saw /ep-named/missing\n"}),
    Case("error-page-named-code", req("/ep-named-code/missing"), {"status": 410}),
    Case("error-page-url", req("/ep-url/missing"),
         {"status": 302, "header:location": "http://example.com/notfound"}),
    Case("error-page-url-301", req("/ep-url301/missing"), {"status": 301}),
    # "=302 /uri" is still an internal redirect; the missing target answers its own 404
    Case("error-page-relative-url", req("/ep-rel-url/missing"), {"status": 404}),
    Case("error-page-500", req("/ep-500/x"), {"status": 500,
                                               "body": b"<p>custom server error</p>\n"}),
    Case("error-page-return-418", req("/ep-418/x"), {"status": 200}),
    Case("error-page-target-missing", req("/ep-missing/x"), {"status": 404}),
    Case("error-page-loop", req("/ep-loop/x"), {"status": 404}),
    Case("error-page-403-dir", req("/ep-403/"), {"status": 403}),
    Case("error-page-head", req("/ep-head/missing", method="HEAD"), {"status": 404}),
    Case("error-page-post", req("/ep/missing", method="POST", body=b"x=1"), {"status": 404}),
    Case("error-page-found-file", req("/ep/"), {"status": 404}),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_locations(pair, case: Case) -> None:  # type: ignore[no-untyped-def]
    compare(pair, case)
