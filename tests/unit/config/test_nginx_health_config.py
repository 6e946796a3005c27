"""nginx Plus's `health_check`, `match` and `slow_start=` in the configuration: the model, the
check request, the initial zone state (mandatory, persistent) and the errors with file:line.

The real nginx here is open source (it knows none of these directives), so the wording of
errors nginx Plus words its own way is halb's (see config/nginx_health.py); where nginx's
general rules apply (`invalid parameter "..."`, `... is not allowed here`, `balancing method
does not support parameter "..."`) they are nginx's words.
"""

from __future__ import annotations

import pytest

from halb.balancing.shared import Zone
from halb.config.errors import ConfigError
from halb.config.model import Upstream
from halb.config.nginx import load_text
from halb.l7.upstream import create_zones, peer_specs

F = "/tmp/nginx.conf"


def conf(ups: str = "zone z 64k; server 127.0.0.1:1; server 127.0.0.1:2;",
         loc: str = "proxy_pass http://u; health_check;", http: str = "") -> str:
    return (f"events {{}}\nhttp {{\n{http}\nupstream u {{ {ups} }}\n"
            f"server {{ listen 8080;\nlocation / {{\n{loc}\n}}\n}}\n}}\n")


def upstream(text: str) -> Upstream:
    cfg = load_text(text, F)
    assert cfg.http is not None
    return cfg.http.upstreams["u"]


