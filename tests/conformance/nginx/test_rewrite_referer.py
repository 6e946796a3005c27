"""valid_referers and $invalid_referer against nginx, with seed 002 §2-1 (anti-hotlinking) as
written, in a location and at server level, and the seed's if/return snippets."""

from __future__ import annotations

import pytest
from harness import Case, Pair, compare, ids, req

pytestmark = pytest.mark.peer

CONFIG = r"""
    types { text/html html; text/plain txt; image/gif gif; image/jpeg jpg; }
    default_type application/octet-stream;

    server {
        listen %ADDR%:%PORT%;
        server_name localhost ~^re(\d+)\.test$;
        root %WWW%;

        # seed 002 2-1, as written, guarding the images
        location /images/ {
            # 对源站点验证
            valid_referers *.bravedawn.cn;
            #非法引入会进入下方判断
            if ($invalid_referer) {
                return 404;
            }
        }
        # seed 001's intent (its "if(!request_filename)" does not parse, see test_rewrite_config)
        location /seed001/ {
            alias %WWW%/;
            if (!-f $request_filename) {
                return 503;
            }
        }

        location /r/ {
            valid_referers none blocked server_names *.example.com .dot.com
                           example.org/galleries/ www.ex.* ~\.google\. ~^anc$ ~/end$;
            return 200 "[$invalid_referer]\n";
        }
        location /strict/ {
            valid_referers example.com;
            return 200 "[$invalid_referer]\n";
        }
        location /inherit/ {
            return 200 "[$invalid_referer]\n";
        }
        location /none/ {
            return 200 "[$invalid_referer]\n";
            location /none/own/ {
                valid_referers ~^own\.;
                return 200 "own [$invalid_referer]\n";
            }
        }
    }

    server {
        listen %ADDR%:%PORT%;
        server_name srv.test;
        root %WWW%;
        # the seed's lines at server level: the whole site
        valid_referers *.bravedawn.cn;
        if ($invalid_referer) {
            return 404;
        }
        location /inherit/ { return 200 "[$invalid_referer]\n"; }
    }
"""


def _ref(path: str, referer: str | None, host: str = "localhost") -> bytes:
    return req(path, host=host, headers=[("Referer", referer)] if referer is not None else [])


REFERERS = [
    ("none", None, ""), ("server-name", "http://localhost/x", ""),
    ("server-name-port", "http://LOCALHOST:8080/x", ""),
    ("server-regex", "http://re12.test/x", ""), ("server-regex-https", "https://re7.test", ""),
    ("server-regex-miss", "http://re12.testx/", "1"), ("head", "http://a.example.com/", ""),
    ("head-deep", "http://a.b.example.com/p", ""), ("head-not-bare", "http://example.com/", "1"),
    ("dot-bare", "http://dot.com", ""), ("dot-sub", "http://x.dot.com/", ""),
    ("uri-prefix", "http://example.org/galleries/x", ""),
    ("uri-short", "http://example.org/galleries", "1"),
    ("uri-other", "http://example.org/other", "1"), ("tail", "http://www.ex.co.uk/", ""),
    ("tail-bare", "http://www.ex/", "1"), ("regex", "http://www.google.com/", ""),
    ("regex-https", "https://www.google.com/", ""), ("regex-anchor", "https://anc", ""),
    ("regex-anchor-path", "http://anc/x", "1"), ("regex-rest", "http://zz.org/a/end", ""),
    ("blocked-ftp", "ftp://a.example.com/", ""), ("blocked-text", "blocked-thing", ""),
    ("blocked-short", "http://x", ""), ("short-http", "http://i.ru", "1"),
    ("upper-scheme", "HTTP://A.EXAMPLE.COM/", ""), ("empty", "", ""),
    ("long-host", "http://" + "a" * 300 + ".example.com/", "1"),
]

CASES = [Case(f"referer-{name}", _ref("/r/", ref), {"body": f"[{want}]\n".encode()})
         for name, ref, want in REFERERS]
CASES += [
    Case("strict-none", _ref("/strict/", None), {"body": b"[1]\n"}),
    Case("strict-blocked", _ref("/strict/", "junk"), {"body": b"[1]\n"}),
    Case("strict-ok", _ref("/strict/", "https://example.com/a"), {"body": b"[]\n"}),
    Case("no-valid-referers", _ref("/inherit/", "http://evil.test/"), {"body": b"[]\n"}),
    Case("nested-own", _ref("/none/own/", "http://own.test/"), {"body": b"own []\n"}),
    Case("nested-own-bad", _ref("/none/own/", "http://x.test/"), {"body": b"own [1]\n"}),
    # seed 002 2-1
    Case("seed-hotlink", _ref("/images/logo.gif", "http://evil.example/page"), {"status": 404}),
    Case("seed-own-site", _ref("/images/logo.gif", "https://www.bravedawn.cn/shop/"),
         {"status": 200}),
    Case("seed-no-referer", _ref("/images/logo.gif", None), {"status": 404}),
    Case("seed-bare-domain", _ref("/images/logo.gif", "http://bravedawn.cn/"), {"status": 404}),
    Case("seed-missing-image", _ref("/images/none.gif", "http://a.bravedawn.cn/"),
         {"status": 404}),
    Case("seed-head", req("/images/logo.gif", method="HEAD",
                          headers=[("Referer", "http://x.bravedawn.cn/")]), {"status": 200}),
    Case("seed-server-hotlink", _ref("/a.txt", "http://evil.example/", "srv.test"),
         {"status": 404}),
    Case("seed-server-ok", _ref("/a.txt", "http://m.bravedawn.cn/", "srv.test"),
         {"status": 200}),
    Case("seed-server-inherit", _ref("/inherit/", "http://m.bravedawn.cn/", "srv.test"),
         {"body": b"[]\n"}),
    Case("seed001-file", req("/seed001/a.txt"), {"status": 200}),
    Case("seed001-missing", req("/seed001/none"), {"status": 503}),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_referers(pair: Pair, case: Case) -> None:
    compare(pair, case)
