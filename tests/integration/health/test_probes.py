"""health/probes: each checker against loopback servers that answer right, wrong, slowly or
not at all, and MISC_CHECK scripts that pass, fail, set a weight or hang.

keepalived's own genhash (shipped with keepalived, same request code as HTTP_GET) is the oracle
for the request bytes and for the body digest when it is installed.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

import pytest

from halb.config.keepalived import load_text
from halb.config.keepalived_lvs import virtual_servers
from halb.config.keepalived_lvs_model import Checker
from halb.health.probes.http import http_get, request
from halb.health.probes.misc import misc_check
from halb.health.probes.ssl import client_context, ssl_get
from halb.health.probes.tcp import tcp_check

BODY = b"<html>hello from the real server</html>\n"
BODY_MD5 = hashlib.md5(BODY).hexdigest()


def checker(kind: str, port: int, body: str = "", *, rs: str = "127.0.0.1",
            timeout: float = 0.5, rs_extra: str = "") -> Checker:
    text = (f"virtual_server 127.0.0.1 80 {{\n protocol TCP\n lb_algo rr\n lb_kind NAT\n"
            f" real_server {rs} {port} {{\n{rs_extra}\n  {kind} {{\n"
            f"   connect_timeout {timeout}\n{body}\n  }}\n }}\n}}\n")
    cfg = virtual_servers(load_text(text, config_id="vm").config)
    assert [w.message for w in cfg.warnings] == []
    return cfg.virtual_servers[0].real_servers[0].checkers[0]


def aio(fn: Callable[..., Coroutine[object, object, None]]) -> Callable[..., None]:
    """Run an async test in its own event loop (bounded: 60 s)."""

    @functools.wraps(fn)
    def run(*args: object, **kw: object) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kw), 60))

    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- TCP_CHECK -------------------------------------------------------------------------------


@aio
async def test_tcp_check_against_a_listener_a_closed_port_and_a_full_backlog() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        assert (await tcp_check(checker("TCP_CHECK", port))).ok
        refused = await tcp_check(checker("TCP_CHECK", free_port()))
        assert not refused.ok and not refused.unavailable
    finally:
        listener.close()
    # a server that never completes the handshake: listen(0) with its accept queue full
    # drops the SYN, so the connect times out after connect_timeout
    slow = socket.socket()
    slow.bind(("127.0.0.1", 0))
    slow.listen(0)
    fillers = []
    try:
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(slow.getsockname())
            except BlockingIOError:
                pass
            fillers.append(c)
        await asyncio.sleep(0.05)
        res = await tcp_check(checker("TCP_CHECK", slow.getsockname()[1], timeout=0.3))
        assert (res.ok, res.message) == (False, "timeout")
    finally:
        for c in fillers:
            c.close()
        slow.close()


@aio
async def test_tcp_check_binds_its_source_address() -> None:
    seen: list[str] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        res = await tcp_check(checker("TCP_CHECK", port, "bindto 127.0.0.7"))
        conn, peer = listener.accept()
        conn.close()
        seen.append(peer[0])
    finally:
        listener.close()
    assert res.ok and seen == ["127.0.0.7"]
    bad = await tcp_check(checker("TCP_CHECK", port, "bindto 198.18.255.254"))
    assert bad.unavailable  # cannot bind an address we do not have: keepalived reschedules


# -- HTTP_GET --------------------------------------------------------------------------------


@dataclass
class Web:
    """A loopback HTTP/1.0 server: what it answers is up to the test."""

    port: int = 0
    requests: list[bytes] = field(default_factory=list)
    server: asyncio.base_events.Server | None = None
    tls: ssl.SSLContext | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.answer(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        path = head.split(b" ")[1].decode()
        if path == "/slow":
            await asyncio.sleep(5)
        elif path == "/silent-close":
            return
        elif path == "/500":
            writer.write(b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops\n")
        elif path == "/redirect":
            writer.write(b"HTTP/1.0 301 Moved Permanently\r\nLocation: /\r\n\r\n")
        elif path == "/trailing":
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: " + str(len(BODY)).encode() +
                         b"\r\n\r\n" + BODY + b"junk after the body")
        else:
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n" + BODY)
        await writer.drain()

    async def __aenter__(self) -> Web:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def url(path: str, extra: str = "") -> str:
    return f"   url {{\n    path {path}\n{extra}\n   }}"


@aio
async def test_http_get_right_wrong_and_slow_answers() -> None:
    async with Web() as web:
        ok = await http_get(checker("HTTP_GET", web.port, url("/", f"digest {BODY_MD5}")), 0)
        assert (ok.ok, ok.message) == (True, "MD5 digest")
        assert web.requests[-1] == (f"GET / HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\n"
                                    f"Host: 127.0.0.1:{web.port}\r\n\r\n").encode()
        bad = await http_get(checker("HTTP_GET", web.port, url("/500")), 0)
        assert (bad.ok, bad.message) == (False, "HTTP status code error to")
        wanted = await http_get(checker("HTTP_GET", web.port, url("/500", "status_code 500")), 0)
        assert wanted.ok
        redirect = await http_get(checker("HTTP_GET", web.port, url("/redirect")), 0)
        assert not redirect.ok
        digest = await http_get(checker("HTTP_GET", web.port, url("/", "digest " + "0" * 32)), 0)
        assert (digest.ok, digest.message) == (False, "MD5 digest error to")
        # Content-Length bounds the digested body, as keepalived
        trailing = await http_get(checker("HTTP_GET", web.port,
                                          url("/trailing", f"digest {BODY_MD5}")), 0)
        assert trailing.ok
        slow = await http_get(checker("HTTP_GET", web.port, url("/slow"), timeout=0.3), 0)
        assert (slow.ok, slow.message) == (False, "Timeout WEB read")
        silent = await http_get(checker("HTTP_GET", web.port, url("/silent-close")), 0)
        assert (silent.ok, silent.message) == (False, "Read, no data received from ")
    refused = await http_get(checker("HTTP_GET", web.port, url("/")), 0)
    assert (refused.ok, refused.message) == (False, "Connection failed")


@aio
async def test_http_get_sends_the_virtualhost_and_the_protocol() -> None:
    async with Web() as web:
        c = checker("HTTP_GET", web.port, "http_protocol 1.1\n virtualhost www.example\n" +
                    url("/x") + "\n" + url("/y", "virtualhost other.example"))
        assert (await http_get(c, 0)).ok and (await http_get(c, 1)).ok
        assert web.requests == [
            b"GET /x HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\n"
            b"Host: www.example\r\n\r\n",
            b"GET /y HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\n"
            b"Host: other.example\r\n\r\n"]


def test_request_bytes_and_digest_are_genhash_s(tmp_path: pathlib.Path) -> None:
    """keepalived's genhash sends HTTP_GET's request and prints the digest keepalived
    compares: halb's must be the same."""
    genhash = shutil.which("genhash") or "/usr/bin/genhash"
    if not os.access(genhash, os.X_OK):
        pytest.skip("genhash (keepalived) is not installed")

    async def main() -> tuple[list[bytes], str]:
        async with Web() as web:
            proc = await asyncio.create_subprocess_exec(
                genhash, "-s", "127.0.0.1", "-p", str(web.port), "-u", "/index.html",
                "-V", "www.example", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            out, _ = await asyncio.wait_for(proc.communicate(), 10)
            return web.requests, out.decode()

    requests, out = asyncio.run(main())
    c = checker("HTTP_GET", 8080, "virtualhost www.example\n" + url("/index.html"))
    assert requests == [request(c, c.urls[0])]
    assert out.split()[-1].lower() == BODY_MD5


# -- SSL_GET ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=real-server.example"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@aio
async def test_ssl_get_without_verification(certificate: tuple[str, str]) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*certificate)
    names: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,misc,func-returns-value]
    async with Web(tls=server_ctx) as web:
        # a self-signed certificate for another name: keepalived does not verify
        ok = await ssl_get(checker("SSL_GET", web.port, url("/", f"digest {BODY_MD5}")), 0)
        assert ok.ok
        bad = await ssl_get(checker("SSL_GET", web.port, url("/500")), 0, client_context())
        assert (bad.ok, bad.message) == (False, "HTTP status code error to")
        sni = checker("SSL_GET", web.port, "enable_sni\n virtualhost secure.example\n" + url("/"))
        assert (await ssl_get(sni, 0)).ok
        slow = await ssl_get(checker("SSL_GET", web.port, url("/slow"), timeout=0.3), 0)
        assert (slow.ok, slow.message) == (False, "Timeout WEB read")
    assert names == [None, None, "secure.example", None]
    refused = await ssl_get(checker("SSL_GET", web.port, url("/")), 0)
    assert (refused.ok, refused.message) == (False, "Connection failed")

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")  # no TLS on the other side
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain, "127.0.0.1", 0)
    try:
        res = await ssl_get(checker("SSL_GET", server.sockets[0].getsockname()[1], url("/")), 0)
        assert (res.ok, res.message) == (False, "SSL handshake/communication error connecting to")
    finally:
        server.close()
        await server.wait_closed()


