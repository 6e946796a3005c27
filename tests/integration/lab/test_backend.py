"""halb backend on loopback: the page and headers name the node, keep-alive and pipelining keep
order, /health follows the health file and SIGUSR1/2, delay and error rate apply, malformed
requests get 400 without disturbing other clients, SIGTERM exits 0."""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from halb.lab.backend import Settings, page, parse_listen, start

PY = sys.executable


async def _exchange(port: int, data: bytes, until: int, timeout: float = 5.0) -> bytes:
    """Send data, read until `until` responses (counted by status lines) or EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    buf = b""
    try:
        async with asyncio.timeout(timeout):
            while buf.count(b"HTTP/1.1 ") < until or not _complete(buf):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buf += chunk
    finally:
        writer.close()
    return buf


def _complete(buf: bytes) -> bool:
    head, sep, body = buf.rpartition(b"\r\n\r\n")
    if not sep:
        return False
    length = int(head.rsplit(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
    return len(body) >= length


def _run(settings: Settings, fn):  # type: ignore[no-untyped-def]
    async def main() -> object:
        backend = await start(settings)
        assert backend.server is not None
        port = backend.server.sockets[0].getsockname()[1]
        try:
            return await fn(backend, port)
        finally:
            backend.server.close()

    return asyncio.run(main())


def test_page_and_headers_name_the_node() -> None:
    async def fn(backend, port):  # type: ignore[no-untyped-def]
        return await _exchange(port, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 1)

    out = _run(Settings(port=0, name="web1"), fn)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"\r\nX-Backend: web1\r\n" in head
    assert b"\r\nX-Backend-Peer: 127.0.0.1:" in head
    assert b"<h1>web1</h1>" in body and b"for /x" in body


def test_pipelined_answers_keep_request_order_despite_delay() -> None:
    reqs = (b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /health HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n")

    async def fn(backend, port):  # type: ignore[no-untyped-def]
        return await _exchange(port, reqs, 3)

    out = _run(Settings(port=0, name="w", delay=0.05), fn)
    i_a, i_h, i_b = out.find(b"for /a"), out.find(b"\r\n\r\nok\n"), out.find(b"for /b")
    assert -1 < i_a < i_h < i_b, out


def test_http10_closes_and_head_has_no_body() -> None:
    async def fn(backend, port):  # type: ignore[no-untyped-def]
        one = await _exchange(port, b"GET / HTTP/1.0\r\n\r\n", 1)
        two = await _exchange(port, b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                              1)
        return one, two

    one, two = _run(Settings(port=0, name="w"), fn)
    assert b"Connection: close" in one and b"<h1>w</h1>" in one
    assert two.endswith(b"\r\n\r\n") and b"Content-Length: " in two


def test_health_file_and_signal_switch(tmp_path: pathlib.Path) -> None:
    flag = tmp_path / "down"

    async def fn(backend, port):  # type: ignore[no-untyped-def]
        get = b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n"
        codes = [await _exchange(port, get, 1)]
        flag.write_text("")
        codes.append(await _exchange(port, get, 1))
        flag.unlink()
        codes.append(await _exchange(port, get, 1))
        backend.forced_unhealthy = True  # what SIGUSR1 sets (the CLI test sends the signal)
        codes.append(await _exchange(port, get, 1))
        page_ok = await _exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
        return [c.split(b"\r\n", 1)[0] for c in codes], page_ok

    codes, page_ok = _run(Settings(port=0, name="w", health_file=str(flag)), fn)
    assert codes == [b"HTTP/1.1 200 OK", b"HTTP/1.1 503 Service Unavailable",
                     b"HTTP/1.1 200 OK", b"HTTP/1.1 503 Service Unavailable"]
    assert page_ok.startswith(b"HTTP/1.1 200 OK")  # unhealthy is about /health only


def test_error_rate_is_seeded_and_close_to_p() -> None:
    n = 400
    reqs = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * n

    async def fn(backend, port):  # type: ignore[no-untyped-def]
        return await _exchange(port, reqs, n, timeout=20)

    runs = [_run(Settings(port=0, name="w", error_rate=0.25, seed=7), fn) for _ in range(2)]
    statuses = [re.findall(rb"HTTP/1\.1 (\d+) ", r) for r in runs]
    assert len(statuses[0]) == n
    assert statuses[0] == statuses[1]  # the same seed draws the same errors
    errors = statuses[0].count(b"500")
    assert 50 < errors < 150, errors


def test_malformed_request_gets_400_and_others_are_served() -> None:
    async def fn(backend, port):  # type: ignore[no-untyped-def]
        bad = await _exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", 1)
        bad2 = await _exchange(port, b"\x00\x01\x02 garbage\r\n\r\n", 1)
        good = await _exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
        return bad, bad2, good, backend.stats.bad

    bad, bad2, good, count = _run(Settings(port=0, name="w"), fn)
    assert bad.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in bad
    assert bad2.startswith(b"HTTP/1.1 400 ")
    assert good.startswith(b"HTTP/1.1 200 ")
    assert count == 2


def test_request_body_is_read_and_connection_kept() -> None:
    reqs = (b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
            b"POST /q HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            b"GET /r HTTP/1.1\r\nHost: a\r\n\r\n")

    async def fn(backend, port):  # type: ignore[no-untyped-def]
        return await _exchange(port, reqs, 3)

    out = _run(Settings(port=0, name="w"), fn)
    assert out.count(b"HTTP/1.1 200 OK") == 3 and b"for /r" in out


def test_parse_listen_and_page_escape() -> None:
    assert parse_listen("198.18.0.5:80") == ("198.18.0.5", 80)
    assert parse_listen("8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:81") == ("::1", 81)
    with pytest.raises(ValueError):
        parse_listen("host:http")
    assert b"&lt;b&gt;" in page("<b>", "p", "/")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_cli_signals_and_sigterm_exit() -> None:
    port = _free_port()
    src = str(pathlib.Path(__file__).resolve().parents[3] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    proc = subprocess.Popen([PY, "-m", "halb", "backend", "--listen", f"127.0.0.1:{port}",
                             "--name", "node-7"], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line == f"halb backend node-7 listening on 127.0.0.1:{port}\n"
        assert b"X-Backend: node-7" in _get(port, "/")
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while b" 503 " not in _get(port, "/health").split(b"\r\n", 1)[0]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGUSR2)
        while b" 200 " not in _get(port, "/health").split(b"\r\n", 1)[0]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_cli_rejects_bad_arguments() -> None:
    src = str(pathlib.Path(__file__).resolve().parents[3] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    for args in (["--error-rate", "2"], ["--listen", "x:y"], ["--delay", "-1"]):
        out = subprocess.run([PY, "-m", "halb", "backend", *args], capture_output=True,
                             text=True, env=env, timeout=20)
        assert out.returncode == 2 and "halb backend: error:" in out.stderr, (args, out.stderr)
