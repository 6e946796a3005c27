"""nginx.conf → NginxConfig: the directive table, its errors (worded and positioned as `nginx -t`
prints them) and the model, with nginx's merge rules. tests/conformance/nginx checks the same
messages against the real nginx.
"""

from __future__ import annotations

import os

import pytest

from halb.config.errors import ConfigError
from halb.config.model import Listen, Location, LocConf, NginxConfig, Return, Server
from halb.config.nginx import DIRECTIVES, load, load_text

F = "/tmp/nginx.conf"



def _ret(conf: LocConf) -> Return | None:
    """The first `return` among a level's rewrite-module statements."""
    return next((op for op in conf.rewrite or () if isinstance(op, Return)), None)

def conf(text: str, **kw: object) -> NginxConfig:
    return load_text(text, **kw)  # type: ignore[arg-type]


def http(body: str, **kw: object) -> NginxConfig:
    return conf(f"events {{}}\nhttp {{\n{body}\n}}\n", **kw)


def server(body: str, **kw: object) -> Server:
    cfg = http(f"server {{\n{body}\n}}", **kw)
    assert cfg.http is not None
    return cfg.http.servers[0]


def error(text: str, **kw: object) -> str:
    with pytest.raises(ConfigError) as exc:
        load_text(text, **kw)  # type: ignore[arg-type]
    return str(exc.value)


def http_error(body: str, **kw: object) -> str:
    """The error for `body` inside http { } (line 3 is the body's first line)."""
    return error(f"events {{}}\nhttp {{\n{body}\n}}\n", **kw)


def srv_error(body: str) -> str:
    """The error for `body` inside server { } inside http { } (line 4 is the first line)."""
    return http_error(f"server {{\n{body}\n}}")


def loc(srv: Server, name: str) -> Location:
    for lc in srv.locations:
        if lc.name == name:
            return lc
    raise KeyError(name)


# -- the table mechanics -------------------------------------------------------------------------

MECHANICS = [
    # unknown directives
    ("events {}\nfoo;", 'unknown directive "foo" in /tmp/nginx.conf:2'),
    ("events {}\nhttp {\n server {\n  location / {\n   bar on;\n  }\n }\n}",
     'unknown directive "bar" in /tmp/nginx.conf:5'),
    ("events {}\nDaemon off;", 'unknown directive "Daemon" in /tmp/nginx.conf:2'),
    # wrong context
    ("listen 80;\nevents {}", '"listen" directive is not allowed here in /tmp/nginx.conf:1'),
    ("events {}\nhttp { listen 80; }", '"listen" directive is not allowed here in /tmp/nginx.conf:2'),
    ("events { daemon off; }", '"daemon" directive is not allowed here in /tmp/nginx.conf:1'),
    ("events {}\nhttp { server { location / { server { } } } }",
     '"server" directive is not allowed here in /tmp/nginx.conf:2'),
    ("events {}\nhttp { location / { } }",
     '"location" directive is not allowed here in /tmp/nginx.conf:2'),
    ("events {}\nhttp { server { alias /x; } }",
     '"alias" directive is not allowed here in /tmp/nginx.conf:2'),
    ("events {}\nhttp { server { internal; } }",
     '"internal" directive is not allowed here in /tmp/nginx.conf:2'),
    ("events {}\nhttp { server { log_format x y; } }",
     '"log_format" directive is not allowed here in /tmp/nginx.conf:2'),
    ("events {}\nhttp { worker_connections 1; }",
     '"worker_connections" directive is not allowed here in /tmp/nginx.conf:2'),
    # block or not
    ("events;", 'directive "events" has no opening "{" in /tmp/nginx.conf:1'),
    ("events {}\nhttp { server; }", 'directive "server" has no opening "{" in /tmp/nginx.conf:2'),
    ("events {}\ndaemon off { }", 'directive "daemon" is not terminated by ";" in /tmp/nginx.conf:2'),
    # argument counts, positioned at the line of the ";" or "{"
    ("events {}\nhttp { root; }", 'invalid number of arguments in "root" directive in /tmp/nginx.conf:2'),
    ("events {}\nhttp { root a b; }",
     'invalid number of arguments in "root" directive in /tmp/nginx.conf:2'),
    ("events x {}", 'invalid number of arguments in "events" directive in /tmp/nginx.conf:1'),
    ("events {}\nhttp {\n sendfile\n on\n off\n ;\n}",
     'invalid number of arguments in "sendfile" directive in /tmp/nginx.conf:6'),
    ("events {}\nhttp { server { location { } } }",
     'invalid number of arguments in "location" directive in /tmp/nginx.conf:2'),
    ("events {}\nhttp { server { location = /a /b { } } }",
     'invalid number of arguments in "location" directive in /tmp/nginx.conf:2'),
    ("events {}\nhttp { server { try_files /a; } }",
     'invalid number of arguments in "try_files" directive in /tmp/nginx.conf:2'),
    ("events {}\nhttp { server { return 200 a b; } }",
     'invalid number of arguments in "return" directive in /tmp/nginx.conf:2'),
    ("events {}\nhttp { error_page 404; }",
     'invalid number of arguments in "error_page" directive in /tmp/nginx.conf:2'),
    ("events {}\nuser a b c;", 'invalid number of arguments in "user" directive in /tmp/nginx.conf:2'),
    ("events {}\nhttp { server { listen; } }",
     'invalid number of arguments in "listen" directive in /tmp/nginx.conf:2'),
    # FLAG values
    ("events {}\nhttp { sendfile yes; }",
     'invalid value "yes" in "sendfile" directive, it must be "on" or "off" in /tmp/nginx.conf:2'),
    ("events {}\ndaemon 1;",
     'invalid value "1" in "daemon" directive, it must be "on" or "off" in /tmp/nginx.conf:2'),
    ("events { multi_accept maybe; }",
     'invalid value "maybe" in "multi_accept" directive, it must be "on" or "off" in '
     "/tmp/nginx.conf:1"),
    ("events {}\nhttp { sendfile on off; }",
     'invalid number of arguments in "sendfile" directive in /tmp/nginx.conf:2'),
    # duplicates
    ("events {}\ndaemon on;\ndaemon off;", '"daemon" directive is duplicate in /tmp/nginx.conf:3'),
    ("events {}\nevents {}", '"events" directive is duplicate in /tmp/nginx.conf:2'),
    ("events {}\nhttp {}\nhttp {}", '"http" directive is duplicate in /tmp/nginx.conf:3'),
    ("events { worker_connections 1; worker_connections 2; }",
     '"worker_connections" directive is duplicate in /tmp/nginx.conf:1'),
    ("events {}\nhttp { sendfile on; sendfile on; }",
     '"sendfile" directive is duplicate in /tmp/nginx.conf:2'),
    ("events {}\nhttp { server { try_files a b; try_files c d; } }",
     '"try_files" directive is duplicate in /tmp/nginx.conf:2'),
    ("events {}\nhttp { server { location / { internal; internal; } } }",
     '"internal" directive is duplicate in /tmp/nginx.conf:2'),
    ("events {}\nhttp { default_type a; default_type b; }",
     '"default_type" directive is duplicate in /tmp/nginx.conf:2'),
    # values
    ("events {}\nhttp { keepalive_timeout 1x; }",
     '"keepalive_timeout" directive invalid value in /tmp/nginx.conf:2'),
    ("events {}\nhttp { keepalive_timeout 10 5ms; }",  # the header timeout is in seconds
     '"keepalive_timeout" directive invalid value in /tmp/nginx.conf:2'),
    ("events {}\nhttp { send_timeout 1y; }",  # an msec value: no years or months
     '"send_timeout" directive invalid value in /tmp/nginx.conf:2'),
    ("events {}\nhttp { client_max_body_size 1t; }",
     '"client_max_body_size" directive invalid value in /tmp/nginx.conf:2'),
    ("events {}\nhttp { client_body_buffer_size 1g; }",
     '"client_body_buffer_size" directive invalid value in /tmp/nginx.conf:2'),
    ("events {}\nhttp { keepalive_requests -1; }",
     '"keepalive_requests" directive invalid number in /tmp/nginx.conf:2'),
    ("events { worker_connections x; }", 'invalid number "x" in /tmp/nginx.conf:1'),
    ("worker_processes x;\nevents {}", '"worker_processes" directive invalid value in /tmp/nginx.conf:1'),
    ("events { use kqueue; }", 'invalid event type "kqueue" in /tmp/nginx.conf:1'),
    ("events {}\nhttp { server_tokens maybe; }", 'invalid value "maybe" in /tmp/nginx.conf:2'),
    ("events {}\nerror_log logs/e.log loud;", 'invalid log level "loud" in /tmp/nginx.conf:2'),
    ("events {}\nerror_log logs/e.log info debug;",
     'duplicate log level "debug" in /tmp/nginx.conf:2'),
    ("events {}\nload_module x.so;", '"load_module" directive is specified too late in /tmp/nginx.conf:2'),
    # nothing else in the file
    ("daemon off;", 'no "events" section in configuration'),
    ("", 'no "events" section in configuration'),
]


