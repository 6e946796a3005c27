"""The rewrite module against nginx: rewrite (every flag, captures, args), set, if (every
condition, an if's own configuration), break, return inside scripts, the server-level phase, the
post-rewrite location search and its cycle limit, rewrite with proxy_pass; rewrite_log lines."""

from __future__ import annotations

import re

import pytest
from harness import Case, Pair, compare, ids, req

pytestmark = pytest.mark.peer

BACKENDS = ["echo"]

CONFIG = r"""
    types { text/html html; text/plain txt; }
    default_type application/octet-stream;
    rewrite_log on;

    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        root %WWW%;

        location /show { return 200 "show uri=$uri args=$args is_args=$is_args 1=$1\n"; }
        location /show2 { return 200 "show2 uri=$uri args=$args\n"; }

        # flags
        location /f/none/ { rewrite ^/f/none/(.*)$ /show/$1; return 200 "went on: $uri\n"; }
        location /f/chain/ { rewrite ^/f/chain/(.*)$ /show/$1; rewrite ^/show/(.*)$ /show2/$1; }
        location /f/last/ { rewrite ^/f/last/(.*)$ /show/$1 last; return 200 "not here\n"; }
        location /f/break/ { rewrite ^/f/break/(.*)$ /docs/$1 break; return 200 "not here\n"; }
        location /f/redirect/ { rewrite ^/f/redirect/(.*)$ /show/$1 redirect; }
        location /f/permanent/ { rewrite ^/f/permanent/(.*)$ /show/$1 permanent; }
        location /f/http/ { rewrite ^/f/http/(.*)$ http://example.com/$1; }
        location /f/https/ { rewrite ^/f/https/(.*)$ https://example.com/$1 permanent; }
        location /f/scheme/ { rewrite ^/f/scheme/(.*)$ $scheme://$host/x/$1; }
        location /f/http-last/ { rewrite ^ http://example.com/l last; }
        location /f/nomatch/ { rewrite ^/nothing /show; return 200 "no match $uri\n"; }
        location /f/cycle/ { rewrite ^ /f/cycle/again last; }
        location /f/empty/ { rewrite ^/f/empty/(.*)$ $1 last; }
        location /f/caseless/ { rewrite (?i)^/F/CASELESS/(.*)$ /show/$1 last; }
        location /f/caseful/ { rewrite ^/F/CASEFUL/ /show last; return 200 "caseful\n"; }
        location /f/internal/ { rewrite ^ /internal/secret.txt last; }

        # args
        location /a/keep/ { rewrite ^/a/keep/(.*)$ /show/$1 last; }
        location /a/drop/ { rewrite ^/a/drop/(.*)$ /show/$1? last; }
        location /a/new/ { rewrite ^/a/new/(.*)$ /show?cap=$1 last; }
        location /a/new-drop/ { rewrite ^/a/new-drop/(.*)$ /show?cap=$1? last; }
        location /a/redir/ { rewrite ^/a/redir/(.*)$ http://example.com/$1?x=1 redirect; }
        location /a/redir-drop/ { rewrite ^/a/redir-drop/(.*)$ http://example.com/$1? redirect; }
        location /a/is-args/ { rewrite ^/a/is-args/(.*)$ /show/$1$is_args$args? last; }
        location /a/two-q/ { rewrite ^/a/two-q/(.*)$ /show?a=$1?b last; }

        # captures and escaping
        location /c/redir/ { rewrite ^/c/redir/(.*)$ http://example.com/$1 redirect; }
        location /c/named/ { rewrite ^/c/named/(?<rest>.*)$ http://example.com/$rest redirect; }
        location /c/many/ {
            rewrite ^/c/many/(a)(b)(c)(d)(e)(f)(g)(h)(i)$ /show?$9$8$7$6$5$4$3$2$1 last;
        }
        location /c/escapes/ { rewrite ^ http://example.com/%41%20%3F%2541/x%zz%4 redirect; }
        location /c/set/ { if ($uri ~ ^/c/set/(.*)$) { set $a $1; } return 200 "a=$a 1=$1\n"; }
        location ~ ^/c/loc/(\w+)/ { rewrite ^ /show/$1 last; }
        location /c/keep/ {
            rewrite ^/c/keep/(\w+) /c/keep2/$1;
            rewrite ^/nomatch(.*) /x;
            return 200 "after a miss: $uri 1=[$1]\n";
        }

        # break
        location /b/plain/ { break; return 200 "not here\n"; }
        location /b/after/ { rewrite ^/b/after/(.*)$ /docs/$1; break; return 200 "not here\n"; }

        # set
        location /s/ {
            set $x "x-$arg_v";
            set $y $x$x;
            set $args "replaced=1";
            return 200 "x=$x y=$y args=$args\n";
        }
        location /s/uninit { return 200 "u=[$never_set]\n"; }
        location /s/decl { set $never_set 1; }
        location /s/nowarn { uninitialized_variable_warn off; return 200 "u=[$never_set]\n"; }

        # if conditions
        location /i/var { if ($arg_a) { return 200 "true\n"; } return 200 "false\n"; }
        location /i/eq { if ($arg_a = "x y") { return 200 "eq\n"; } return 200 "ne\n"; }
        location /i/ne { if ($arg_a != abc) { return 200 "ne\n"; } return 200 "eq\n"; }
        location /i/re { if ($http_x_t ~ ^ab(c+)) { return 200 "m $1\n"; } return 200 "no $1\n"; }
        location /i/rei { if ($http_x_t ~* ^AB(c+)) { return 200 "m $1\n"; } return 200 "no\n"; }
        location /i/nre { if ($http_x_t !~ ^ab) { return 200 "not ab\n"; } return 200 "ab\n"; }
        location /i/nrei { if ($http_x_t !~* ^AB) { return 200 "not ab\n"; } return 200 "ab\n"; }
        location /i/named { if ($arg_p ~ ^(?<first>\w)(?<rest>.*)$) { } return 200 "$first|$rest\n"; }
        location /i/f/ {
            alias %WWW%/;
            if (-f $request_filename) { return 200 "-f\n"; }
            if (-d $request_filename) { return 200 "-d\n"; }
            if (!-e $request_filename) { return 200 "!-e\n"; }
            return 200 "other\n";
        }
        location /i/nf { if (!-f %WWW%$arg_p) { return 200 "!-f\n"; } return 200 "file\n"; }
        location /i/nd { if (!-d %WWW%$arg_p) { return 200 "!-d\n"; } return 200 "dir\n"; }
        location /i/e { if (-e %WWW%$arg_p) { return 200 "-e\n"; } return 200 "none\n"; }
        location /i/x { if (-x %WWW%$arg_p) { return 200 "-x\n"; } return 200 "not -x\n"; }
        location /i/nx { if (!-x %WWW%$arg_p) { return 200 "!-x\n"; } return 200 "-x\n"; }
        location /i/order {
            set $n 0;
            if ($arg_a) { set $n "${n}a"; }
            if ($arg_b) { set $n "${n}b"; }
            return 200 "n=$n\n";
        }
        location /i/rewrite/ {
            if ($arg_go) { rewrite ^/i/rewrite/(.*)$ /show/$1 last; }
            return 200 "stayed\n";
        }
        location /i/return-redirect { if ($arg_to) { return 301 http://example.com/$arg_to; } }

        # an if is a location of its own
        location = /hello.txt { if ($arg_alt) { root %ALIAS%; } }
        location /dir/ {
            try_files /a.txt =404;
            if ($arg_skip) { }
        }
        location /k/headers/ {
            add_header X-Outer 1;
            if ($arg_t) { add_header X-Inner 1; }
            return 200 "headers\n";
        }
        location /k/error/ {
            error_page 404 /errors/404.html;
            if ($arg_own) { error_page 404 /errors/generic.html; }
        }
        location /k/last-if-wins/ {
            if ($arg_a) { add_header X-Which a; }
            if ($arg_b) { add_header X-Which b; }
            return 200 "which\n";
        }

        # rewrite and proxy_pass: break keeps the whole URI, last searches again
        location /p/break/ {
            rewrite ^/p/break/(.*)$ /moved/$1 break;
            proxy_pass http://%B_echo%/up/;
        }
        location /p/plain/ { proxy_pass http://%B_echo%/up/; }
        location /p/last/ { rewrite ^/p/last/(.*)$ /p/plain/$1 last; }
        location /p/if/ {
            if ($arg_x) { rewrite ^ /p/if/changed break; }
            proxy_pass http://%B_echo%;
        }

        location /p/uri-if/ {
            proxy_pass http://%B_echo%/v1/;
            if ($arg_h) { add_header X-If $arg_h; }
        }
        location /p/in-if/ { if ($arg_up) { proxy_pass http://%B_echo%; } }
        location /ret/ {
            if ($arg_close) { return 444; }
            if ($arg_code) { return 418 "teapot $arg_code\n"; }
            set $t "v=$arg_v";
            return 200 "$t\n";
        }
        location /idx/ { alias %WWW%/dir/; rewrite ^/idx/$ /idx/page.html break; }
        location /ep/ { error_page 404 = /show/ep; rewrite ^ /missing/x break; }

        location /chain/ {
            error_page 404 /errors/404.html;
            rewrite ^/chain/\d(.*)$ /chain/$1 last;
        }
        location /pct/ { rewrite ^ /dir/page%2Ehtml break; }

        location @named { rewrite ^ /show/from-named last; }
        location /n/ { try_files /nope @named; }

        location /l/ { rewrite ^/l/(.*)$ /show/$1 last; }
    }

    server {
        listen %ADDR%:%PORT%;
        server_name srv.test;
        root %WWW%;
        set $who server;
        rewrite ^/old/(.*)$ /new/$1 permanent;
        rewrite ^/moved/(.*)$ /show/$1;
        if ($arg_deny) { return 403; }
        if ($http_x_t = stop) { break; }
        rewrite ^/stop-me/ /show/rewritten;
        location /show { return 200 "srv show uri=$uri who=$who\n"; }
        location /stop-me/ { return 200 "not rewritten $uri\n"; }
        location / { return 200 "srv root $uri who=$who\n"; }
    }
"""

