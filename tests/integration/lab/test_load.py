"""The lab's load driver on loopback against halb backend: one record per request, statuses
and the backend's identity, errors named, the bound on rate and duration."""

from __future__ import annotations

import asyncio
import io
import json
import socket

import pytest

from halb.lab.backend import Settings, start
from halb.lab.load import drive, main, parse_answer


def test_records_name_the_backend_and_count_errors() -> None:
    with socket.socket() as s:  # a port nobody listens on: refused
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]

    async def run() -> list[dict[str, object]]:
        backend = await start(Settings(host="127.0.0.1", port=0, name="webX", error_rate=0.5,
                                       seed=3))
        assert backend.server is not None
        port = backend.server.sockets[0].getsockname()[1]
        out = io.StringIO()
        n = await drive(100.0, 0.4, [f"127.0.0.1:{port}", f"127.0.0.1:{dead}"],
                        ["127.0.0.1", "127.0.0.2"], "/p", 2.0, out)
        backend.server.close()
        lines = [json.loads(x) for x in out.getvalue().splitlines()]
        assert lines[-1] == {"done": True, "scheduled": n} and n == 40
        return lines[:-1]

    recs = asyncio.run(run())
    assert len(recs) == 40 and sorted(r["i"] for r in recs) == list(range(40))
    live = [r for r in recs if r["target"].endswith(str(dead)) is False]
    assert {r["status"] for r in live} <= {200, 500} and {200, 500} <= {r["status"] for r in live}
    assert all(r["backend"] == "webX" and r["peer"] in ("127.0.0.1", "127.0.0.2") for r in live)
    assert {r["status"] for r in recs if r not in live} == {"refused"}
    assert {r["src"] for r in recs} == {"127.0.0.1", "127.0.0.2"}


def test_parse_answer() -> None:
    raw = (b"HTTP/1.1 502 Bad Gateway\r\nServer: x\r\nx-backend: web2\r\n"
           b"X-Backend-Peer: 198.18.0.12:40000\r\n\r\nbody")
    assert parse_answer(raw) == (502, "web2", "198.18.0.12")
    assert parse_answer(b"") == ("closed", None, None)
    assert parse_answer(b"garbage\r\n\r\n") == ("closed", None, None)


def test_rate_and_duration_are_bounded() -> None:
    for args in (["--rate", "1000"], ["--duration", "600"], ["--rate", "0"]):
        with pytest.raises(SystemExit) as e:
            main(["--target", "127.0.0.1:9", *args])
        assert e.value.code == 2