@pytest.mark.parametrize(("text", "message"), MECHANICS)
def test_table_errors(text: str, message: str) -> None:
    assert error(text) == message


def test_flag_values_are_case_insensitive() -> None:
    cfg = conf("daemon OFF;\nmaster_process Off;\nevents { multi_accept ON; }\nhttp { sendfile on; }")
    assert (cfg.daemon, cfg.master_process, cfg.multi_accept) == (False, False, True)
    assert cfg.http is not None and cfg.http.conf.sendfile is True


def test_enum_values_are_case_insensitive() -> None:
    cfg = http("server_tokens OFF; if_modified_since Before;")
    assert cfg.http is not None
    assert (cfg.http.conf.server_tokens, cfg.http.conf.if_modified_since) == ("off", "before")


def test_every_directive_has_contexts_and_argument_counts() -> None:
    for name, d in DIRECTIVES.items():
        assert d.name == name
        assert d.contexts and d.nargs, name


def test_main_and_events_values() -> None:
    cfg = conf("worker_processes 3;\ndaemon off;\nworker_rlimit_nofile 1024;\n"
               "error_log stderr info;\nerror_log logs/e.log;\nuser www www;\nenv A=1;\n"
               "events { worker_connections 64; multi_accept on; use epoll; }\n",
               prefix="/srv/")
    assert (cfg.worker_processes, cfg.daemon, cfg.worker_rlimit_nofile) == (3, False, 1024)
    assert [(e.path, e.level) for e in cfg.error_log] == [("stderr", "info"),
                                                        ("/srv/logs/e.log", "error")]
    assert cfg.user == ("www", "www")
    assert (cfg.worker_connections, cfg.multi_accept, cfg.events_use) == (64, True, "epoll")
    assert cfg.http is None


def test_worker_processes_auto() -> None:
    assert conf("worker_processes auto;\nevents {}").worker_processes >= 1


def test_user_without_root_is_a_warning(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "nginx.conf")
    with open(path, "w") as f:
        f.write("user nobody;\nevents {}\n")
    loaded = load(path, is_root=False)
    assert [w.message for w in loaded.warnings] == [
        'the "user" directive makes sense only if the master process runs with super-user '
        "privileges, ignored"]
    with open(path, "w") as f:
        f.write("user no-such-user-here;\nevents {}\n")
    with pytest.raises(ConfigError) as exc:
        load(path, is_root=True)
    assert str(exc.value) == f'getpwnam("no-such-user-here") failed in {path}:1'


def test_syntax_errors_come_after_the_directives_before_them() -> None:
    # nginx runs each directive as it reads it, so the earlier unknown one is reported
    assert error("events {}\nfoo;\nhttp {") == 'unknown directive "foo" in /tmp/nginx.conf:2'
    assert error("events {}\nhttp {\n}\n}") == 'unexpected "}" in /tmp/nginx.conf:4'


# -- server, listen, server_name -------------------------------------------------------------

LISTENS = [
    ("listen 8080;", ("*", 8080), "0.0.0.0:8080"),
    ("listen *:8080;", ("*", 8080), "0.0.0.0:8080"),
    ("listen 0.0.0.0:8080;", ("*", 8080), "0.0.0.0:8080"),
    ("listen 127.0.0.1:8080;", ("127.0.0.1", 8080), "127.0.0.1:8080"),
    ("listen 127.0.0.1;", ("127.0.0.1", 80), "127.0.0.1:80"),
    ("listen localhost:81;", ("127.0.0.1", 81), "127.0.0.1:81"),
    ("listen *;", ("*", 80), "0.0.0.0:80"),
    ("listen [::1]:8080;", ("::1", 8080), "[::1]:8080"),
    ("listen [::]:8080;", ("::", 8080), "[::]:8080"),
    ("listen [::1];", ("::1", 80), "[::1]:80"),
    ("listen [0:0::1]:80;", ("::1", 80), "[::1]:80"),
    ("listen unix:/run/halb.sock;", ("unix:/run/halb.sock", 0), "unix:/run/halb.sock"),
]


