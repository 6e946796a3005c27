"""`halb nginx -t` against `nginx -t` for the upstream and proxy directives: the same broken
configurations give the same message at the same file:line, the same valid ones load (the
runner is test_config_errors.py's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config_errors import Case, _write, halb_says, nginx_says

pytestmark = pytest.mark.peer

EV = "events {}\n"


def srv(body: str, http: str = "") -> str:
    return EV + "http {\n" + http + "server { listen 127.0.0.1:8080;\n" + body + "\n} }\n"


UP = "upstream up { server 127.0.0.1:9; }\n"

BROKEN: list[Case] = [
    ("redirect-default-before-pass", srv("location / { proxy_redirect default;\n"
                                         " proxy_pass http://up; }", UP), {}, ""),
    ("redirect-default-server-level", srv("proxy_redirect default;", UP), {}, ""),
    ("redirect-default-with-variables", srv("location / { proxy_pass http://$host;\n"
                                            " proxy_redirect default; }"), {}, ""),
    ("redirect-bad-parameter", srv("location / { proxy_pass http://up;\n"
                                   " proxy_redirect sometimes; }", UP), {}, ""),
    ("pass-uri-in-regex", srv("location ~ x { proxy_pass http://up/x; }", UP), {}, ""),
    ("pass-uri-in-named", srv("location @n { proxy_pass http://up/; }", UP), {}, ""),
    ("pass-duplicate", srv("location / { proxy_pass http://up;\n proxy_pass http://up; }", UP),
     {}, ""),
    ("pass-bad-prefix", srv("location / { proxy_pass ftp://up; }", UP), {}, ""),
    ("pass-upstream-with-port", srv("location / { proxy_pass http://up:81; }", UP), {}, ""),
    ("pass-host-not-found", srv("location / { proxy_pass http://no-such-host.invalid; }"),
     {}, ""),
    ("pass-bad-port", srv("location / { proxy_pass http://127.0.0.1:99999; }"), {}, ""),
    ("upstream-duplicate", srv("", UP + UP), {}, ""),
    ("upstream-empty", srv("", "upstream e { }\n"), {}, ""),
    ("upstream-bad-weight", srv("", "upstream w { server 127.0.0.1:9 weight=0; }\n"), {}, ""),
    ("upstream-bad-param", srv("", "upstream w { server 127.0.0.1:9 slow=1; }\n"), {}, ""),
    ("upstream-bad-fail-timeout", srv("", "upstream w { server 127.0.0.1:9 "
                                          "fail_timeout=x; }\n"), {}, ""),
    ("upstream-backup-with-hash", srv("", "upstream h { hash $uri; server 127.0.0.1:9;"
                                          " server 127.0.0.1:10 backup; }\n"), {}, ""),
    ("upstream-keepalive-zero", srv("", "upstream k { server 127.0.0.1:9; keepalive 0; }\n"),
     {}, ""),
    ("upstream-server-outside", srv("server 127.0.0.1:9;"), {}, ""),
    ("http-version-bad", srv("location / { proxy_pass http://up;"
                             " proxy_http_version 2.0; }", UP), {}, ""),
    ("next-upstream-bad", srv("location / { proxy_pass http://up;"
                              " proxy_next_upstream error http_418; }", UP), {}, ""),
    ("buffers-bad", srv("location / { proxy_pass http://up; proxy_buffers x 4k; }", UP),
     {}, ""),
    ("connect-timeout-bad", srv("location / { proxy_pass http://up;"
                                " proxy_connect_timeout forever; }", UP), {}, ""),
    ("set-header-one-arg", srv("location / { proxy_pass http://up;"
                               " proxy_set_header Host; }", UP), {}, ""),
    ("zone-no-size", srv("", "upstream z { zone z; server 127.0.0.1:9; }\n"), {}, ""),
    ("zone-too-small", srv("", "upstream z { zone z 32767; server 127.0.0.1:9; }\n"), {}, ""),
    ("zone-zero", srv("", "upstream z { zone z 0; server 127.0.0.1:9; }\n"), {}, ""),
    ("zone-bad-size", srv("", "upstream z { zone z 1g; server 127.0.0.1:9; }\n"), {}, ""),
    ("zone-empty-name", srv("", 'upstream z { zone "" 64k; server 127.0.0.1:9; }\n'), {}, ""),
    ("zone-three-args", srv("", "upstream z { zone z 64k x; server 127.0.0.1:9; }\n"), {}, ""),
    ("zone-size-conflict", srv("", "upstream a { zone z 64k; server 127.0.0.1:9; }\n"
                                   "upstream b { zone z 128k; server 127.0.0.1:10; }\n"), {}, ""),
    ("zone-in-http", srv("", "zone z 64k;\n"), {}, ""),
]

VALID: list[Case] = [
    ("proxy-everything", srv(
        "proxy_set_header X-Real-IP $remote_addr; proxy_http_version 1.1;\n"
        "location / { proxy_pass http://up; proxy_redirect default;\n"
        " proxy_redirect http://a/ /b/; proxy_next_upstream error timeout http_502"
        " non_idempotent; proxy_next_upstream_tries 3; proxy_next_upstream_timeout 5s;\n"
        " proxy_hide_header X-A; proxy_pass_header Server; proxy_buffering off;"
        " proxy_buffers 4 8k; proxy_buffer_size 8k; proxy_bind 127.0.0.1;"
        " proxy_intercept_errors on; proxy_ignore_client_abort on; }\n"
        "location /v { proxy_pass http://$host$request_uri; proxy_redirect off; }\n"
        "location ~ r { proxy_pass http://up; }",
        UP + "upstream k { server 127.0.0.1:9 weight=2 max_fails=3 fail_timeout=5s;"
        " server 127.0.0.1:10 backup; server 127.0.0.1:11 down; keepalive 8;"
        " keepalive_requests 100; keepalive_timeout 30s; keepalive_time 1h; }\n"
        "upstream lc { least_conn; server 127.0.0.1:9; server 127.0.0.1:10 backup; }\n"),
     {}, ""),
    ("upstream-zones", srv(
        "location / { proxy_pass http://a; }",
        "upstream a { zone z 64k; zone z 64k; server 127.0.0.1:9 max_conns=1; }\n"
        "upstream b { zone z; least_conn; server 127.0.0.1:9; server 127.0.0.1:10; }\n"
        "upstream c { server 127.0.0.1:9; zone y; zone x 32k; }\n"
        "upstream d { hash $uri consistent; zone y 1m; server 127.0.0.1:9; }\n"),
     {}, ""),
]


def _ids(cases: list[Case]) -> list[str]:
    return [c[0] for c in cases]


@pytest.mark.parametrize("case", BROKEN, ids=_ids(BROKEN))
def test_broken_proxy_config(case: Case, nginx_binary: str, tmp_path: Path) -> None:
    conf = _write(tmp_path, case)
    expected = nginx_says(nginx_binary, tmp_path, conf, case[3])
    assert expected is not None, "nginx accepted this configuration"
    assert halb_says(tmp_path, conf, case[3]) == expected


@pytest.mark.parametrize("case", VALID, ids=_ids(VALID))
def test_valid_proxy_config(case: Case, nginx_binary: str, tmp_path: Path) -> None:
    conf = _write(tmp_path, case)
    assert nginx_says(nginx_binary, tmp_path, conf, case[3]) is None
    assert halb_says(tmp_path, conf, case[3]) is None
