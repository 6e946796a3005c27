"""TLS, the PROXY protocol and realip side by side with the real nginx.

The certificates are made here with the openssl CLI (a CA; servers a.test and b.test; a
certificate already expired; one of a CA nobody trusts). Both servers get the same
configuration: which certificate comes for which SNI name (and for none), the server block
Host then chooses, TLS variables, plain HTTP sent to the ssl port (400, and error_page 497),
redirects with https, static files and keep-alive over TLS, seed 002 §2-32's HTTP → HTTPS
redirect, PROXY protocol v1/v2 (good and broken headers, also before a TLS handshake), realip
from X-Forwarded-For / X-Real-IP / proxy_protocol, and proxying to https upstreams (SNI,
verification, keep-alive). Each proxies to its own TLS port, so the upstream is the same
implementation as the proxy on each side.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import HALB_ADDR, Case, Pair, canonical, cert_id, compare, ids, req

from halb.l7.proxy_protocol import build_v1, build_v2

pytestmark = pytest.mark.peer

CONFIG = r"""
    default_type text/plain;
    # TLS: %PORT%. SNI chooses the certificate; Host the server block.
    server {
        listen %ADDR%:%PORT% ssl;
        server_name a.test;
        ssl_certificate %CERTS%/a.test.pem;
        ssl_certificate_key %CERTS%/a.test.key;
        ssl_session_cache shared:SSL:1m;
        ssl_session_timeout 5m;
        ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:HIGH:!aNULL:!MD5:!RC4:!DHE;
        ssl_protocols TLSv1 TLSv1.1 TLSv1.2;
        ssl_prefer_server_ciphers on;
        location / {
            return 200 "a scheme=$scheme https=$https proto=$ssl_protocol cipher=$ssl_cipher sni=$ssl_server_name\n";
        }
        location /moved { return 301 /elsewhere; }
        location /files/ { alias %WWW%/; sendfile on; }
        location /via/ { proxy_pass https://%ADDR%:%PORT%/files/; }  # TLS on both sides
        location /post { proxy_pass https://%ADDR%:%PORT%/; }
        location /echo-real-ip { return 200 "x-real-ip=$http_x_real_ip\n"; }
        location /resume { return 200 "reused=$ssl_session_reused\n"; }
        location /kaback { return 200 "requests=$connection_requests sni=$ssl_server_name\n"; }
    }
    server {
        listen %ADDR%:%PORT% ssl;
        server_name b.test;
        ssl_certificate %CERTS%/b.test.pem;
        ssl_certificate_key %CERTS%/b.test.key;
        error_page 497 https://$host:$server_port$request_uri;
        location / { return 200 "b scheme=$scheme sni=$ssl_server_name\n"; }
    }
    # seed 002 2-32: the plain port sends everyone to https
    server {
        listen %ADDR%:%PORT2%;
        server_name www.imoocdsp.com;
        return 301 https://$server_name$request_uri;
    }
    # PROXY protocol (plain) with realip from it: %PORT3%
    server {
        listen %ADDR%:%PORT3% proxy_protocol;
        server_name pp;
        set_real_ip_from 127.0.0.0/8;
        real_ip_header proxy_protocol;
        location / {
            return 200 "ra=$remote_addr rp=$remote_port ppa=$proxy_protocol_addr ppp=$proxy_protocol_port rra=$realip_remote_addr\n";
        }
        location /noreal {
            set_real_ip_from 10.0.0.0/8;
            return 200 "ra=$remote_addr ppa=$proxy_protocol_addr\n";
        }
    }
    # PROXY protocol before TLS: %PORT4%
    server {
        listen %ADDR%:%PORT4% ssl proxy_protocol;
        server_name a.test;
        ssl_certificate %CERTS%/a.test.pem;
        ssl_certificate_key %CERTS%/a.test.key;
        location / { return 200 "ppa=$proxy_protocol_addr:$proxy_protocol_port https=$https ra=$remote_addr\n"; }
    }
    # realip from headers, and proxying to the TLS port: %PORT5%
    upstream tlska { server %ADDR%:%PORT%; keepalive 2; }
    server {
        listen %ADDR%:%PORT5%;
        server_name realip;
        set_real_ip_from 127.0.0.0/8;
        set_real_ip_from 10.0.0.0/8;
        real_ip_header X-Forwarded-For;
        proxy_ssl_session_reuse off;  # (nginx shares sessions between these locations)
        location / { return 200 "ra=$remote_addr rp=$remote_port rra=$realip_remote_addr\n"; }
        location /norp { return 200 "ra=$remote_addr rra=$realip_remote_addr\n"; }
        location /viaproxy {  # preaccess runs: the location's realip settings apply
            real_ip_header X-Client;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_pass https://%ADDR%:%PORT%/echo-real-ip;
        }
        location /recursive {
            real_ip_recursive on;
            return 200 "ra=$remote_addr rra=$realip_remote_addr\n";
        }
        location /xrealip {
            real_ip_header X-Real-IP;
            return 200 "ra=$remote_addr\n";
        }
        location /custom {
            real_ip_header X-Client;
            return 200 "ra=$remote_addr\n";
        }
        location /untrusted {
            set_real_ip_from 192.0.2.0/24;
            return 200 "ra=$remote_addr\n";
        }
        location /up/plain { proxy_pass https://%ADDR%:%PORT%/; }
        location /up/sni {
            proxy_pass https://%ADDR%:%PORT%/;
            proxy_ssl_server_name on;
            proxy_ssl_name b.test;
        }
        location /up/verify {
            proxy_pass https://%ADDR%:%PORT%/;
            proxy_ssl_server_name on;
            proxy_ssl_name a.test;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate %CERTS%/ca.pem;
        }
        location /up/verify-no-sni {
            proxy_pass https://%ADDR%:%PORT%/;
            proxy_ssl_name a.test;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate %CERTS%/ca.pem;
        }
        location /up/badname-no-sni {
            proxy_pass https://%ADDR%:%PORT%/;
            proxy_ssl_name c.test;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate %CERTS%/ca.pem;
        }
        location /up/badname {
            proxy_pass https://%ADDR%:%PORT%/;
            proxy_ssl_name c.test;
            proxy_ssl_server_name on;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate %CERTS%/ca.pem;
        }
        location /up/untrusted {
            proxy_pass https://%ADDR%:%PORT6%/;
            proxy_ssl_server_name on;
            proxy_ssl_name a.test;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate %CERTS%/ca.pem;
        }
        location /up/expired {
            proxy_pass https://%ADDR%:%PORT7%/;
            proxy_ssl_server_name on;
            proxy_ssl_name a.test;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate %CERTS%/ca.pem;
        }
        location /up/resume {
            proxy_ssl_session_reuse on;
            proxy_pass https://%ADDR%:%PORT%/resume;
        }
        location /up/ka {
            proxy_pass https://tlska/kaback;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_server_name on;
            proxy_ssl_name a.test;
        }
    }
    # a certificate of an unknown CA (%PORT6%), an expired one (%PORT7%)
    server {
        listen %ADDR%:%PORT6% ssl;
        ssl_certificate %CERTS%/rogue.pem;
        ssl_certificate_key %CERTS%/rogue.key;
        return 200 "rogue\n";
    }
    # default_server is not the first server (%PORT11%): its certificate without SNI
    server {
        listen %ADDR%:%PORT11% ssl;
        server_name b.test;
        ssl_certificate %CERTS%/b.test.pem;
        ssl_certificate_key %CERTS%/b.test.key;
        return 200 "first b.test sni=$ssl_server_name\n";
    }
    server {
        listen %ADDR%:%PORT11% ssl default_server;
        server_name a.test;
        ssl_certificate %CERTS%/a.test.pem;
        ssl_certificate_key %CERTS%/a.test.key;
        return 200 "default a.test sni=$ssl_server_name\n";
    }
    # a certificate replaced on disk, then HUP (%PORT10%)
    server {
        listen %ADDR%:%PORT10% ssl;
        ssl_certificate %CERTS%/swap.pem;
        ssl_certificate_key %CERTS%/swap.key;
        return 200 "swap\n";
    }
    # session caches: a 1 s timeout (%PORT8%); no cache and no tickets (%PORT9%)
    server {
        listen %ADDR%:%PORT8% ssl;
        ssl_certificate %CERTS%/a.test.pem;
        ssl_certificate_key %CERTS%/a.test.key;
        ssl_session_cache shared:SHORT:1m;
        ssl_session_timeout 1s;
        return 200 "reused=$ssl_session_reused\n";
    }
    server {
        listen %ADDR%:%PORT9% ssl;
        ssl_certificate %CERTS%/a.test.pem;
        ssl_certificate_key %CERTS%/a.test.key;
        ssl_session_cache off;
        ssl_session_tickets off;
        return 200 "reused=$ssl_session_reused\n";
    }
    server {
        listen %ADDR%:%PORT7% ssl;
        ssl_certificate %CERTS%/expired.pem;
        ssl_certificate_key %CERTS%/expired.key;
        return 200 "expired\n";
    }
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certs(d: Path) -> dict[str, str]:
    """A CA, a.test and b.test signed by it, an expired a.test, and a self-made CA's a.test.
    Returns the certificate ids (sha256 of the DER) by name."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                 "-days", "30", "-subj", f"/CN=halb test {ca}", cwd=d)
    for name, cn, ca, days in (("a.test", "a.test", "ca", "30"), ("b.test", "b.test", "ca", "30"),
                               ("expired", "a.test", "ca", "0"),
                               ("rogue", "a.test", "rogue-ca", "30")):
        (d / f"{name}.ext").write_text(f"subjectAltName=DNS:{cn}\n")
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
                 f"{ca}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", days,
                 "-extfile", f"{name}.ext", cwd=d)
    return {name: cert_id(ssl.PEM_cert_to_DER_cert((d / f"{name}.pem").read_text()))
            for name in ("a.test", "b.test", "expired", "rogue")}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("certs")
    ids = make_certs(d)
    shutil.copy(d / "a.test.pem", d / "swap.pem")
    shutil.copy(d / "a.test.key", d / "swap.key")
    return d, ids


@pytest.fixture(scope="module")
def _tls_pairs(certs: tuple[Path, dict[str, str]], docroot: dict[str, Path],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Pair]]:
    started: list[Pair] = []
    try:
        yield started
    finally:
        for pair in started:
            pair.stop()


@pytest.fixture
def tls_pair(nginx_binary: str, _tls_pairs: list[Pair], certs: tuple[Path, dict[str, str]],
             docroot: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """nginx and halb on CONFIG, started once for the module (the table prefetched)."""
    if not _tls_pairs:
        dirs = {**docroot, "certs": certs[0]}
        pair = Pair(CONFIG, tmp_path_factory.mktemp("tls"), dirs, nginx_binary, nports=11)
        pair.start()
        _tls_pairs.append(pair)
        time.sleep(max(0.0, 1.1 - (time.time() % 1)))  # the expired certificate is expired
        pair.prefetch(CASES)
    return _tls_pairs[0]


def get(path: str, host: str = "a.test", **kw: object) -> bytes:
    return req(path, host=host, **kw)  # type: ignore[arg-type]


P, P2, P3, P4, P5 = 0, 1, 2, 3, 4
V1 = build_v1("192.0.2.7", "198.51.100.1", 40000, 443)
V2 = build_v2("2001:db8::7", "2001:db8::1", 40001, 443)

CASES = [
    # which certificate, which server
    Case("sni-a", get("/"), tls="a.test", expect={"status": 200}),
    Case("sni-b", get("/", host="b.test"), tls="b.test"),
    Case("no-sni-default-cert-host-b", get("/", host="b.test"), tls=""),
    Case("unknown-sni", get("/", host="c.test"), tls="c.test"),
    Case("sni-b-host-a", get("/"), tls="b.test"),
    Case("sni-upper-case", get("/"), tls="B.TEST"),
    Case("default-server-no-sni", get("/", host="b.test"), tls="", port_index=10),
    Case("default-server-unknown-sni", get("/", host="x.test"), tls="x.test", port_index=10),
    Case("default-server-sni-first", get("/", host="a.test"), tls="b.test", port_index=10),
    Case("keepalive-over-tls", get("/") + get("/", host="b.test") + get("/x"), tls="a.test"),
    Case("redirect-is-https", get("/moved"), tls="a.test", expect={"status": 301}),
    Case("static-over-tls", get("/files/a.txt"), tls="a.test"),
    Case("big-file-over-tls", get("/files/big1m.bin"), tls="a.test"),
    Case("head-over-tls", get("/files/a.txt", method="HEAD"), tls="a.test"),
    Case("proxied-big-file-tls-both-sides", get("/via/big1m.bin"), tls="a.test"),
    Case("proxied-post-body-tls-both-sides", get("/post", method="POST", body=b"x" * 200_000),
         tls="a.test"),
    # broken handshakes: OpenSSL's alert, then close
    Case("tls-garbage-record", b"\x16\x03\x01\x00\x05hello", requests=1),
    Case("tls-truncated-hello", b"\x16\x03\x01", requests=1, half_close=True),
    Case("tls-sslv2-style-byte", b"\x80\x2e\x01\x00\x02" + bytes(40), requests=1),
    # plain HTTP on the ssl port
    Case("plain-on-ssl-port", get("/"), expect={"status": 400, "closed": True}),
    Case("plain-on-ssl-port-error-page-497", get("/q?x=1", host="b.test"),
         expect={"status": 302}),
    Case("plain-on-ssl-port-http10", b"GET / HTTP/1.0\r\n\r\n"),
    # seed 002 2-32
    Case("seed-http-to-https", get("/index.html?a=1", host="www.imoocdsp.com"),
         port_index=P2, expect={"status": 301}),
    # PROXY protocol
    Case("pp-v1", V1 + get("/"), port_index=P3, expect={"status": 200}),
    Case("pp-v2", V2 + get("/"), port_index=P3),
    Case("pp-v1-keepalive", V1 + get("/") + get("/noreal"), port_index=P3),
    Case("pp-v1-untrusted-location", V1 + get("/noreal"), port_index=P3),
    Case("pp-unknown", b"PROXY UNKNOWN\r\n" + get("/noreal"), port_index=P3),
    Case("pp-v2-local", build_v2("192.0.2.1", "192.0.2.2", 1, 2, command=0)
         + get("/noreal"), port_index=P3),
    Case("pp-missing", get("/"), port_index=P3, expect={"closed": True}),
    Case("pp-bad-port", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n" + get("/"),
         port_index=P3),
    Case("pp-bad-family", b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n" + get("/"), port_index=P3),
    Case("pp-bad-address", b"PROXY TCP4 1.2.3.z 5.6.7.8 1 2\r\n" + get("/"), port_index=P3),
    Case("pp-v2-bad-version", b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + bytes(12)
         + get("/"), port_index=P3),
    Case("pp-v2-too-short", b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x40" + bytes(12),
         port_index=P3),
    Case("pp-then-tls", get("/"), preamble=V1, tls="a.test", port_index=P4),
    Case("pp-v2-then-tls", get("/"), preamble=V2, tls="", port_index=P4),
    Case("pp-then-plain-on-ssl", V1 + get("/"), port_index=P4),
    # realip from headers
    Case("xff-last", get("/", headers=[("X-Forwarded-For", "203.0.113.9, 10.1.1.1")]),
         port_index=P5),
    Case("xff-recursive", get("/recursive", headers=[
        ("X-Forwarded-For", "203.0.113.9, 10.1.1.1"), ("X-Forwarded-For", "10.2.2.2")]),
        port_index=P5),
    Case("xff-recursive-all-trusted", get("/recursive", headers=[
        ("X-Forwarded-For", "10.9.9.9, 10.1.1.1")]), port_index=P5),
    Case("xff-port", get("/", headers=[("X-Forwarded-For", "[2001:db8::5]:8080")]),
         port_index=P5),
    Case("xff-garbage", get("/norp", headers=[("X-Forwarded-For", "not-an-address")]),
         port_index=P5),
    Case("xff-absent", get("/norp"), port_index=P5),
    Case("location-realip-preaccess", get("/viaproxy", headers=[
        ("X-Client", "198.51.100.30")]), port_index=P5),
    Case("x-real-ip", get("/xrealip", headers=[("X-Real-IP", "198.51.100.20")]),
         port_index=P5),
    Case("custom-header", get("/custom", headers=[("X-Client", "198.51.100.21")]),
         port_index=P5),
    Case("untrusted-peer", get("/untrusted", headers=[("X-Forwarded-For", "198.51.100.3")]),
         port_index=P5),
    # https upstreams
    Case("upstream-no-sni", get("/up/plain"), port_index=P5, expect={"status": 200}),
    Case("upstream-sni", get("/up/sni"), port_index=P5),
    Case("upstream-verified", get("/up/verify"), port_index=P5, expect={"status": 200}),
    Case("upstream-name-mismatch", get("/up/badname"), port_index=P5,
         expect={"status": 502}),
    Case("upstream-verified-no-sni", get("/up/verify-no-sni"), port_index=P5,
         expect={"status": 200}),
    Case("upstream-name-mismatch-no-sni", get("/up/badname-no-sni"), port_index=P5,
         expect={"status": 502}),
    Case("upstream-unknown-ca", get("/up/untrusted"), port_index=P5, expect={"status": 502}),
    Case("upstream-expired", get("/up/expired"), port_index=P5, expect={"status": 502}),
    Case("upstream-keepalive", get("/up/ka") + get("/up/ka") + get("/up/ka"), port_index=P5),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_same_as_nginx(tls_pair: Pair, case: Case) -> None:
    compare(tls_pair, case)


def test_certificates_served(tls_pair: Pair, certs: tuple[Path, dict[str, str]]) -> None:
    """The comparison above holds the certificates equal; here they are the right ones."""
    _, cid = certs
    for name, sni, want, port in (("a", "a.test", "a.test", P), ("b", "b.test", "b.test", P),
                                  ("none", "", "a.test", P), ("other", "c.test", "a.test", P),
                                  ("default", "", "a.test", 10), ("first", "b.test", "b.test", 10)):
        got = tls_pair.run(Case(f"cert-{name}", get("/"), tls=sni, port_index=port))["halb"]
        assert got.tls.endswith(f"cert={cid[want]}"), (name, got.tls)
    ka = tls_pair.run(CASES[-1])["halb"]  # the upstream connection is kept: 1, 2, 3 ...
    counts = [int(r.body.split(b"=")[1].split()[0]) for r in ka.responses]
    assert len(counts) == 3 and counts == list(range(counts[0], counts[0] + 3)), counts
    assert all(r.body.endswith(b" sni=a.test\n") for r in ka.responses)


def test_error_log_lines(tls_pair: Pair) -> None:
    """The lines nginx writes for a broken PROXY header and for plain HTTP on an ssl port."""
    halb = tls_pair["halb"]
    port3 = tls_pair.ports[P3]
    before = halb.error_log_size()
    tls_pair.run(Case("log-broken", b"GET /x HTTP/1.0\r\n\r\n", port_index=P3))
    tls_pair.run(Case("log-plain", get("/logged")))
    deadline = time.monotonic() + 3
    text = ""
    while time.monotonic() < deadline:
        text = halb.error_log_since(before)
        if "plain HTTP" in text and "broken header" in text:
            break
        time.sleep(0.05)
    assert ('[error]' in text and 'broken header: "GET /x HTTP/1.0\r\n\r\n" while reading '
            f'PROXY protocol, client: 127.0.0.1, server: {HALB_ADDR}:{port3}\n') in text, text
    assert ("[info]" in text and "client sent plain HTTP request to HTTPS port while reading "
            'client request headers, client: 127.0.0.1, server: a.test, request: '
            '"GET /logged HTTP/1.1", host: "a.test"') in text, text


def test_bad_handshakes_leave_the_worker_serving(tls_pair: Pair) -> None:
    for junk in (b"\x16\x03\x01\x00\x05hello", b"\x16" + bytes(300), b"\x16"):
        got = tls_pair.run(Case("junk", junk, requests=1, half_close=True, wait=1.0))
        assert canonical(got["halb"]) == canonical(got["nginx"])
    got = tls_pair.run(Case("after-junk", get("/"), tls="a.test"))
    assert [r.status for r in got["halb"].responses] == [200]


def _resumed(port: int, addr: str, pause: float = 0.0) -> list[bytes]:
    """Two connections, the second offering the first's session: $ssl_session_reused."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    session = None
    out = []
    for i in range(2):
        if i:
            time.sleep(pause)
        with socket.create_connection((addr, port), timeout=3) as raw, \
                ctx.wrap_socket(raw, server_hostname="a.test", session=session) as s:
            s.sendall(get("/resume", headers=[("Connection", "close")]))
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            session = s.session
            out.append(data.rsplit(b"\r\n\r\n", 1)[-1])
    return out


def test_session_resumption(tls_pair: Pair) -> None:
    """A client that offers its session back resumes it, on nginx and on halb."""
    want = _resumed(tls_pair.ports[P], tls_pair["nginx"].addr)
    assert want[1].startswith(b"reused=r"), want
    assert _resumed(tls_pair.ports[P], tls_pair["halb"].addr) == want


def test_session_cache_settings(tls_pair: Pair) -> None:
    """ssl_session_timeout ends a session's life; `ssl_session_cache off` with tickets off
    resumes nothing."""
    p8, p9 = tls_pair.ports[7], tls_pair.ports[8]
    for name in ("nginx", "halb"):
        addr = tls_pair[name].addr
        assert _resumed(p8, addr) == [b"reused=.\n", b"reused=r\n"], name
        assert _resumed(p9, addr) == [b"reused=.\n", b"reused=.\n"], name
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        expired = {name: pool.submit(_resumed, p8, tls_pair[name].addr, 2.1)
                   for name in ("nginx", "halb")}
        assert expired["halb"].result() == expired["nginx"].result() == [
            b"reused=.\n", b"reused=.\n"]


def test_realip_address_ends_with_its_request(tls_pair: Pair) -> None:
    """A keep-alive connection: the next request (here one that cannot be parsed) is logged
    with the connection's own address again, as after nginx's realip cleanup."""
    send = get("/norp", headers=[("X-Forwarded-For", "203.0.113.77")]) + \
        b"BAD\x01 / HTTP/1.1\r\n\r\n"
    tls_pair.run(Case("realip-then-bad", send, port_index=P5, requests=2))
    deadline = time.monotonic() + 3
    while True:
        tails = {name: [ln.split(" ", 1)[0] for ln in (tls_pair[name].prefix / "access.log")
                        .read_text().splitlines()[-2:] if " 400 " in ln or "/norp" in ln]
                 for name in ("nginx", "halb")}
        if all(len(t) == 2 for t in tails.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert tails["nginx"] == ["203.0.113.77", "127.0.0.1"]
    assert tails["halb"] == tails["nginx"]


def test_reload_takes_new_certificates(tls_pair: Pair, certs: tuple[Path, dict[str, str]]
                                       ) -> None:
    """HUP reads the certificate files again; one that cannot be loaded keeps the old ones."""
    d, cid = certs
    case = Case("swap", get("/"), tls="a.test", port_index=9)

    def served() -> dict[str, str]:
        return {name: ex.tls.rsplit("cert=", 1)[-1] for name, ex in tls_pair.run(case).items()}

    def hup_until(want: str) -> dict[str, str]:
        for name in ("nginx", "halb"):
            proc = tls_pair[name].proc
            assert proc is not None
            proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 8
        while (got := served()) != {"nginx": want, "halb": want} and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        return got

    assert served() == {"nginx": cid["a.test"], "halb": cid["a.test"]}
    shutil.copy(d / "b.test.pem", d / "swap.pem")
    shutil.copy(d / "b.test.key", d / "swap.key")
    assert hup_until(cid["b.test"]) == {"nginx": cid["b.test"], "halb": cid["b.test"]}
    (d / "swap.key").write_text("not a key\n")  # the reload fails: b.test stays
    before = tls_pair["halb"].error_log_size()
    for name in ("nginx", "halb"):
        proc = tls_pair[name].proc
        assert proc is not None
        proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 8
    while "cannot load certificate key" not in tls_pair["halb"].error_log_since(before) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert "[emerg]" in tls_pair["halb"].error_log_since(before)
    assert served() == {"nginx": cid["b.test"], "halb": cid["b.test"]}


def test_upstream_session_reuse(tls_pair: Pair) -> None:
    """proxy_ssl_session_reuse (on by default): a new upstream connection resumes the
    peer's last session; off: never."""
    case = Case("up-resume", get("/up/resume") + get("/up/resume") + get("/up/resume"),
                port_index=P5)
    got = {name: [r.body for r in ex.responses] for name, ex in tls_pair.run(case).items()}
    assert got["nginx"][1:] == [b"reused=r\n", b"reused=r\n"], got
    assert got["halb"] == got["nginx"]
    off = Case("up-no-resume", get("/up/plain/resume") * 2, port_index=P5)
    got = {name: [r.body for r in ex.responses] for name, ex in tls_pair.run(off).items()}
    assert got["halb"] == got["nginx"] == [b"reused=.\n", b"reused=.\n"], got