@pytest.mark.parametrize(("line", "key", "text"), LISTENS)
def test_listen_forms(line: str, key: tuple[str, int], text: str) -> None:
    ls = server(line).listens[0]
    assert ls.key == key
    assert str(ls) == text


def test_listen_options() -> None:
    srv = server("listen 127.0.0.1:8080 default_server reuseport backlog=100;\n"
                 "listen [::1]:8080 ipv6only=off;\nlisten 8081 default;\nlisten 8082 bind;\n"
                 "listen 8083 rcvbuf=64k sndbuf=1m deferred so_keepalive=30m::10 fastopen=5;")
    a, b, c, d, e = srv.listens
    assert (a.default_server, a.reuseport, a.backlog, a.bind) == (True, True, 100, True)
    assert (b.ipv6only, b.bind, b.default_server) == (False, True, False)
    assert (c.default_server, c.bind, c.backlog) == (True, False, 511)
    assert d.bind and e.bind
    assert srv.listens[0].pos is not None and srv.listens[0].pos.line == 4


def test_default_listen_depends_on_root() -> None:
    assert server("", is_root=True).listens[0].key == ("*", 80)
    assert server("", is_root=False).listens[0].key == ("*", 8000)


def test_listens_of_the_whole_config() -> None:
    cfg = http("server { listen 8080; listen 8081; }\nserver { listen 8080; listen 127.0.0.1:80; }")
    assert [str(ls) for ls in cfg.listens()] == ["0.0.0.0:8080", "0.0.0.0:8081", "127.0.0.1:80"]


LISTEN_ERRORS = [
    ("listen 8080; listen 8080;", "a duplicate listen 0.0.0.0:8080"),
    ("listen 8080; listen *:8080;", "a duplicate listen 0.0.0.0:8080"),
    ("listen [::1]:80; listen [::1];", "a duplicate listen [::1]:80"),
    ("listen 127.0.0.1; listen localhost:80;", "a duplicate listen 127.0.0.1:80"),
    ("listen 0;", 'invalid port in "0" of the "listen" directive'),
    ("listen 65536;", 'invalid port in "65536" of the "listen" directive'),
    ("listen 1.2.3.4:x;", 'invalid port in "1.2.3.4:x" of the "listen" directive'),
    ("listen 1:2:3;", 'invalid port in "1:2:3" of the "listen" directive'),
    ("listen [::1]:0;", 'invalid port in "[::1]:0" of the "listen" directive'),
    ("listen :80;", 'no host in ":80" of the "listen" directive'),
    ("listen []:80;", 'no host in "[]:80" of the "listen" directive'),
    ("listen [::1;", 'invalid host in "[::1" of the "listen" directive'),
    ("listen [::1]x;", 'invalid host in "[::1]x" of the "listen" directive'),
    ("listen a/b;", 'invalid host in "a/b" of the "listen" directive'),
    ("listen [fe80::1%lo]:80;", 'invalid IPv6 address in "[fe80::1%lo]:80" of the "listen" directive'),
    ("listen [1.2.3.4]:80;", 'invalid IPv6 address in "[1.2.3.4]:80" of the "listen" directive'),
    ("listen no.such.host.invalid;",
     'host not found in "no.such.host.invalid" of the "listen" directive'),
    ("listen 1.2.3.4.5:80;", 'host not found in "1.2.3.4.5:80" of the "listen" directive'),
    ("listen unix:;", 'no path in the unix domain socket in "unix:" of the "listen" directive'),
    ("listen 80 foo;", 'invalid parameter "foo"'),
    ("listen 80 quic;", 'invalid parameter "quic"'),  # nginx 1.25+ (ssl: test_nginx_ssl.py)
    ("listen 80 setfib=1;", 'invalid parameter "setfib=1"'),  # FreeBSD only
    ("listen 80 backlog=x;", 'invalid backlog "backlog=x"'),
    ("listen 80 backlog=0;", 'invalid backlog "backlog=0"'),
    ("listen 80 backlog=-1;", 'invalid backlog "backlog=-1"'),
    ("listen 80 rcvbuf=1x;", 'invalid rcvbuf "rcvbuf=1x"'),
    ("listen 80 sndbuf=;", 'invalid sndbuf "sndbuf="'),
    ("listen 80 fastopen=x;", 'invalid fastopen "fastopen=x"'),
    ("listen 80 ipv6only=x;", 'invalid parameter "ipv6only=x"'),
    ("listen 80 ipv6only=oops;", 'invalid ipv6only flags "oops"'),
    ("listen 80 so_keepalive=x;", 'invalid so_keepalive value: "x"'),
    ("listen 80 so_keepalive=0;", 'invalid so_keepalive value: "0"'),
    ("listen 80 so_keepalive=1:2:3:4;", 'invalid so_keepalive value: "1:2:3:4"'),
]


@pytest.mark.parametrize(("body", "message"), LISTEN_ERRORS)
def test_listen_errors(body: str, message: str) -> None:
    assert srv_error(body) == f"{message} in {F}:4"


ACROSS_SERVERS = [
    ("server { listen 80 default_server; }\nserver { listen 80 default; }",
     "a duplicate default server for 0.0.0.0:80 in /tmp/nginx.conf:4"),
    ("server { listen 80 reuseport; }\nserver { listen 80 reuseport; }",
     "duplicate listen options for 0.0.0.0:80 in /tmp/nginx.conf:4"),
    ("server { listen 80 backlog=5; }\nserver { listen 80 deferred; }",
     "duplicate listen options for 0.0.0.0:80 in /tmp/nginx.conf:4"),
    # reported where the second listen is, before a later error (nginx checks it at once)
    ("server { listen 80 default_server; }\nserver { listen 80 default_server; }\nfoo;",
     "a duplicate default server for 0.0.0.0:80 in /tmp/nginx.conf:4"),
]


@pytest.mark.parametrize(("body", "message"), ACROSS_SERVERS)
def test_listen_errors_across_servers(body: str, message: str) -> None:
    assert http_error(body) == message


def test_accept_filter_is_logged_and_ignored(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "nginx.conf")
    with open(path, "w") as f:
        f.write("events {}\nhttp { server { listen 80 accept_filter=x; } }\n")
    loaded = load(path)
    assert [(w.level, str(w)) for w in loaded.warnings] == [
        ("emerg", f'accept filters "accept_filter=x" are not supported on this platform, '
                  f"ignored in {path}:2")]