S = "srv.test"

CASES = [
    # flags
    Case("flag-none-goes-on", req("/f/none/abc"), {"status": 200, "body": b"went on: /show/abc\n"}),
    Case("flag-none-chain", req("/f/chain/abc?q=1"), {"body": b"show2 uri=/show2/abc args=q=1\n"}),
    Case("flag-last", req("/f/last/abc?q=1"), {"body": b"show uri=/show/abc args=q=1 is_args=? "
                                                      b"1=abc\n"}),
    Case("flag-break", req("/f/break/guide.html"), {"status": 200, "body": b"<p>guide</p>\n"}),
    Case("flag-break-missing", req("/f/break/nothing"), {"status": 404}),
    Case("flag-redirect", req("/f/redirect/abc?q=1"),
         {"status": 302, "header:location": "http://localhost:%PORT%/show/abc?q=1"}),
    Case("flag-permanent", req("/f/permanent/abc"), {"status": 301}),
    Case("flag-redirect-head", req("/f/redirect/abc", method="HEAD"), {"status": 302}),
    Case("flag-redirect-http10", req("/f/redirect/abc", version="HTTP/1.0", host=None)),
    Case("implicit-http", req("/f/http/a/b?c=d"),
         {"status": 302, "header:location": "http://example.com/a/b?c=d"}),
    Case("implicit-https-permanent", req("/f/https/x"),
         {"status": 301, "header:location": "https://example.com/x"}),
    Case("implicit-scheme", req("/f/scheme/y", host="Example.ORG:99"),
         {"header:location": "http://example.org/x/y"}),
    Case("implicit-http-with-last", req("/f/http-last/q"), {"status": 302}),
    Case("no-match-goes-on", req("/f/nomatch/x"), {"body": b"no match /f/nomatch/x\n"}),
    Case("cycle-500", req("/f/cycle/x"), {"status": 500}),
    Case("empty-uri-500", req("/f/empty/"), {"status": 500}),
    Case("uri-without-slash", req("/f/empty/show"), {"status": 404}),
    Case("inline-caseless", req("/f/caseless/x"), {"body_contains": b"show uri=/show/x"}),
    Case("case-sensitive-miss", req("/f/caseful/x"), {"body": b"caseful\n"}),
    Case("rewrite-into-internal", req("/f/internal/x"), {"status": 200,
                                                         "body": b"internal only\n"}),
    # args
    Case("args-kept", req("/a/keep/x?k=v&w"), {"body_contains": b"args=k=v&w "}),
    Case("args-dropped", req("/a/drop/x?k=v"), {"body_contains": b"args= is_args= "}),
    Case("args-new-and-old", req("/a/new/x?k=v"), {"body_contains": b"args=cap=x&k=v "}),
    Case("args-new-only", req("/a/new-drop/x?k=v"), {"body_contains": b"args=cap=x "}),
    Case("args-new-no-old", req("/a/new/x"), {"body_contains": b"args=cap=x "}),
    Case("redirect-args-amp", req("/a/redir/p?k=v"),
         {"header:location": "http://example.com/p?x=1&k=v"}),
    Case("redirect-args-none", req("/a/redir/p"), {"header:location": "http://example.com/p?x=1"}),
    Case("redirect-args-drop", req("/a/redir-drop/p?k=v"),
         {"header:location": "http://example.com/p"}),
    Case("is-args-in-uri", req("/a/is-args/p?k=v"), {"body_contains": b"uri=/show/p?k=v "}),
    Case("is-args-no-args", req("/a/is-args/p"), {"body_contains": b"uri=/show/p args= "}),
    Case("second-question-mark", req("/a/two-q/p?k=v"), {"body_contains": b"args=a=p?b&k=v "}),
    # captures
    Case("capture-redirect-plain", req("/c/redir/a/b"), {"header:location":
                                                         "http://example.com/a/b"}),
    Case("capture-redirect-quoted", req("/c/redir/a%20b+c&d?q=1"),
         {"header:location": "http://example.com/a%20b+c&d?q=1"}),
    Case("capture-redirect-slash", req("/c/redir/a%2fb"), {"header:location":
                                                           "http://example.com/a/b"}),
    Case("capture-redirect-plus-only", req("/c/redir/a+b;c"),
         {"header:location": "http://example.com/a+b;c"}),
    Case("capture-redirect-utf8", req("/c/redir/caf%C3%A9"), {"status": 302}),
    Case("named-capture-redirect", req("/c/named/a%20b"), {"status": 302}),
    Case("nine-captures", req("/c/many/abcdefghi"), {"body_contains": b"args=ihgfedcba "}),
    Case("redirect-unescapes", req("/c/escapes/"), {"status": 302}),
    Case("capture-args-quoted", req("/a/new/a%20b+c"), {"body_contains": b"cap=a%20b%2Bc "}),
    Case("capture-args-plus", req("/a/new/a+b&c"), {"body_contains": b"cap=a%2Bb%26c "}),
    Case("capture-args-dot-segment", req("/a/new/./a%20b"), {"status": 200}),
    Case("set-capture-escaped", req("/c/set/a%20b"), {"body": b"a=a%20b 1=a b\n"}),
    Case("set-capture-plain", req("/c/set/a b"), {"status": 400}),
    Case("set-capture-plus", req("/c/set/a+b"), {"body": b"a=a%2Bb 1=a+b\n"}),
    Case("set-capture-none", req("/c/set/ab"), {"body": b"a=ab 1=ab\n"}),
    # a matching regex without groups leaves no numbered captures (nginx 1.22)
    Case("location-capture-lost", req("/c/loc/word/x"), {"body_contains": b"uri=/show/ "}),
    Case("miss-forgets-captures", req("/c/keep/abc"), {"body": b"after a miss: /c/keep2/abc "
                                                               b"1=[]\n"}),
    # break
    Case("break-plain", req("/b/plain/"), {"status": 404}),
    Case("break-after-rewrite", req("/b/after/guide.html"), {"body": b"<p>guide</p>\n"}),
    # set
    Case("set-values", req("/s/?v=1"), {"body": b"x=x-1 y=x-1x-1 args=replaced=1\n"}),
    Case("set-uninitialized", req("/s/uninit"), {"body": b"u=[]\n"}),
    Case("set-uninitialized-nowarn", req("/s/nowarn"), {"body": b"u=[]\n"}),
    # if
    Case("if-var-empty", req("/i/var"), {"body": b"false\n"}),
    Case("if-var-zero", req("/i/var?a=0"), {"body": b"false\n"}),
    Case("if-var-00", req("/i/var?a=00"), {"body": b"true\n"}),
    Case("if-var-set", req("/i/var?a=x"), {"body": b"true\n"}),
    Case("if-eq-quoted", req("/i/eq?a=x%20y"), {"body": b"ne\n"}),
    Case("if-eq-raw", req("/i/eq?a=x y", version="HTTP/1.0"), {"status": 400}),
    Case("if-ne", req("/i/ne?a=abd"), {"body": b"ne\n"}),
    Case("if-ne-equal", req("/i/ne?a=abc"), {"body": b"eq\n"}),
    Case("if-regex", req("/i/re", headers=[("X-T", "abccc")]), {"body": b"m ccc\n"}),
    Case("if-regex-case", req("/i/re", headers=[("X-T", "ABC")]), {"body": b"no \n"}),
    Case("if-regex-caseless", req("/i/rei", headers=[("X-T", "abC")]), {"body": b"m C\n"}),
    Case("if-not-regex", req("/i/nre", headers=[("X-T", "xab")]), {"body": b"not ab\n"}),
    Case("if-not-regex-match", req("/i/nre", headers=[("X-T", "abx")]), {"body": b"ab\n"}),
    Case("if-not-regex-caseless", req("/i/nrei", headers=[("X-T", "ABx")]), {"body": b"ab\n"}),
    Case("if-not-regex-missing", req("/i/nrei"), {"body": b"not ab\n"}),
    Case("if-named-captures", req("/i/named?p=hello"), {"body": b"h|ello\n"}),
    Case("if-named-captures-miss", req("/i/named?p=%20"), {"body": b"|\n"}),
    Case("if-f-file", req("/i/f/a.txt"), {"body": b"-f\n"}),
    Case("if-d-dir", req("/i/f/dir"), {"body": b"-d\n"}),
    Case("if-f-missing", req("/i/f/none"), {"body": b"!-e\n"}),
    Case("if-not-f", req("/i/nf?p=/a.txt"), {"body": b"file\n"}),
    Case("if-not-f-dir", req("/i/nf?p=/dir"), {"body": b"!-f\n"}),
    Case("if-not-d", req("/i/nd?p=/dir"), {"body": b"dir\n"}),
    Case("if-not-d-file", req("/i/nd?p=/a.txt"), {"body": b"!-d\n"}),
    Case("if-e-file", req("/i/e?p=/a.txt"), {"body": b"-e\n"}),
    Case("if-e-dir", req("/i/e?p=/dir"), {"body": b"-e\n"}),
    Case("if-e-none", req("/i/e?p=/zzz"), {"body": b"none\n"}),
    Case("if-e-link", req("/i/e?p=/link.txt"), {"body": b"-e\n"}),
    Case("if-x-file", req("/i/x?p=/a.txt"), {"body": b"not -x\n"}),
    Case("if-x-dir", req("/i/x?p=/dir"), {"body": b"-x\n"}),
    Case("if-not-x", req("/i/nx?p=/a.txt"), {"body": b"!-x\n"}),
    Case("if-not-x-none", req("/i/nx?p=/zzz"), {"body": b"!-x\n"}),
    Case("if-order-none", req("/i/order"), {"body": b"n=0\n"}),
    Case("if-order-both", req("/i/order?a=1&b=1"), {"body": b"n=0ab\n"}),
    Case("if-order-b", req("/i/order?b=1"), {"body": b"n=0b\n"}),
    Case("if-rewrite-last", req("/i/rewrite/x?go=1"), {"body_contains": b"uri=/show/x "}),
    Case("if-rewrite-not", req("/i/rewrite/x"), {"body": b"stayed\n"}),
    Case("if-return-redirect", req("/i/return-redirect?to=t"),
         {"status": 301, "header:location": "http://example.com/t"}),
    Case("if-false-static", req("/i/return-redirect"), {"status": 404}),
    # an if's configuration
    Case("if-root-outer", req("/hello.txt"), {"status": 404}),
    Case("if-root-inner", req("/hello.txt?alt=1"), {"body": b"from the alias tree\n"}),
    Case("if-try-files-runs", req("/dir/page.html"), {"body": b"hello from a.txt\n"}),
    Case("if-try-files-skipped", req("/dir/page.html?skip=1"), {"body": b"<p>dir page</p>\n"}),
    Case("if-headers-outer", req("/k/headers/"), {"header:x-outer": "1"}),
    Case("if-headers-inner", req("/k/headers/?t=1"), {"header:x-inner": "1",
                                                      "header:x-outer": None}),
    Case("if-error-page-outer", req("/k/error/none"), {"body": b"<p>custom not found</p>\n"}),
    Case("if-error-page-inner", req("/k/error/none?own=1"),
         {"body": b"<p>generic error page</p>\n"}),
    Case("if-last-wins", req("/k/last-if-wins/?a=1&b=1"), {"header:x-which": "b"}),
    Case("if-first-only", req("/k/last-if-wins/?a=1"), {"header:x-which": "a"}),
    # proxy_pass after rewrite
    Case("proxy-break-whole-uri", req("/p/break/x%20y?k=v"), {"status": 200}),
    Case("proxy-plain", req("/p/plain/x%20y?k=v"), {"status": 200}),
    Case("proxy-last", req("/p/last/x?k=v"), {"status": 200}),
    Case("proxy-if-break", req("/p/if/a?x=1"), {"status": 200}),
    Case("proxy-if-false", req("/p/if/a"), {"status": 200}),
    Case("proxy-uri-part-if", req("/p/uri-if/a/b?h=1"), {"status": 200, "header:x-if": "1"}),
    Case("proxy-uri-part-no-if", req("/p/uri-if/a/b"), {"status": 200}),
    Case("proxy-inside-if", req("/p/in-if/a?up=1"), {"status": 200}),
    Case("proxy-inside-if-false", req("/p/in-if/a"), {"status": 404}),
    Case("return-444-in-if", req("/ret/?close=1"), {"closed": True, "statuses": ()}),
    Case("return-text-in-if", req("/ret/?code=7"), {"status": 418}),
    Case("return-after-set", req("/ret/?v=9"), {"body": b"v=9\n"}),
    # '"alias" cannot be used in location "/idx/" where URI was rewritten'
    Case("break-with-alias", req("/idx/"), {"status": 500}),
    Case("error-page-after-break", req("/ep/"), {"body_contains": b"uri=/show/ep "}),
    # ten URI changes, then error_page wants an eleventh
    Case("chain-9-error-page", req("/chain/123456789x"), {"status": 404}),
    Case("chain-10-error-page", req("/chain/1234567890x"), {"status": 500}),
    Case("chain-11", req("/chain/12345678901x"), {"status": 500}),
    Case("internal-uri-not-unescaped", req("/pct/"), {"status": 404}),
    # named location and rewrite
    Case("named-rewrite-last", req("/n/x"), {"body_contains": b"uri=/show/from-named "}),
    # the server-level phase
    Case("server-permanent", req("/old/a?b=c", host=S),
         {"status": 301, "header:location": "http://srv.test:%PORT%/new/a?b=c"}),
    Case("server-rewrite-then-location", req("/moved/z", host=S),
         {"body": b"srv show uri=/show/z who=server\n"}),
    Case("server-if-return", req("/x?deny=1", host=S), {"status": 403}),
    Case("server-set", req("/plain", host=S), {"body": b"srv root /plain who=server\n"}),
    Case("server-break-in-if", req("/stop-me/", host=S, headers=[("X-T", "stop")]),
         {"body": b"not rewritten /stop-me/\n"}),
    Case("server-no-break", req("/stop-me/", host=S), {"body_contains": b"uri=/show/rewritten"}),
    Case("pipelined", req("/f/last/a") + req("/f/redirect/b") + req("/i/var?a=1"),
         {"statuses": (200, 302, 200)}),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_rewrite(pair: Pair, case: Case) -> None:
    compare(pair, case)


_LOG_LINE = re.compile(r"^\S+ \S+ \[(\w+)\] \d+#\d+: \*\d+ (.*?), client: ", re.M)


def test_rewrite_log_and_warnings(pair: Pair) -> None:
    """rewrite_log's notices and the uninitialized-variable warning read as nginx's."""
    marks = {name: srv.error_log_size() for name, srv in pair.servers.items()}
    for case in (Case("log-chain", req("/f/chain/logme")), Case("log-miss", req("/f/nomatch/m")),
                 Case("log-redirect", req("/a/redir/logme?k=v")),
                 Case("log-if", req("/i/re", headers=[("X-T", "abcc")])),
                 Case("log-uninit", req("/s/uninit")), Case("log-nowarn", req("/s/nowarn"))):
        compare(pair, case)
    import time

    deadline = time.monotonic() + 5  # both logs written (a fixed pause flakes under load)
    while True:
        seen = {name: _LOG_LINE.findall(srv.error_log_since(marks[name]))
                for name, srv in pair.servers.items()}
        last = ("warn", 'using uninitialized "never_set" variable')  # of the last cases
        if (seen["halb"] == seen["nginx"] and last in seen["nginx"]) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert seen["halb"] == seen["nginx"]
    assert ("notice", '"^/show/(.*)$" matches "/show/logme"') in seen["nginx"]
    assert ("warn", 'using uninitialized "never_set" variable') in seen["nginx"]
