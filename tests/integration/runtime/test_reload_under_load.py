"""HUP under load loses no request (wrk from Debian, bounded in time, loopback only)."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from halbproc import base_conf, children, free_port, running

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def parse_wrk(out: str) -> dict[str, int]:
    m = re.search(r"(\d+) requests in", out)
    assert m, out
    result = {"requests": int(m.group(1)), "socket_errors": 0, "non2xx": 0}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        result["socket_errors"] = sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        result["non2xx"] = int(m.group(1))
    return result


def test_parse_wrk_sees_errors() -> None:
    out = ("  1000 requests in 2.00s, 1.00MB read\n"
           "  Socket errors: connect 0, read 3, write 0, timeout 1\n"
           "  Non-2xx or 3xx responses: 5\n")
    assert parse_wrk(out) == {"requests": 1000, "socket_errors": 4, "non2xx": 5}


@pytest.mark.parametrize("reloads", [4])
def test_reload_under_load_loses_nothing(tmp_path: Path, wrk_binary: str, reloads: int) -> None:
    port = free_port()
    conf = base_conf(port)
    with running(tmp_path, conf, port=port) as srv:
        assert srv.get() == (200, b"generation 1\n")
        wrk = subprocess.Popen([wrk_binary, "-t2", "-c32", "-d6s", "--timeout", "5s",
                                f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(1.0)
            for i in range(reloads):
                gen = i + 2
                srv.write_conf(conf.replace("generation 1", f"generation {gen}"))
                srv.signal(signal.SIGHUP)
                time.sleep(1.0)
            out, _ = wrk.communicate(timeout=30)
        finally:
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait()
        result = parse_wrk(out)
        assert result["requests"] > 1000, out
        assert result["socket_errors"] == 0, out
        assert result["non2xx"] == 0, out
        assert srv.get() == (200, f"generation {reloads + 1}\n".encode())
        assert len(children(srv.pid)) >= 2
        assert "[alert]" not in srv.log(), srv.log()