def error(text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        load_text(text, F)
    return str(exc.value)


def test_defaults() -> None:
    (hc,) = upstream(conf()).health_checks
    assert (hc.interval, hc.jitter, hc.fails, hc.passes, hc.uri, hc.port, hc.match,
            hc.mandatory, hc.persistent, hc.tls) == (5.0, 0.0, 1, 1, "/", 0, None, False,
                                                     False, False)
    assert hc.request == b"GET / HTTP/1.0\r\nHost: u\r\nConnection: close\r\n\r\n"
    assert (hc.connect_timeout, hc.read_timeout) == (60.0, 60.0)
    assert hc.pos is not None and hc.pos.line == 7


def test_parameters_and_the_location_settings() -> None:
    text = conf(loc="proxy_pass http://u; proxy_connect_timeout 2s; proxy_read_timeout 300ms;\n"
                    "health_check interval=500ms jitter=1s fails=3 passes=2 uri=/hc?x=1 "
                    "port=9000 match=ok mandatory persistent type=http;\n"
                    "health_check uri=/second;",
                http="match ok { status 200; }\nproxy_set_header X-Check yes;\n"
                     "proxy_set_header X-Var $host; proxy_http_version 1.1;")
    a, b = upstream(text).health_checks
    assert (a.interval, a.jitter, a.fails, a.passes, a.uri, a.port, a.mandatory,
            a.persistent) == (0.5, 1.0, 3, 2, "/hc?x=1", 9000, True, True)
    assert a.match is not None and a.match.name == "ok"
    assert (a.connect_timeout, a.read_timeout) == (2.0, 0.3)
    # proxy_set_header of the level above; a header with variables is not sent (variables are
    # empty in health checks); nginx's defaults under it
    assert a.request == (b"GET /hc?x=1 HTTP/1.1\r\nX-Check: yes\r\nHost: u\r\n"
                         b"Connection: close\r\n\r\n")
    assert b.uri == "/second" and not b.mandatory


def test_host_override_and_https() -> None:
    (hc,) = upstream(conf(loc='proxy_pass https://u; proxy_set_header Host example.org;\n'
                              'proxy_set_header Connection ""; health_check;')).health_checks
    assert hc.tls
    assert hc.request == b"GET / HTTP/1.0\r\nHost: example.org\r\n\r\n"


def test_match_block() -> None:
    text = conf(loc="proxy_pass http://u; health_check match=m;",
                http='match m { status ! 301-303 307; header Content-Type = text/html;\n'
                     'header X-A ~ "^a+$"; header ! Refresh; header Host; body !~ "maint"; }')
    (hc,) = upstream(text).health_checks
    assert hc.match is not None
    hs = [("Content-Type", "text/html"), ("X-A", "aaa"), ("Host", "h")]
    assert hc.passed(200, hs, b"fine")
    assert not hc.passed(302, hs, b"fine")
    assert not hc.passed(200, hs, b"maint")
    assert not hc.passed(200, [*hs, ("Refresh", "1")], b"fine")
    assert not hc.passed(200, hs[:2], b"fine")


def test_slow_start() -> None:
    ups = upstream(conf(ups="server 127.0.0.1:1 slow_start=30s; server 127.0.0.1:2;",
                        loc="proxy_pass http://u;"))
    assert [s.slow_start for s in ups.servers] == [30.0, 0.0]
    for method in ("least_conn;", "least_time header;"):
        ups = upstream(conf(ups=f"{method} server 127.0.0.1:1 slow_start=1m;",
                            loc="proxy_pass http://u;"))
        assert ups.servers[0].slow_start == 60.0
    # as nginx with `backup`: a method given after the servers is not checked against them
    ups = upstream(conf(ups="server 127.0.0.1:1 slow_start=5s; server 127.0.0.1:2; ip_hash;",
                        loc="proxy_pass http://u;"))
    assert ups.method == "ip_hash"


@pytest.mark.parametrize("ups,loc,http,message,line", [
    ("server 127.0.0.1:1;", "proxy_pass http://u; health_check;", "",
     'health check requires an upstream zone in upstream "u"', 7),
    ("zone z 64k; server 127.0.0.1:1;", "health_check;", "",
     'health check requires "proxy_pass" to an upstream group', 7),
    ("zone z 64k; server 127.0.0.1:1;", "proxy_pass http://$host; health_check;", "",
     'health check requires "proxy_pass" to an upstream group', 7),
    ("zone z 64k; server 127.0.0.1:1;", "proxy_pass http://127.0.0.1:1; health_check;", "",
     'health check requires an upstream zone in upstream "127.0.0.1:1"', 7),
    ("zone z 64k; server 127.0.0.1:1;", "proxy_pass http://u; health_check match=nope;", "",
     'match "nope" not found', 7),
    ("zone z 64k; server 127.0.0.1:1;", "proxy_pass http://u; health_check interval=0;", "",
     'invalid parameter "interval=0"', 7),
    ("zone z 64k; server 127.0.0.1:1;", "proxy_pass http://u; health_check fails=0;", "",
     'invalid parameter "fails=0"', 7),
    ("zone z 64k; server 127.0.0.1:1;", "proxy_pass http://u; health_check passes=x;", "",
     'invalid parameter "passes=x"', 7),
    ("zone z 64k; server 127.0.0.1:1;", "proxy_pass http://u; health_check port=70000;", "",
     'invalid parameter "port=70000"', 7),
    ("zone z 64k; server 127.0.0.1:1;", "proxy_pass http://u; health_check persistent;", "",
     'invalid parameter "persistent"', 7),
    ("zone z 64k; server 127.0.0.1:1;", "proxy_pass http://u; health_check type=grpc;", "",
     'health check "type=grpc" is not supported', 7),
    ("zone z 64k; server 127.0.0.1:1;", "proxy_pass http://u; health_check bogus;", "",
     'invalid parameter "bogus"', 7),
    ("zone z 64k; server 127.0.0.1:1;", "proxy_pass http://u;",
     "health_check;", '"health_check" directive is not allowed here', 3),
    ("hash $uri; server 127.0.0.1:1 slow_start=10s;", "proxy_pass http://u;", "",
     'balancing method does not support parameter "slow_start=10s"', 4),
    ("random; server 127.0.0.1:1 slow_start=10s;", "proxy_pass http://u;", "",
     'balancing method does not support parameter "slow_start=10s"', 4),
    ("server 127.0.0.1:1 slow_start=10ms;", "proxy_pass http://u;", "",
     'invalid parameter "slow_start=10ms"', 4),
    ("server 127.0.0.1:1;", "proxy_pass http://u;", "match m { status abc; }",
     'invalid status "abc"', 3),
    ("server 127.0.0.1:1;", "proxy_pass http://u;", "match m { status 99; }",
     'invalid status "99"', 3),
    ("server 127.0.0.1:1;", "proxy_pass http://u;", "match m { status !; }",
     'invalid number of arguments in "status" directive', 3),
    ("server 127.0.0.1:1;", "proxy_pass http://u;", "match m { header A == b; }",
     'invalid parameter "=="', 3),
    ("server 127.0.0.1:1;", "proxy_pass http://u;", "match m { header; }",
     'invalid number of arguments in "header" directive', 3),
    ("server 127.0.0.1:1;", "proxy_pass http://u;", 'match m { body = "x"; }',
     'invalid parameter "="', 3),
    ("server 127.0.0.1:1;", "proxy_pass http://u;", 'match m { body ~ "(x"; }',
     'pcre2_compile() failed: missing closing parenthesis in "(x"', 3),
    ("server 127.0.0.1:1;", "proxy_pass http://u;", "match m { frob 1; }",
     'unknown directive "frob"', 3),
    ("server 127.0.0.1:1;", "proxy_pass http://u;", "match m { require $x; }",
     '"require" in "match" is not supported', 3),
    ("server 127.0.0.1:1;", "proxy_pass http://u;", "match m { } match m { }",
     'duplicate match "m"', 3),
    ("server 127.0.0.1:1;", "proxy_pass http://u;", "match { }",
     'invalid number of arguments in "match" directive', 3),
])
def test_errors(ups: str, loc: str, http: str, message: str, line: int) -> None:
    assert error(conf(ups, loc, http)) == f"{message} in {F}:{line}"


# -- the zone's initial state ---------------------------------------------------------------


def healthy(zone: Zone) -> list[bool | None]:
    return [zone.healthy(i) for i in range(zone.slots)]


def test_without_mandatory_servers_start_healthy_and_slow_start_is_in_the_specs() -> None:
    ups = upstream(conf(ups="zone z 64k; server 127.0.0.1:1 slow_start=7s; "
                            "server 127.0.0.1:2;"))
    assert [kw["slow_start"] for _, kw in peer_specs(ups)] == [7.0, 0.0]
    assert healthy(create_zones({"u": ups})["u"]) == [True, True]


def test_mandatory_servers_start_checking() -> None:
    ups = upstream(conf(loc="proxy_pass http://u; health_check mandatory;"))
    assert healthy(create_zones({"u": ups})["u"]) == [False, False]


def test_persistent_carries_up_across_a_reload() -> None:
    old = upstream(conf(loc="proxy_pass http://u; health_check mandatory persistent;"))
    zones = create_zones({"u": old})
    zones["u"].peers(peer_specs(old))[0].healthy = True  # the checker found :1 healthy
    new = upstream(conf(ups="zone z 64k; server 127.0.0.1:3; server 127.0.0.1:1; "
                            "server 127.0.0.1:2;",
                        loc="proxy_pass http://u; health_check mandatory persistent;"))
    assert healthy(create_zones({"u": new}, (zones, {"u": old}))["u"]) == [False, True, False]
    # without `persistent` every server checks again
    plain = upstream(conf(loc="proxy_pass http://u; health_check mandatory;"))
    assert healthy(create_zones({"u": plain}, (zones, {"u": old}))["u"]) == [False, False]