def test_listens_shared_by_servers_are_fine() -> None:
    cfg = http("server { listen 80 default_server backlog=10; }\nserver { listen 80; }\n"
               "server { listen 127.0.0.1:80 default_server; }\n"
               "server { listen [::]:80 ipv6only=on; listen 80; }")
    assert cfg.http is not None and len(cfg.http.servers) == 4


def test_server_name_kinds() -> None:
    srv = server('listen 80;\nserver_name Example.COM *.example.org .example.net www.example.* '
                 '"~^(?<sub>.+)\\.example\\.io$" "" _ host.;')
    kinds = [(n.kind, n.name) for n in srv.names]
    assert kinds == [
        ("exact", "example.com"), ("lead", ".example.org"), ("exact", "example.net"),
        ("lead", ".example.net"), ("trail", "www.example."), ("regex", "~^(?<sub>.+)\\.example\\.io$"),
        ("exact", ""), ("exact", "_"), ("exact", "host"),
    ]
    regex = srv.names[5].regex
    assert regex is not None and regex.match("a.example.io")
    assert regex.match("a.example.io").group("sub") == "a"  # type: ignore[union-attr]
    assert srv.server_name == "Example.COM"


def test_server_without_server_name() -> None:
    srv = server("listen 80;")
    assert [(n.kind, n.name) for n in srv.names] == [("exact", "")]
    assert srv.server_name == ""


SERVER_NAME_ERRORS = [
    ("server { server_name *; }", 'server name "*" is invalid in /tmp/nginx.conf:3'),
    ("server { server_name *x; }", 'server name "*x" is invalid in /tmp/nginx.conf:3'),
    ("server { server_name *.; }", 'server name "*." is invalid in /tmp/nginx.conf:3'),
    ("server { server_name .; }", 'server name "." is invalid in /tmp/nginx.conf:3'),
    ("server { server_name ~(; }",
     'pcre2_compile() failed: missing closing parenthesis in "(" in /tmp/nginx.conf:3'),
    # other wildcards: only when the address has several servers, with no position (as nginx)
    ("server { listen 80; server_name a*b; }\nserver { listen 80; }",
     'invalid server name or wildcard "a*b" on 0.0.0.0:80'),
    ("server { listen 80; server_name A*B; }\nserver { listen 80; }",
     'invalid server name or wildcard "a*b" on 0.0.0.0:80'),
    ("server { listen 80; server_name a..b; }\nserver { listen 80; }",
     'invalid server name or wildcard "a..b" on 0.0.0.0:80'),
    ("server { listen 80; server_name *.a.*; }\nserver { listen 80; }",
     'invalid server name or wildcard "*.a.*" on 0.0.0.0:80'),
    ("server { server_name a*b; }\nserver { }",  # both on the default *:8000 (not root)
     'invalid server name or wildcard "a*b" on 0.0.0.0:8000'),
    ("server { listen 127.0.0.1:80; server_name x a*b; }\nserver { listen 127.0.0.1:80; }",
     'invalid server name or wildcard "a*b" on 127.0.0.1:80'),
    ('server { listen 80; server_name "~^(?<h>.+)$"; }\nserver { listen 80; server_name a*b; }',
     'invalid server name or wildcard "a*b" on 0.0.0.0:80'),
]


@pytest.mark.parametrize(("body", "message"), SERVER_NAME_ERRORS)
def test_server_name_errors(body: str, message: str) -> None:
    assert http_error(body) == message


def test_bad_wildcard_alone_on_its_address_is_accepted() -> None:
    srv = server("listen 80; server_name a*b;")
    assert srv.names[0].name == "a*b"
    http("server { listen 80; server_name a*b; }\nserver { listen 81; }")
    http('server { listen 80; server_name "~^(?<h>.+)$" ; }\n'
         "server { listen 81; server_name a*b; }")


def test_server_name_with_a_slash_warns(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "nginx.conf")
    with open(path, "w") as f:
        f.write("events {}\nhttp { server { server_name a/b; } }\n")
    assert [str(w) for w in load(path).warnings] == [
        f'server name "a/b" has suspicious symbols in {path}:2']


# -- root, alias, locations --------------------------------------------------------------------

ROOT_ALIAS = [
    ("root /a; root /b;", '"root" directive is duplicate'),
    ("location / { alias /a; alias /b; }", '"alias" directive is duplicate'),
    ("location / { root /a; alias /b; }",
     '"alias" directive is duplicate, "root" directive was specified earlier'),
    ("location / { alias /a; root /b; }",
     '"root" directive is duplicate, "alias" directive was specified earlier'),
    ("location @x { alias /a; }",
     'the "alias" directive cannot be used inside the named location'),
]


@pytest.mark.parametrize(("body", "message"), ROOT_ALIAS)
def test_root_alias_conflicts(body: str, message: str) -> None:
    assert srv_error(body) == f"{message} in {F}:4"


def test_root_in_server_and_alias_in_location_are_fine() -> None:
    srv = server("root /srv;\nlocation /a/ { alias /data/; }\nlocation /b/ { root /b; }")
    assert loc(srv, "/a/").conf.root.raw == "/data/"
    assert loc(srv, "/a/").conf.alias_name == "/a/"
    assert loc(srv, "/b/").conf.root.raw == "/b"
    assert loc(srv, "/b/").conf.alias_name is None


def test_root_paths() -> None:
    srv = server("root html/;\nlocation /v { root /var/$host; }\nlocation ~ ^/r(.*) { alias /x$1; }",
                 prefix="/opt/halb/")
    assert srv.conf.root.raw == "/opt/halb/html"  # relative to the prefix, trailing / dropped
    assert loc(srv, "/v").conf.root.variables == ("host",)
    regex = loc(srv, "^/r(.*)")
    assert regex.conf.alias_name == ""  # in a regex location the alias is the whole path
    assert regex.conf.root.raw == "/x$1"


