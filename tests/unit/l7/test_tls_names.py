"""l7/tls.py's name rules: the upstream name check (proxy_ssl_verify without SNI, as
X509_check_host) and proxy_ssl_name's port stripping."""

from __future__ import annotations

from typing import Any

import pytest

from halb.l7.tls import _strip_port, check_peer


class _Transport:
    def __init__(self, cert: dict[str, Any]) -> None:
        self.cert = cert

    def get_extra_info(self, name: str) -> Any:
        return self.cert if name == "peercert" else None


def _cert(*sans: tuple[str, str], cn: str = "") -> dict[str, Any]:
    return {"subjectAltName": sans, "subject": ((("commonName", cn),),) if cn else ()}


@pytest.mark.parametrize("cert,name,ok", [
    (_cert(("DNS", "a.test")), "a.test", True),
    (_cert(("DNS", "a.test")), "A.TEST", True),
    (_cert(("DNS", "a.test")), "b.test", False),
    (_cert(("DNS", "*.example.test")), "www.example.test", True),
    (_cert(("DNS", "*.example.test")), "example.test", False),
    (_cert(("DNS", "*.example.test")), "a.b.example.test", False),
    (_cert(("IP Address", "127.0.0.1")), "127.0.0.1", True),
    (_cert(("DNS", "127.0.0.1")), "127.0.0.1", False),
    (_cert(cn="a.test"), "a.test", True),  # no DNS name: the CN
    (_cert(("DNS", "b.test"), cn="a.test"), "a.test", False),
])
def test_check_peer(cert: dict[str, Any], name: str, ok: bool) -> None:
    why = check_peer(_Transport(cert), {"check": name, "extra": None})
    assert (why is None) == ok
    if not ok:
        assert why == (f'upstream SSL certificate does not match "{name}" while SSL '
                       "handshaking to upstream")


def test_nothing_to_check() -> None:
    assert check_peer(_Transport({}), {"check": None, "extra": None}) is None


@pytest.mark.parametrize("name,want", [
    ("a.test:8443", "a.test"), ("a.test", "a.test"), ("[::1]:443", "[::1]"),
    ("::1", "::1"), ("127.0.0.1:9", "127.0.0.1"),
])
def test_strip_port(name: str, want: str) -> None:
    assert _strip_port(name) == want
