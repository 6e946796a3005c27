"""The rewrite module through the request phases (l7/handler.py + l7/rewrite.py), without
sockets: a configuration is loaded, a Request is filled in as the connection would, and
handler.handle() answers. Expected values are nginx 1.22.1's (see
tests/conformance/nginx/test_rewrite.py for the side-by-side runs); these pin the engine's
own rules: statement order, captures, args, escaping flags, break, the post-rewrite search and
its cycle limit, an if's configuration, uninitialized variables and rewrite_log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from halb.config.errors import ConfigError
from halb.config.nginx import load_text
from halb.config.rewrite_model import Condition, IfOp, RewriteOp, SetOp
from halb.l7 import handler
from halb.l7.request import Request
from halb.l7.response import Response


class FakeConn:
    remote_addr = "127.0.0.9"
    remote_port = 40000
    server_addr = "127.0.0.1"
    server_port = 8080
    number = 1
    requests = 1
    pipelined = False

    def __init__(self) -> None:
        self.logged: list[tuple[str, str]] = []

    def log_error(self, level: str, message: str, r: Request) -> None:
        self.logged.append((level, message))


def config(body: str, root: str = "/nonexistent") -> Any:
    conf = load_text("events {}\nhttp {\n rewrite_log on;\n server {\n listen 8080;\n"
                     f" server_name localhost;\n root {root};\n{body}\n }}\n}}\n")
    assert conf.http is not None
    return conf.http.servers[0]


def ask(server: Any, target: str, headers: dict[str, str] | None = None) -> tuple[Any, Request]:
    r = Request(FakeConn(), 0.0)
    r.target = target
    path, q, args = target.partition("?")
    from urllib.parse import unquote

    r.uri = unquote(path, errors="surrogateescape")
    r.args = args if q else None
    r.headers = {k.lower(): v for k, v in (headers or {}).items()}
    r.header_list = list((headers or {}).items())
    r.host = "localhost"
    r.server = server
    r.conf = server.conf
    r.request_line = f"GET {target} HTTP/1.1"
    return handler.handle(r), r


def body(out: Any) -> str:
    assert isinstance(out, Response), out
    return bytes(out.body).decode()


SHOW = 'location /show { return 200 "uri=$uri args=$args 1=$1"; }\n'


def test_a_rewrite_without_flag_goes_on_and_last_searches_again() -> None:
    srv = config(SHOW + 'location /a/ { rewrite ^/a/(.*)$ /show/$1; return 200 "went on $uri"; }'
                 ' location /b/ { rewrite ^/b/(.*)$ /show/$1 last; return 200 "no"; }')
    assert body(ask(srv, "/a/x")[0]) == "went on /show/x"
    out, r = ask(srv, "/b/x?q=1")
    assert body(out) == "uri=/show/x args=q=1 1=x"
    assert r.uri_changes == 1 and r.internal


def test_args_rules() -> None:
    srv = config(SHOW + "location /k/ { rewrite ^/k/(.*)$ /show?c=$1 last; }"
                 " location /d/ { rewrite ^/d/(.*)$ /show?c=$1? last; }"
                 " location /e/ { rewrite ^ /show? last; }")
    assert body(ask(srv, "/k/a%20b?o=1")[0]) == "uri=/show args=c=a%20b&o=1 1=a b"
    assert body(ask(srv, "/d/ab?o=1")[0]) == "uri=/show args=c=ab 1=ab"
    assert body(ask(srv, "/e/?o=1")[0]) == "uri=/show args= 1="


def test_redirects() -> None:
    srv = config("location /r/ { rewrite ^/r/(.*)$ http://ex.com/$1?x=1; }"
                 " location /p/ { rewrite ^/p/(.*)$ /to/$1? permanent; }")
    out, _ = ask(srv, "/r/a+b?q=1")
    assert (out.status, out.location) == (302, "http://ex.com/a+b?x=1&q=1")
    out, _ = ask(srv, "/p/z?q=1")
    assert (out.status, out.location) == (301, "http://localhost:8080/to/z")


def test_cycle_limit() -> None:
    srv = config("location /loop { rewrite ^ /loop last; }")
    out, r = ask(srv, "/loop")
    assert out.status == 500 and r.uri_changes == 11
    assert ("error", 'rewrite or internal redirection cycle while processing "/loop"') \
        in r.conn.logged


def test_break_keeps_the_uri_and_clears_valid_location() -> None:
    srv = config("location /x/ { rewrite ^/x/(.*)$ /y/$1; break; return 200 no; }")
    out, r = ask(srv, "/x/z")
    assert out.status == 404 and r.uri == "/y/z"
    assert not r.valid_location and not r.uri_changed


def test_set_and_uninitialized_variables() -> None:
    srv = config('location /s { set $a "[$arg_v]"; set $b $a$a; return 200 "$b $never"; }'
                 " location /d { set $never 1; }"
                 ' location /q { uninitialized_variable_warn off; return 200 "[$never]"; }')
    out, r = ask(srv, "/s?v=1")
    assert body(out) == "[1][1] "
    assert ("warn", 'using uninitialized "never" variable') in r.conn.logged
    out, r = ask(srv, "/q")
    assert body(out) == "[]" and not any(level == "warn" for level, _ in r.conn.logged)


def test_captures_in_set_are_escaped_until_a_rewrite_matched() -> None:
    srv = config('location /c/ { if ($uri ~ ^/c/(.*)$) { set $a $1; }'
                 ' rewrite ^/c/(.*)$ /c2/$1; set $b $1; return 200 "$a|$b"; }')
    assert body(ask(srv, "/c/a%20b")[0]) == "a%20b|a b"
    assert body(ask(srv, "/c/a+b")[0]) == "a%2Bb|a+b"
    assert body(ask(srv, "/c/ab")[0]) == "ab|ab"


def test_conditions(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "d").mkdir()
    srv = config('location /v { if ($arg_a) { return 200 t; } return 200 f; }'
                 ' location /e { if ($arg_a = "1") { return 200 eq; } return 200 ne; }'
                 ' location /r { if ($http_x ~* ^A(b)) { return 200 "m$1"; } return 200 "n$1"; }'
                 ' location /n { if ($http_x !~ ^a) { return 200 yes; } return 200 no; }'
                 f' location /f {{ if (-f {tmp_path}$arg_p) {{ return 200 f; }}'
                 f' if (-d {tmp_path}$arg_p) {{ return 200 d; }}'
                 f' if (!-e {tmp_path}$arg_p) {{ return 200 none; }} return 200 other; }}',
                 root=str(tmp_path))
    assert [body(ask(srv, t)[0]) for t in ("/v", "/v?a=0", "/v?a=00", "/v?a=x")] == \
        ["f", "f", "t", "t"]
    assert [body(ask(srv, t)[0]) for t in ("/e?a=1", "/e?a=01")] == ["eq", "ne"]
    assert body(ask(srv, "/r", {"X": "aBc"})[0]) == "mB"
    assert body(ask(srv, "/r", {"X": "zz"})[0]) == "n"  # a miss forgets the captures
    assert body(ask(srv, "/n", {"X": "ba"})[0]) == "yes"
    assert [body(ask(srv, f"/f?p=/{p}")[0]) for p in ("f.txt", "d", "zz")] == \
        ["f", "d", "none"]


def test_an_if_gives_its_configuration() -> None:
    srv = config('location /i/ { error_page 404 /a; if ($arg_x) { error_page 404 /b; } }'
                 ' location = /a { return 200 A; } location = /b { return 200 B; }')
    assert body(ask(srv, "/i/none")[0]) == "A"
    assert body(ask(srv, "/i/none?x=1")[0]) == "B"
    script = srv.locations[0].conf.rewrite
    assert isinstance(script[0], IfOp) and script[0].conf.error_pages[404].uri.raw == "/b"


def test_server_level_phase_runs_before_location_search() -> None:
    srv = config('set $who srv; rewrite ^/old/(.*)$ /new/$1; if ($arg_deny) { return 403; }'
                 ' location /new/ { return 200 "new $uri $who"; }')
    assert body(ask(srv, "/old/x")[0]) == "new /new/x srv"
    assert ask(srv, "/old/x?deny=1")[0].status == 403


def test_rewrite_log_lines() -> None:
    srv = config(SHOW + "location /l/ { rewrite ^/nope /x; rewrite ^/l/(.*)$ /show/$1 last; }")
    _, r = ask(srv, "/l/z")
    assert r.conn.logged == [
        ("notice", '"^/nope" does not match "/l/z"'),
        ("notice", '"^/l/(.*)$" matches "/l/z"'),
        ("notice", 'rewritten data: "/show/z", args: ""'),
    ]


def test_compiled_forms() -> None:
    srv = config("location / { set $x 1; if ($x) { rewrite ^/(a)$ /b?c=$1? break; } }")
    script = srv.locations[0].conf.rewrite
    assert isinstance(script[0], SetOp) and script[0].name == "x"
    cond = script[1].cond
    assert isinstance(cond, Condition) and (cond.kind, cond.var) == ("var", "x")
    op = script[1].body[0]
    assert isinstance(op, RewriteOp)
    assert (op.uri.raw, op.args.raw if op.args else None) == ("/b", "c=$1")
    assert (op.add_args, op.has_args, op.break_cycle, op.last, op.status) == \
        (False, True, True, True, 0)


@pytest.mark.parametrize(("line", "message"), [
    ("if ($x = a b) { }", 'invalid condition "$x"'),
    ("if (-q $uri) { }", 'invalid condition "-q"'),
    ("if ($uri == a) { }", 'unexpected "==" in condition'),
    ("set x 1;", 'invalid variable name "x"'),
    ("set $uri 1;", 'the duplicate "uri" variable'),
    ("rewrite ^ /x foo;", 'invalid parameter "foo"'),
    ('rewrite ^ "";', "empty replacement"),
    ("valid_referers a.com A.COM;", 'conflicting parameter "A.COM"'),
    ("valid_referers a*b;", 'invalid hostname or wildcard "a*b"'),
])
def test_config_errors(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_text("events {}\nhttp { server { listen 8080;\n" + line + "\n} }")
    assert str(err.value) == f"{message} in /tmp/nginx.conf:3"