def test_location_modifiers() -> None:
    srv = server("location / {}\nlocation = /exact {}\nlocation ^~ /static/ {}\n"
                 "location ~ \\.php$ {}\nlocation ~* \\.JPG$ {}\nlocation @named {}\n"
                 "location =/tight {}\nlocation ^~/t2 {}\nlocation ~/r1 {}\nlocation ~*/r2 {}")
    got = [(lc.modifier, lc.name) for lc in srv.locations]
    assert got == [("", "/"), ("=", "/exact"), ("^~", "/static/"), ("~", "\\.php$"),
                   ("~*", "\\.JPG$"), ("=", "/tight"), ("^~", "/t2"), ("~", "/r1"),
                   ("~*", "/r2")]
    assert srv.named_locations["@named"].named
    caseless = loc(srv, "\\.JPG$").regex
    assert caseless is not None and caseless.search("/A.jpg")
    cased = loc(srv, "\\.php$").regex
    assert cased is not None and not cased.search("/A.PHP")
    assert [str(lc) for lc in srv.locations[:2]] == ["/", "= /exact"]
    assert loc(srv, "/exact").exact and loc(srv, "/static/").noregex
    assert loc(srv, "/r1").is_regex


def test_location_modifier_alone_is_an_empty_name() -> None:
    srv = server("location = {}\nlocation ~* {}\nlocation ~ {}")
    assert [(lc.modifier, lc.name) for lc in srv.locations] == [("=", ""), ("~*", ""), ("~", "")]


def test_named_regex_groups_and_captures() -> None:
    srv = server("location ~ ^/(?<section>[a-z]+)/(\\d+)$ {}\nlocation ~ \"^/(?'x'y)\" {}")
    m = srv.locations[0].regex.match("/news/12")  # type: ignore[union-attr]
    assert m is not None and m.group("section") == "news" and m.group(2) == "12"
    assert srv.locations[1].regex.match("/y")  # type: ignore[union-attr]


def test_nested_locations() -> None:
    srv = server("location /a/ {\n location /a/b/ {\n  location ~ \\.x$ { }\n }\n"
                 " location ~ c { }\n}\nlocation ^~ /s/ { location /s/t { } }\n"
                 "location ~ ^/r { location ~ q { } }")
    a = loc(srv, "/a/")
    assert [c.name for c in a.children] == ["/a/b/", "c"]
    assert [c.name for c in a.children[0].children] == ["\\.x$"]
    assert loc(srv, "/s/").children[0].name == "/s/t"


NESTING = [
    ("location = /a { location /a/b { } }",
     'location "/a/b" cannot be inside the exact location "/a"'),
    ("location = { location /x { } }", 'location "/x" cannot be inside the exact location ""'),
    ("location @a { location /b { } }", 'location "/b" cannot be inside the named location "@a"'),
    ("location /a { location @b { } }", 'named location "@b" can be on the server level only'),
    ("location /a { location /b { } }", 'location "/b" is outside location "/a"'),
    ("location /a { location = /b { } }", 'location "/b" is outside location "/a"'),
    ("location /a { location ^~ /a/b { location /c { } } }",
     'location "/c" is outside location "/a/b"'),
    ("location ~ a { location /b { } }", 'location "/b" is outside location "a"'),
    ("location != /a { }", 'invalid location modifier "!="'),
    ("location ~ ( { }", 'pcre2_compile() failed: missing closing parenthesis in "("'),
    ("location ~ a) { }",
     'pcre2_compile() failed: unmatched closing parenthesis in "a)" at ")"'),
    ("location ~ *a { }",
     'pcre2_compile() failed: quantifier does not follow a repeatable item in "*a" at "*a"'),
    ("location ~ a** { }",
     'pcre2_compile() failed: quantifier does not follow a repeatable item in "a**" at "*"'),
    ("location ~ [a { }",
     'pcre2_compile() failed: missing terminating ] for character class in "[a"'),
    ("location ~ [b-a] { }",
     'pcre2_compile() failed: range out of order in character class in "[b-a]" at "a]"'),
    ('location ~ "\\\\" { }', 'pcre2_compile() failed: \\ at end of pattern in "\\"'),
    ('location ~ "(?<n>a)(?<n>b)" { }',
     "pcre2_compile() failed: two named subpatterns have the same name (PCRE2_DUPNAMES not set)"
     ' in "(?<n>a)(?<n>b)" at "b)"'),
]


@pytest.mark.parametrize(("body", "message"), NESTING)
def test_location_errors(body: str, message: str) -> None:
    assert srv_error(body) == f"{message} in {F}:4"


DUPLICATE_LOCATIONS = [
    ("location /a {}\nlocation /a {}", 'duplicate location "/a" in /tmp/nginx.conf:5'),
    ("location = /a {}\nlocation =/a {}", 'duplicate location "/a" in /tmp/nginx.conf:5'),
    ("location /a {}\nlocation ^~ /a {}", 'duplicate location "/a" in /tmp/nginx.conf:5'),
    ("location /a {}\nlocation /b {}\nlocation /a {}", 'duplicate location "/a" in /tmp/nginx.conf:6'),
    # nested ones first, and found when the http block ends (after the other errors in it)
    ("location /z {}\nlocation /z {}\nlocation /a {\n location /a/b {}\n location /a/b {}\n}",
     'duplicate location "/a/b" in /tmp/nginx.conf:8'),
    ("location /a {}\nlocation /a {}\nfoo;", 'unknown directive "foo" in /tmp/nginx.conf:6'),
]


@pytest.mark.parametrize(("body", "message"), DUPLICATE_LOCATIONS)
def test_duplicate_locations(body: str, message: str) -> None:
    assert srv_error(body) == message


def test_locations_that_are_not_duplicates() -> None:
    srv = server("location /a {}\nlocation = /a {}\nlocation ~ /a {}\nlocation ~ /a {}\n"
                 "location @a { return 200; }\nlocation @a { return 201; }")
    assert len(srv.locations) == 4
    ret = _ret(srv.named_locations["@a"].conf)
    assert ret is not None and ret.code == 200  # of two named locations, the first is used


# -- log_format and access_log -------------------------------------------------------------------


def test_log_formats_and_access_logs() -> None:
    cfg = http("log_format main escape=json '{\"a\":\"$remote_addr\"}' '$status';\n"
               "log_format empty escape=none;\n"
               "access_log logs/a.log main buffer=32k flush=5s;\n"
               "access_log /var/log/b.log combined if=$status gzip=5;\n"
               "server { location /off { access_log off; } location /on { } }",
               prefix="/srv/")
    assert cfg.http is not None
    main = cfg.http.log_formats["main"]
    assert main.escape == "json" and main.template.raw == '{"a":"$remote_addr"}$status'
    assert cfg.http.log_formats["empty"].template.raw == ""
    a, b = cfg.http.conf.access_log  # type: ignore[misc]
    assert (a.path.raw, a.format.name, a.buffer, a.flush) == ("/srv/logs/a.log", "main", 32768, 5)
    assert (b.path.raw, b.format.name, b.gzip, b.buffer) == ("/var/log/b.log", "combined", 5, 65536)
    assert b.condition is not None and b.condition.variables == ("status",)
    srv = cfg.http.servers[0]
    assert loc(srv, "/off").conf.access_log == ()
    assert loc(srv, "/on").conf.access_log == cfg.http.conf.access_log