# -- MISC_CHECK ------------------------------------------------------------------------------


def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting for a parent that never reaps."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def script(tmp_path: pathlib.Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def misc(path: str, extra: str = "") -> Checker:
    text = (f"virtual_server 127.0.0.1 80 {{\n protocol TCP\n lb_algo rr\n lb_kind NAT\n"
            f" real_server 127.0.0.1 80 {{\n  MISC_CHECK {{\n   misc_path \"{path}\"\n"
            f"{extra}\n  }}\n }}\n}}\n")
    cfg = virtual_servers(load_text(text, config_id="vm").config)
    return cfg.virtual_servers[0].real_servers[0].checkers[0]


@aio
async def test_misc_exit_codes(tmp_path: pathlib.Path) -> None:
    for code in (0, 1, 10):
        res = await misc_check(misc(script(tmp_path, f"exit{code}", f"exit {code}")))
        assert (res.exit_status, res.signal, res.timed_out) == (code, None, False)
    # arguments are passed without a shell: quotes group words, $X is not expanded
    out = tmp_path / "argv"
    echo = script(tmp_path, "argv", f'printf "%s|" "$@" > {out}')
    res = await misc_check(misc(f"{echo} 'a b' $HOME"))
    assert res.exit_status == 0 and out.read_text() == "a b|$HOME|"


@aio
async def test_misc_that_hangs_past_misc_timeout_is_killed_with_its_children(
        tmp_path: pathlib.Path) -> None:
    pidfile = tmp_path / "child.pid"
    hang = script(tmp_path, "hang", f"sleep 30 &\necho $! > {pidfile}\nwait")
    res = await misc_check(misc(hang, "misc_timeout 1"))
    assert (res.exit_status, res.signal, res.timed_out) == (None, signal.SIGTERM, True)
    child = int(pidfile.read_text())
    await asyncio.sleep(0.1)
    assert not running(child)  # the script's background child went with its process group


@aio
async def test_misc_that_is_missing_is_unavailable(tmp_path: pathlib.Path) -> None:
    res = await misc_check(misc(str(tmp_path / "nope")))
    assert res.unavailable


