"""The ssl, realip and proxy-ssl directives (config/nginx_ssl.py, PURE): values and the
checks nginx makes while parsing (certificates are loaded later, by l7/tls.py)."""

from __future__ import annotations

import ipaddress

import pytest

from halb.config.errors import ConfigError
from halb.config.nginx import load_text
from halb.config.nginx_ssl import RealIpFrom, SessionCache

F = "/tmp/nginx.conf"
CERT = "ssl_certificate /c/a.pem; ssl_certificate_key /c/a.key;"


def conf(http: str) -> object:
    return load_text(f"events {{}}\nhttp {{\n{http}\n}}\n")


def error(http: str) -> str:
    with pytest.raises(ConfigError) as e:
        conf(http)
    return str(e.value)


def test_listen_flags_and_inheritance() -> None:
    c = conf(f"{CERT}\nserver {{ listen 8443 ssl http2 proxy_protocol; }}")
    srv = c.http.servers[0]  # type: ignore[attr-defined]
    ls = srv.listens[0]
    assert (ls.ssl, ls.http2, ls.proxy_protocol) == (True, True, True)
    assert srv.conf.extra["ssl_certificate"] == ["/c/a.pem"]


def test_session_cache_values() -> None:
    c = conf(f"server {{ listen 8443 ssl; {CERT} ssl_session_cache builtin:100 shared:S:1m; "
             "ssl_session_timeout 10m; ssl_session_tickets off; }")
    extra = c.http.servers[0].conf.extra  # type: ignore[attr-defined]
    assert extra["ssl_session_cache"] == SessionCache("shared", 100, "S", 1024 * 1024)
    assert extra["ssl_session_timeout"] == 600
    assert extra["ssl_session_tickets"] is False


@pytest.mark.parametrize("http,message", [
    ("server { listen 8443 ssl; }",
     f'no "ssl_certificate" is defined for the "listen ... ssl" directive in {F}:3'),
    ("server {\n ssl on;\n}",
     f'no "ssl_certificate" is defined for the "ssl" directive in {F}:4'),
    ("server { ssl_certificate /c/a.pem; }",
     'no "ssl_certificate_key" is defined for certificate "/c/a.pem"'),
    (f"server {{ {CERT} ssl_session_cache shared:x:1k; }}",
     f'session cache "shared:x:1k" is too small in {F}:3'),
    (f"server {{ {CERT} ssl_protocols TLSv1.4; }}", f'invalid value "TLSv1.4" in {F}:3'),
    ("server { set_real_ip_from 300.0.0.1; }",
     f'host not found in set_real_ip_from "300.0.0.1" in {F}:3'),
])
def test_errors(http: str, message: str) -> None:
    assert error(http) == message


def test_realip_values() -> None:
    c = conf("set_real_ip_from 10.0.0.0/8; set_real_ip_from unix:;\n"
             "server { real_ip_header X-Forwarded-For; location / { set_real_ip_from ::1; "
             "real_ip_header CF-Connecting-IP; real_ip_recursive on; } }")
    srv = c.http.servers[0]  # type: ignore[attr-defined]
    assert srv.conf.extra["set_real_ip_from"] == [
        RealIpFrom(ipaddress.ip_network("10.0.0.0/8")), RealIpFrom(None)]
    assert srv.conf.extra["real_ip_header"] == ("x-forwarded-for", "x-forwarded-for")
    loc = srv.locations[0].conf.extra
    assert loc["set_real_ip_from"] == [RealIpFrom(ipaddress.ip_network("::1/128"))]
    assert loc["real_ip_header"] == ("header", "cf-connecting-ip")
    assert loc["real_ip_recursive"] is True