def test_access_log_default_and_off_with_others() -> None:
    cfg = http("server { location / { access_log off; access_log logs/x.log; } }", prefix="/p/")
    assert cfg.http is not None
    default = cfg.http.conf.access_log
    assert default is not None and [(a.path.raw, a.format.name) for a in default] == [
        ("/p/logs/access.log", "combined")]
    # "off" anywhere in a level turns that level's logging off, as nginx's llcf->off
    assert cfg.http.servers[0].locations[0].conf.access_log == ()


LOG_ERRORS = [
    ("access_log logs/a.log nosuch;", 'unknown log format "nosuch"'),
    ("access_log off x;", 'invalid parameter "x"'),
    ("access_log logs/a.log combined foo=1;", 'invalid parameter "foo=1"'),
    ("access_log logs/a.log combined buffer=x;", 'invalid buffer size "x"'),
    ("access_log logs/a.log combined flush=x buffer=1k;", 'invalid flush time "x"'),
    ("access_log logs/a.log combined flush=1s;", 'no buffer is defined for access_log "logs/a.log"'),
    ("access_log logs/a.log combined gzip=10;", 'invalid compression level "10"'),
    ("log_format main '$uri';\nlog_format main '$uri';", 'duplicate "log_format" name "main"'),
    ("log_format combined '$uri';", 'duplicate "log_format" name "combined"'),
    ("log_format x escape=foo '$uri';", 'unknown log format escaping "foo"'),
    ("log_format x 'a $ b';", 'invalid parameter "$ b"'),
    ("log_format x '${';", 'invalid parameter "${"'),
    ("log_format x '$uri' '$';", 'invalid parameter "$"'),
    ("log_format x '${u-}';", 'the closing bracket in "u" variable is missing'),
    ("server { access_log logs/a.log main; }\nlog_format main '$uri';", 'unknown log format "main"'),
]


@pytest.mark.parametrize(("body", "message"), LOG_ERRORS)
def test_log_errors(body: str, message: str) -> None:
    assert http_error(body).startswith(f"{message} in {F}:")


# -- variables -----------------------------------------------------------------------------------

VARIABLE_ERRORS = [
    # unknown variables are reported once the http block is read, without a position
    ("server { return 200 $nosuch; }", 'unknown "nosuch" variable'),
    ("server { return 200 $NoSuch; }", 'unknown "nosuch" variable'),
    ("root /x/$nosuch;", 'unknown "nosuch" variable'),
    ("log_format x '$nosuch';", 'unknown "nosuch" variable'),
    ("server { return 200 $a; root $b; }", 'unknown "a" variable'),
    ("server { return 200 \"${}\"; }", f"invalid variable name in {F}:3"),
    ("server { return 200 \"x$\"; }", f"invalid variable name in {F}:3"),
    ("server { return 200 \"a $ b\"; }", f"invalid variable name in {F}:3"),
    ("server { return 200 \"${uri\"; }", f'the closing bracket in "uri" variable is missing in {F}:3'),
    ("server { return 200 \"${ur-i}\"; }", f'the closing bracket in "ur" variable is missing in {F}:3'),
    # what is found while reading comes first
    ("server { return 200 $nosuch; foo; }", f'unknown directive "foo" in {F}:3'),
    ("server { return 200 $nosuch; location /a {} location /a {} }",
     f'duplicate location "/a" in {F}:3'),
]


@pytest.mark.parametrize(("body", "message"), VARIABLE_ERRORS)
def test_variable_errors(body: str, message: str) -> None:
    assert http_error(body) == message


def test_unknown_variable_in_http_comes_before_a_later_error() -> None:
    assert error("events {}\nhttp { server { return 200 $x; } }\nfoo;") == 'unknown "x" variable'


def test_known_variables_and_captures() -> None:
    srv = server("return 200 \"$host $http_x_y ${uri}x $1 $arg_a $cookie_c\";")
    ret = _ret(srv.conf)
    assert ret is not None and ret.text is not None
    assert ret.text.variables == ("host", "http_x_y", "uri", "1", "arg_a", "cookie_c")


# -- error_page, return, try_files, index, types ---------------------------------------------------


def test_error_page_forms() -> None:
    srv = server("error_page 404 /404.html;\nerror_page 500 502 503 /50x.html;\n"
                 "error_page 403 =200 /ok;\nerror_page 405 = /any;\nerror_page 410 =0 @named;\n"
                 "error_page 418 https://example.com/$uri;")
    pages = srv.conf.error_pages
    assert pages[404].uri.raw == "/404.html" and pages[404].code is None
    assert not pages[404].overwrite
    assert pages[500] is pages[502] is pages[503]
    assert (pages[403].code, pages[403].overwrite) == (200, False)
    assert (pages[405].code, pages[405].overwrite) == (None, True)
    assert (pages[410].code, pages[410].overwrite, pages[410].uri.raw) == (None, True, "@named")
    assert pages[418].uri.variables == ("uri",)


ERROR_PAGE_ERRORS = [
    ("error_page 200 /x;", 'value "200" must be between 300 and 599'),
    ("error_page 600 /x;", 'value "600" must be between 300 and 599'),
    ("error_page 499 /x;", 'invalid value "499"'),
    ("error_page abc /x;", 'invalid value "abc"'),
    ("error_page 404 =abc /x;", 'invalid value "=abc"'),
    ("error_page =200 /x;", 'invalid value "=200"'),
    ("error_page 404 /x y;", 'invalid value "/x"'),
]


@pytest.mark.parametrize(("body", "message"), ERROR_PAGE_ERRORS)
def test_error_page_errors(body: str, message: str) -> None:
    assert srv_error(body) == f"{message} in {F}:4"


RETURNS = [
    ("return 404;", 404, None),
    ("return 200 ok;", 200, "ok"),
    ("return 301 https://x$request_uri;", 301, "https://x$request_uri"),
    ("return https://example.com;", 302, "https://example.com"),
    ("return http://example.com;", 302, "http://example.com"),
    ("return $scheme://x;", 302, "$scheme://x"),
    ("return 0;", 0, None),
    ("return 999 x;", 999, "x"),
]


