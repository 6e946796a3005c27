"""`halb nginx -t` against `nginx -t` for the rewrite and referer modules: the same broken
configurations give the same message (file:line where nginx gives one), valid ones load in both.
Uses test_config_errors.py's runner (nginx -t -q on a fresh directory per case)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config_errors import Case, _write, halb_says, nginx_says

pytestmark = pytest.mark.peer


def _srv(body: str) -> str:
    return "events {}\nhttp {\n server {\n  listen 8080;\n  " + body + "\n }\n}\n"


def _loc(body: str) -> str:
    return _srv("location / {\n   " + body + "\n  }")


BROKEN: list[Case] = [(name, text, {}, "") for name, text in [
    # if: conditions
    ("if-unknown-var", _srv("if ($nope) { }")),
    ("if-no-paren", _srv("if a { }")),
    ("if-bare-word", _srv("if (a) { }")),
    ("if-empty", _srv("if () { }")),
    ("if-empty-spaced", _srv("if ( ) { }")),
    ("if-dollar-only", _srv("if ($) { }")),
    ("if-missing-value", _srv("if ($uri = ) { }")),
    ("if-double-eq", _srv("if ($uri == a) { }")),
    ("if-three-words", _srv("if ($uri = a b) { }")),
    ("if-unclosed", _srv("if ($uri { }")),
    ("if-double-open", _srv("if (($uri) { }")),
    ("if-glued-op", _srv("if ($uri~a) { }")),
    ("if-regex-missing", _srv("if ($uri ~) { }")),
    ("if-bad-regex", _srv('if ($uri ~ "(") { }')),
    ("if-bad-regex-caseless", _loc("if ($uri !~* a[) { }")),
    ("if-file-no-path", _srv("if (-f) { }")),
    ("if-file-bad-op", _srv("if (-q $uri) { }")),
    ("if-file-bad-neg-op", _srv("if (!-q $uri) { }")),
    ("if-file-extra", _srv("if (-f $uri $x) { }")),
    ("if-file-unknown-var", _loc("if (-f $nope) { }")),
    ("if-value-bad-var", _loc("if ($uri = $) { }")),
    ("if-value-bracket", _loc("if ($uri = ${a) { }")),
    ("if-no-block", _srv("if ($uri);")),
    ("if-no-args", _srv("if { }")),
    # what may be inside an if
    ("if-in-if", _srv("if ($uri) { if ($uri) { } }")),
    ("if-listen", _srv("if ($uri) { listen 80; }")),
    ("server-if-root", _srv("if ($uri) { root /x; }")),
    ("location-if-alias", _loc("if ($uri) { alias /y; }")),
    ("location-if-try-files", _loc("if ($uri) { try_files a b; }")),
    ("location-if-default-type", _loc("if ($uri) { default_type text/x; }")),
    ("location-if-location", _loc("if ($uri) { location /x { } }")),
    ("location-if-proxy-uri", _loc("if ($uri) { proxy_pass http://127.0.0.1:1/x; }")),
    ("if-in-http", "events {}\nhttp {\n if ($uri) { }\n}\n"),
    ("location-if-root-twice", _loc("if ($uri) { root /a; root /b; }")),
    # rewrite
    ("rewrite-empty", _srv('rewrite ^ "";')),
    ("rewrite-bad-regex", _srv("rewrite ( /x;")),
    ("rewrite-bad-flag", _srv("rewrite ^ /x foo;")),
    ("rewrite-dollar-end", _srv("rewrite ^ /x$;")),
    ("rewrite-bracket", _srv("rewrite ^ /x${a;")),
    ("rewrite-unknown-var", _loc("rewrite ^ /$nope last;")),
    ("rewrite-one-arg", _srv("rewrite ^;")),
    ("rewrite-four-args", _srv("rewrite ^ /x last y;")),
    ("rewrite-in-http", "events {}\nhttp {\n rewrite ^ /x;\n}\n"),
    ("rewrite-brace-regex", _srv("rewrite ^/a{2}$ /x;")),
    # set, break, return, flags
    ("set-no-dollar", _srv("set x 1;")),
    ("set-builtin", _srv("set $uri /x;")),
    ("set-request-uri", _loc("set $request_uri 1;")),
    ("set-one-arg", _srv("set $a;")),
    ("set-bad-value", _srv("set $a $;")),
    ("break-args", _srv("break x;")),
    ("return-bad-code-in-if", _loc("if ($uri) { return 1000; }")),
    ("rewrite-log-value", _srv("rewrite_log maybe;")),
    ("uninit-warn-value", _srv("uninitialized_variable_warn 2;")),
    ("rewrite-log-main", "rewrite_log on;\nevents {}\n"),
    # valid_referers
    ("referers-duplicate", _srv("valid_referers a.com a.com;")),
    ("referers-duplicate-case", _srv("valid_referers A.com a.com;")),
    ("referers-server-name-dup", _srv("server_name a.com; valid_referers server_names a.com;")),
    ("referers-none-alone", _srv("valid_referers none;")),
    ("referers-blocked-alone", _loc("valid_referers blocked;")),
    ("referers-none-regex", _srv("valid_referers none ~foo;")),
    ("referers-empty", _srv('valid_referers "";')),
    ("referers-bad-wildcard", _srv("valid_referers a*b;")),
    ("referers-star", _srv("valid_referers *;")),
    ("referers-two-stars", _srv("valid_referers *.a.*;")),
    ("referers-empty-regex", _srv("valid_referers ~;")),
    ("referers-bad-regex", _srv("valid_referers ~(;")),
    ("referers-head-and-dot", _srv("valid_referers *.a.com .a.com;")),
    ("referers-dot-and-exact", _srv("valid_referers .a.com a.com;")),
    ("referers-uri-twice", _srv("valid_referers a.com/x a.com/y;")),
    ("referers-in-if", _loc("if ($uri) { valid_referers a.com; }")),
    ("referers-in-http", "events {}\nhttp {\n valid_referers a.com;\n}\n"),
    # seed 001's snippet, as written in the notes
    ("seed001-if-no-space", _srv("location / {\n    \n    if(!request_filename){\n"
                                 "        return 503;\n\t}\n    \n}")),
]]

VALID: list[Case] = [(name, text, {}, "") for name, text in [
    ("all-forms", _srv(
        "set $a 1; set $args x=1; set $limit_rate 1; set $http_x 1; set $1 x;\n"
        "  rewrite ^/a/(.*)$ /b/$1; rewrite ^ /c? last; rewrite ^ /d break;\n"
        "  rewrite ^ http://x/$1 ; rewrite ^ /e redirect; rewrite ^ /f permanent;\n"
        "  rewrite (?i)^/G /g; rewrite_log on; uninitialized_variable_warn off;\n"
        "  if ($a) { set $b 2; rewrite ^ /h; break; return 404; rewrite_log off; }\n"
        "  if ( $a ) { } if ($a = 1) { } if ($a != \"x y\") { } if ($uri ~ ^/(?<n>x)) { }\n"
        "  if ($uri ~* x) { } if ($uri !~ x) { } if ($uri !~* x) { } if (-f $uri) { }\n"
        "  if (!-f $uri) { } if (-d /tmp) { } if (!-d /) { } if (-e $n) { } if (!-e x) { }\n"
        "  if (-x x) { } if (!-x x) { } if \"($a)\" { }\n"
        "  location / { if ($a) { root /x; proxy_pass http://127.0.0.1:1; add_header X 1;\n"
        "   error_page 404 /x; access_log off; return 200; } try_files $uri =404; }")),
    ("referers", _srv(
        "server_name a.test *.b.test ~^c(\\d+)$ .d.test;\n"
        "  valid_referers none blocked server_names x.com *.y.com .z.com w.* ~\\.q\\.\n"
        "   u.com/path/ *.v.com/p;\n"
        "  valid_referers more.com;\n"
        "  location / { valid_referers other.com; if ($invalid_referer) { return 403; } }\n"
        "  location /x { if ($invalid_referer) { return 404; } }")),
    ("referer-var-without-directive", _loc("if ($invalid_referer) { return 403; }")),
    ("set-before-use", _loc("return 200 $late;") + "\n"),
]]
VALID[-1] = ("set-after-use", _srv("location /a { return 200 $late; }\n"
                                   "  location /b { set $late 1; }"), {}, "")


def _ids(cases: list[Case]) -> list[str]:
    return [c[0] for c in cases]


@pytest.mark.parametrize("case", BROKEN, ids=_ids(BROKEN))
def test_rewrite_config_errors(case: Case, nginx_binary: str, tmp_path: Path) -> None:
    conf = _write(tmp_path, case)
    expected = nginx_says(nginx_binary, tmp_path, conf, case[3])
    assert expected is not None, "nginx accepted this configuration"
    assert halb_says(tmp_path, conf, case[3]) == expected


@pytest.mark.parametrize("case", VALID, ids=_ids(VALID))
def test_rewrite_configs_that_load(case: Case, nginx_binary: str, tmp_path: Path) -> None:
    conf = _write(tmp_path, case)
    assert nginx_says(nginx_binary, tmp_path, conf, case[3]) is None
    assert halb_says(tmp_path, conf, case[3]) is None
