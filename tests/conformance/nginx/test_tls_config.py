"""`nginx -t` against halb on TLS, realip and proxy-ssl configurations: the same [emerg]
message (certificates are loaded as nginx loads them, so a missing file, a key that does not
match or a bad cipher list fails the test of the configuration), the same [warn] lines, and
the configurations nginx accepts (seed 002 §2-32's server with `ssl on`) load in both."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from test_config_errors import nginx_says
from test_tls import make_certs

from halb.config.errors import ConfigError
from halb.config.nginx import load
from halb.l7 import tls

pytestmark = pytest.mark.peer

EV = "events {}\n"
A = "ssl_certificate {C}/a.test.pem; ssl_certificate_key {C}/a.test.key;"


def srv(body: str, listen: str = "8443 ssl") -> str:
    return EV + f"http {{\n server {{\n  listen {listen};\n  {body}\n }}\n}}\n"


BROKEN: list[tuple[str, str]] = [
    ("listen-ssl-without-certificate", srv("server_name a;")),
    ("default-server-without-certificate", EV + "http {\n server { listen 8443 ssl; }\n"
     f" server {{ listen 8443 ssl; server_name b; {A} }}\n}}\n"),
    ("ssl-on-without-certificate", srv("ssl on;", "8443")),
    ("certificate-without-key", srv("ssl_certificate {C}/a.test.pem;")),
    ("certificate-missing", srv("ssl_certificate {C}/none.pem; "
                                "ssl_certificate_key {C}/a.test.key;")),
    ("key-missing", srv("ssl_certificate {C}/a.test.pem; ssl_certificate_key {C}/none.key;")),
    ("key-mismatch", srv("ssl_certificate {C}/a.test.pem; ssl_certificate_key {C}/b.test.key;")),
    ("certificate-not-pem", srv("ssl_certificate {C}/a.test.csr; "
                                "ssl_certificate_key {C}/a.test.key;")),
    ("key-not-a-key", srv("ssl_certificate {C}/a.test.pem; "
                          "ssl_certificate_key {C}/a.test.pem;")),
    ("certificate-loaded-without-ssl-listen", srv(
        "ssl_certificate {C}/none.pem; ssl_certificate_key {C}/a.test.key;", "8080")),
    ("bad-ciphers", srv(A + " ssl_ciphers NOPE;")),
    ("bad-protocol", srv(A + " ssl_protocols TLSv1.2 TLSv9;")),
    ("session-cache-no-size", srv(A + " ssl_session_cache shared:SSL;")),
    ("session-cache-small", srv(A + " ssl_session_cache shared:SSL:1k;")),
    ("session-cache-word", srv(A + " ssl_session_cache always;")),
    ("session-cache-builtin-size", srv(A + " ssl_session_cache builtin:x;")),
    ("session-timeout", srv(A + " ssl_session_timeout abc;")),
    ("ssl-flag-value", srv(A + " ssl_prefer_server_ciphers yes;")),
    ("ssl-certificate-in-location", srv(A + " location / { ssl_ciphers HIGH; }")),
    ("listen-unknown-parameter", srv(A, "8443 ssl quic")),
    ("real-ip-from-bad-cidr", srv("set_real_ip_from 10.0.0.0/33;", "8080")),
    ("real-ip-from-name", srv("set_real_ip_from example.invalid;", "8080")),
    ("real-ip-header-args", srv("real_ip_header;", "8080")),
    ("real-ip-recursive-value", srv("real_ip_recursive maybe;", "8080")),
    ("proxy-ssl-verify-depth", srv("location / { proxy_ssl_verify_depth x; }", "8080")),
    ("proxy-ssl-protocols", srv("location / { proxy_ssl_protocols SSLv9; }", "8080")),
    ("proxy-ssl-verify-flag", srv("location / { proxy_ssl_verify 1; }", "8080")),
    ("proxy-ssl-verify-without-trusted", srv(
        "location / { proxy_pass https://127.0.0.1:9; proxy_ssl_verify on; }", "8080")),
    ("proxy-ssl-trusted-missing", srv(
        "location / { proxy_pass https://127.0.0.1:9; proxy_ssl_verify on; "
        "proxy_ssl_trusted_certificate {C}/none.pem; }", "8080")),
    ("proxy-ssl-certificate-without-key", srv(
        "location / { proxy_pass https://127.0.0.1:9; proxy_ssl_certificate {C}/a.test.pem; }",
        "8080")),
    ("proxy-ssl-key-mismatch", srv(
        "location / { proxy_pass https://$host:9; proxy_ssl_certificate {C}/a.test.pem; "
        "proxy_ssl_certificate_key {C}/b.test.key; }", "8080")),
    ("proxy-ssl-ciphers", srv(
        "location / { proxy_pass https://127.0.0.1:9; proxy_ssl_ciphers NOPE; }", "8080")),
]

# seed 002 2-32 (the course's HTTPS server) with the test's certificates, and others nginx takes
SEED_2_32 = EV + """http {
    server {
        listen 8443;
        server_name www.imoocdsp.com;
        ssl on;
        ssl_certificate {C}/a.test.pem;
        ssl_certificate_key {C}/a.test.key;
        ssl_session_cache shared:SSL:1m;
        ssl_session_timeout 5m;
        ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:HIGH:!aNULL:!MD5:!RC4:!DHE;
        ssl_protocols TLSv1 TLSv1.1 TLSv1.2;
        ssl_prefer_server_ciphers on;
        location / {
            root html;
            index index.html index.htm;
        }
    }
    server {
        listen 8080;
        server_name www.imoocdsp.com;
        rewrite_by_nothing_here_so_return 1;
    }
}
""".replace("        rewrite_by_nothing_here_so_return 1;\n",
            "        return 301 https://$server_name$request_uri;\n")

VALID: list[tuple[str, str]] = [
    ("seed-002-2-32", SEED_2_32),
    ("http-level-certificate", EV + f"http {{ {A} server {{ listen 8443 ssl; }}"
     " server { listen 8444 ssl http2 proxy_protocol; } }\n"),
    ("two-certificates", srv("ssl_certificate {C}/a.test.pem; ssl_certificate_key "
                             "{C}/a.test.key; ssl_certificate {C}/b.test.pem; "
                             "ssl_certificate_key {C}/b.test.key;")),
    ("session-cache-forms", srv(A + " ssl_session_cache builtin:1000 shared:S:1m;"
                                " ssl_session_tickets off;")),
    ("session-cache-off", srv(A + " ssl_session_cache off;")),
    ("realip", srv("set_real_ip_from 10.0.0.0/8; set_real_ip_from unix:; "
                   "set_real_ip_from 2001:db8::/32; real_ip_header proxy_protocol; "
                   "real_ip_recursive on;", "8080 proxy_protocol")),
    ("realip-low-bits-warning", srv("set_real_ip_from 10.0.0.1/8;", "8080")),
    ("proxy-ssl", srv("location / { proxy_pass https://127.0.0.1:9; proxy_ssl_verify on;"
                      " proxy_ssl_trusted_certificate {C}/ca.pem; proxy_ssl_verify_depth 2;"
                      " proxy_ssl_server_name on; proxy_ssl_name $host;"
                      " proxy_ssl_protocols TLSv1.2 TLSv1.3; proxy_ssl_session_reuse off; }",
                      "8080")),
    ("proxy-ssl-settings-without-https", srv(
        "location / { proxy_pass http://127.0.0.1:9; proxy_ssl_verify on; "
        "proxy_ssl_trusted_certificate {C}/none.pem; proxy_ssl_certificate {C}/none.pem; }",
        "8080")),
    ("proxy-ssl-client-certificate", srv(
        "location / { proxy_pass https://127.0.0.1:9; proxy_ssl_certificate {C}/a.test.pem; "
        "proxy_ssl_certificate_key {C}/a.test.key; }", "8080")),
]

_WARN = re.compile(r"\[warn\] (?:\d+#\d+: )?(.*)")


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tlsconf")
    make_certs(d)
    return d


def _write(base: Path, text: str, certs: Path) -> Path:
    (base / "logs").mkdir()
    conf = base / "nginx.conf"
    conf.write_text(f"pid {base}/nginx.pid;\n" + text.replace("{C}", str(certs)))
    return conf


def halb_says(base: Path, conf: Path) -> tuple[str | None, list[str]]:
    try:
        loaded = load(str(conf), f"{base}/", is_root=os.geteuid() == 0)
        tls.prepare(loaded.config)
    except ConfigError as e:
        return str(e), []
    return None, [str(w) for w in loaded.warnings]


@pytest.mark.parametrize("case", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_same_message(case: tuple[str, str], nginx_binary: str, tmp_path: Path,
                             cert_dir: Path) -> None:
    conf = _write(tmp_path, case[1], cert_dir)
    expected = nginx_says(nginx_binary, tmp_path, conf, "")
    assert expected is not None, "nginx accepted this configuration"
    assert halb_says(tmp_path, conf)[0] == expected


@pytest.mark.parametrize("case", VALID, ids=[c[0] for c in VALID])
def test_valid_in_both_same_warnings(case: tuple[str, str], nginx_binary: str,
                                     tmp_path: Path, cert_dir: Path) -> None:
    conf = _write(tmp_path, case[1], cert_dir)
    proc = subprocess.run([nginx_binary, "-t", "-p", f"{tmp_path}/", "-c", str(conf)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    error, warnings = halb_says(tmp_path, conf)
    assert error is None
    assert warnings == [m.group(1).strip() for m in _WARN.finditer(proc.stderr)]