@pytest.mark.parametrize(("line", "code", "text"), RETURNS)
def test_return_forms(line: str, code: int, text: str | None) -> None:
    ret = _ret(server(line).conf)
    assert ret is not None and ret.code == code
    assert (ret.text.raw if ret.text else None) == text


def test_returns_of_a_level_run_in_order() -> None:
    script = server("return 404; return 200;").conf.rewrite
    assert script is not None
    assert [op.code for op in script] == [404, 200]  # the first one answers


@pytest.mark.parametrize(("line", "message"), [
    ("return 1000;", 'invalid return code "1000"'),
    ("return -1;", 'invalid return code "-1"'),
    ("return foo;", 'invalid return code "foo"'),
    ("return ftp://x;", 'invalid return code "ftp://x"'),
    ("return http://x y;", 'invalid return code "http://x"'),
])
def test_return_errors(line: str, message: str) -> None:
    assert srv_error(line) == f"{message} in {F}:4"


def test_try_files() -> None:
    srv = server("try_files $uri $uri/ /index.html;\nlocation /a { try_files $uri =404; }\n"
                 "location /b { try_files a =0; } location /c { try_files a @x; }")
    assert [t.raw for t in srv.conf.try_files or ()] == ["$uri", "$uri/", "/index.html"]
    assert [t.raw for t in loc(srv, "/a").conf.try_files or ()] == ["$uri", "=404"]
    assert [t.raw for t in loc(srv, "/c").conf.try_files or ()] == ["a", "@x"]


@pytest.mark.parametrize(("line", "message"), [
    ("try_files a =abc;", 'invalid code "=abc"'),
    ("try_files a =1000;", 'invalid code "=1000"'),
    ("try_files a =;", 'invalid code "="'),
])
def test_try_files_errors(line: str, message: str) -> None:
    assert srv_error(line) == f"{message} in {F}:4"


def test_index() -> None:
    srv = server("index index.html index.htm;\nindex default.html;\n"
                 "location /v { index $host.html /fallback.html; }")
    assert [i.raw for i in srv.conf.index] == ["index.html", "index.htm", "default.html"]
    assert [i.raw for i in loc(srv, "/v").conf.index] == ["$host.html", "/fallback.html"]
    assert [i.raw for i in http("").http.conf.index] == ["index.html"]  # type: ignore[union-attr]


def test_index_errors_and_warnings(tmp_path: os.PathLike[str]) -> None:
    assert srv_error('index "";') == f'index "" in "index" directive is invalid in {F}:4'
    path = os.path.join(tmp_path, "nginx.conf")
    with open(path, "w") as f:
        f.write("events {}\nhttp {\n index /a.html b.html;\n}\n")
    loaded = load(path)
    assert [str(w) for w in loaded.warnings] == [
        f'only the last index in "index" directive should be absolute in {path}:3']
    assert loaded.warnings[0].level == "warn"


def test_types() -> None:
    cfg = http("types { text/html html htm; image/png PNG; text/plain; }\n"
               "types { application/x-y y; }\n"
               "default_type application/octet-stream;\n"
               "server { location /t { types { } default_type text/x; } }")
    assert cfg.http is not None
    types = cfg.http.conf.types
    assert dict(types) == {"html": "text/html", "htm": "text/html", "png": "image/png",
                           "y": "application/x-y"}
    assert cfg.http.conf.default_type == "application/octet-stream"
    t = loc(cfg.http.servers[0], "/t")
    assert dict(t.conf.types) == {} and t.conf.default_type == "text/x"
    assert dict(http("").http.conf.types) == {  # type: ignore[union-attr]
        "html": "text/html", "gif": "image/gif", "jpg": "image/jpeg"}


def test_types_errors_and_warnings(tmp_path: os.PathLike[str]) -> None:
    assert http_error("types { text/html html }") == f'unexpected "}}" in {F}:3'
    assert http_error("types { text/html { } }") == f'unexpected "{{" in {F}:3'
    path = os.path.join(tmp_path, "nginx.conf")
    with open(path, "w") as f:
        f.write("events {}\nhttp {\n types { text/html html; text/x HTML; }\n}\n")
    loaded = load(path)
    assert [w.message for w in loaded.warnings] == [
        'duplicate extension "html", content type: "text/x", previous content type: "text/html"']
    assert loaded.config.http is not None and loaded.config.http.conf.types["html"] == "text/x"


# -- -g and files ----------------------------------------------------------------------------------


def _write_conf(tmp_path: os.PathLike[str], text: str) -> str:
    path = os.path.join(tmp_path, "nginx.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def test_global_directives(tmp_path: os.PathLike[str]) -> None:
    path = _write_conf(tmp_path, "events {}\nhttp { server { listen 8080; } }\n")
    loaded = load(path, str(tmp_path), global_directives="daemon off; worker_processes 2;")
    cfg = loaded.config
    assert (cfg.daemon, cfg.worker_processes) == (False, 2)
    assert cfg.conf_file == path and cfg.prefix == str(tmp_path) + os.sep
    assert cfg.files == (path,)


@pytest.mark.parametrize(("directives", "message"), [
    ("foo;", 'unknown directive "foo" in command line'),
    ("daemon off", 'unexpected end of parameter, expecting ";" in command line'),
    ("events {}", "block directives are not supported in -g option in command line"),
    ("daemon off; }", 'unexpected "}" in command line'),
    ("daemon off; daemon on;", '"daemon" directive is duplicate in command line'),
    ("listen 80;", '"listen" directive is not allowed here in command line'),
])
def test_global_directive_errors(tmp_path: os.PathLike[str], directives: str,
                                 message: str) -> None:
    path = _write_conf(tmp_path, "events {}\n")
    with pytest.raises(ConfigError) as exc:
        load(path, global_directives=directives)
    assert str(exc.value) == message


def test_duplicate_between_command_line_and_file(tmp_path: os.PathLike[str]) -> None:
    path = _write_conf(tmp_path, "events {}\ndaemon on;\n")
    with pytest.raises(ConfigError) as exc:
        load(path, global_directives="daemon off;")
    assert str(exc.value) == f'"daemon" directive is duplicate in {path}:2'


def test_include_relative_to_the_configuration_directory(tmp_path: os.PathLike[str]) -> None:
    os.makedirs(os.path.join(tmp_path, "conf", "sites"))
    path = os.path.join(tmp_path, "conf", "nginx.conf")
    with open(path, "w") as f:
        f.write("events {}\nhttp { include sites/*.conf; }\n")
    with open(os.path.join(tmp_path, "conf", "sites", "a.conf"), "w") as f:
        f.write("server { listen 8080; }\n")
    cfg = load(path, str(tmp_path)).config
    assert cfg.http is not None and cfg.http.servers[0].listens[0].port == 8080
    assert cfg.files == (path, os.path.join(tmp_path, "conf", "sites", "a.conf"))


def test_missing_configuration_file(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "nope.conf")
    with pytest.raises(ConfigError) as exc:
        load(path)
    assert str(exc.value) == f'open() "{path}" failed (2: No such file or directory)'


def test_load_text_with_included_files() -> None:
    cfg = load_text("events {}\nhttp { include /etc/x/servers.conf; }",
                    files={"/etc/x/servers.conf": "server { listen 81; }"})
    assert cfg.http is not None and cfg.http.servers[0].listens[0] == Listen(
        "*", 81, pos=cfg.http.servers[0].listens[0].pos)
    with pytest.raises(ConfigError) as exc:
        load_text("events {}\ninclude /etc/x/nope.conf;")
    assert str(exc.value) == (
        'open() "/etc/x/nope.conf" failed (2: No such file or directory) in /tmp/nginx.conf:2')


# -- merge and inheritance -------------------------------------------------------------------------

MERGE = """
root /srv/http;
index http.html;
error_page 404 /http404.html;
access_log /var/log/http.log;
sendfile on;
keepalive_timeout 30;
server {
    listen 8080;
    root /srv/server;
    return 418;
    try_files $uri /srv-try;
    location /inherit/ {
        location /inherit/nested/ { }
    }
    location /own/ {
        index own.html;
        error_page 500 /own500.html;
        access_log /var/log/own.log;
        sendfile off;
        return 204;
        try_files $uri =404;
        location /own/nested/ { }
    }
    location /alias/ {
        alias /data/;
        location /alias/deeper/ { }
    }
    location /rooted/ {
        root /r;
        location /rooted/x/ { alias /ax/; }
    }
}
server {
    listen 8081;
    index s2.html;
    error_page 403 /s2-403.html;
    access_log off;
}
"""


@pytest.fixture(scope="module")
def merged() -> NginxConfig:
    return http(MERGE)


def test_root_is_inherited(merged: NginxConfig) -> None:
    assert merged.http is not None
    s1 = merged.http.servers[0]
    assert merged.http.conf.root.raw == "/srv/http"
    assert s1.conf.root.raw == "/srv/server"
    assert loc(s1, "/inherit/").conf.root.raw == "/srv/server"
    assert loc(s1, "/inherit/").children[0].conf.root.raw == "/srv/server"
    assert merged.http.servers[1].conf.root.raw == "/srv/http"


def test_lists_are_inherited_only_by_levels_without_their_own(merged: NginxConfig) -> None:
    assert merged.http is not None
    s1, s2 = merged.http.servers
    inherit, own = loc(s1, "/inherit/"), loc(s1, "/own/")
    assert [i.raw for i in inherit.conf.index] == ["http.html"]
    assert [i.raw for i in own.conf.index] == ["own.html"]
    assert [i.raw for i in own.children[0].conf.index] == ["own.html"]
    assert [i.raw for i in s2.conf.index] == ["s2.html"]
    assert list(inherit.conf.error_pages) == [404]
    assert list(own.conf.error_pages) == [500]  # not 404 too: the level has its own
    assert list(s2.conf.error_pages) == [403]
    assert [a.path.raw for a in inherit.conf.access_log or ()] == ["/var/log/http.log"]
    assert [a.path.raw for a in own.conf.access_log or ()] == ["/var/log/own.log"]
    assert s2.conf.access_log == ()


def test_plain_settings_are_replaced_where_set(merged: NginxConfig) -> None:
    assert merged.http is not None
    s1 = merged.http.servers[0]
    assert loc(s1, "/inherit/").conf.sendfile is True
    assert loc(s1, "/own/").conf.sendfile is False
    assert loc(s1, "/own/").children[0].conf.sendfile is False
    assert loc(s1, "/inherit/").conf.keepalive_timeout == 30
    assert merged.http.servers[1].conf.tcp_nodelay is True  # nginx's default


def test_return_and_try_files_are_not_inherited_into_locations(merged: NginxConfig) -> None:
    assert merged.http is not None
    s1 = merged.http.servers[0]
    assert _ret(s1.conf) is not None and _ret(s1.conf).code == 418  # type: ignore[union-attr]
    assert [t.raw for t in s1.conf.try_files or ()] == ["$uri", "/srv-try"]
    inherit, own = loc(s1, "/inherit/"), loc(s1, "/own/")
    assert inherit.conf.rewrite is None and inherit.conf.try_files is None
    assert _ret(own.conf) is not None and _ret(own.conf).code == 204  # type: ignore[union-attr]
    assert [t.raw for t in own.conf.try_files or ()] == ["$uri", "=404"]
    nested = own.children[0]
    assert nested.conf.rewrite is None and nested.conf.try_files is None


def test_alias_is_inherited_by_nested_locations(merged: NginxConfig) -> None:
    assert merged.http is not None
    s1 = merged.http.servers[0]
    alias = loc(s1, "/alias/")
    assert (alias.conf.root.raw, alias.conf.alias_name) == ("/data/", "/alias/")
    deeper = alias.children[0]
    assert (deeper.conf.root.raw, deeper.conf.alias_name) == ("/data/", "/alias/")
    rooted = loc(s1, "/rooted/")
    assert (rooted.conf.root.raw, rooted.conf.alias_name) == ("/r", None)
    x = rooted.children[0]
    assert (x.conf.root.raw, x.conf.alias_name) == ("/ax/", "/rooted/x/")


def test_internal_is_not_inherited() -> None:
    srv = server("location /i { internal; location /i/n { } }")
    i = loc(srv, "/i")
    assert i.conf.internal is True
    assert i.children[0].conf.internal is False


def test_servers_keep_their_order_and_positions() -> None:
    cfg = http("server { listen 1; }\nserver { listen 2; }")
    assert cfg.http is not None
    assert [(s.index, s.pos.line if s.pos else None) for s in cfg.http.servers] == [(0, 3), (1, 4)]
