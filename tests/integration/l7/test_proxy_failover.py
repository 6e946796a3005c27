"""A backend killed under load is invisible to GET clients: they go to the next peer.

Three nginx backends behind `halb nginx` (round robin, upstream keep-alive); wrk -c50 for a
bounded time; one backend is SIGKILLed mid-run. Every request must still get a 200: connect
errors and resets on the dead peer are `error` failures, retried on the next one
(proxy_next_upstream error timeout, the default), and the peer is then skipped for fail_timeout.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from halbproc import free_port, running, wait_port

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def start_backend(nginx: str, tmp: Path, name: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    d = tmp / f"backend-{name}"
    d.mkdir()
    user = "user root;" if os.geteuid() == 0 else ""
    (d / "nginx.conf").write_text(
        f"{user} daemon off; master_process off; error_log stderr crit; pid {d}/pid; "
        f"events {{}} http {{ access_log off; server {{ listen 127.0.0.1:{port}; "
        f'location / {{ return 200 "{name}\\n"; }} }} }}')
    proc = subprocess.Popen([nginx, "-p", f"{d}/", "-c", f"{d}/nginx.conf"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_port("127.0.0.1", port)
    return proc, port


def wrk_result(out: str) -> dict[str, int]:
    m = re.search(r"(\d+) requests in", out)
    assert m, out
    errors = 0
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if e:
        errors += sum(int(x) for x in e.groups())
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": int(m.group(1)), "socket_errors": errors,
            "non2xx": int(n.group(1)) if n else 0}


@pytest.mark.parametrize("keepalive", ["keepalive 16;", ""])
def test_killed_backend_is_invisible_to_get_clients(tmp_path: Path, nginx_binary: str,
                                                     wrk_binary: str, keepalive: str) -> None:
    backends = [start_backend(nginx_binary, tmp_path, name) for name in ("a", "b", "c")]
    try:
        port = free_port()
        servers = " ".join(f"server 127.0.0.1:{p};" for _, p in backends)
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = f"""{user}worker_processes 2;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    upstream pool {{ {servers} {keepalive} }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://pool;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
        with running(tmp_path / "halb", conf, port=port) as srv:
            assert srv.get()[0] == 200
            wrk = subprocess.Popen([wrk_binary, "-t2", "-c50", "-d6s", "--timeout", "5s",
                                    f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
            try:
                time.sleep(2.0)
                victim, _ = backends[1]
                os.killpg(victim.pid, signal.SIGKILL)
                victim.wait(5)
                out, _ = wrk.communicate(timeout=40)
            finally:
                if wrk.poll() is None:
                    wrk.kill()
                    wrk.wait()
            result = wrk_result(out)
            assert result["requests"] > 1000, out
            assert result["socket_errors"] == 0, out
            assert result["non2xx"] == 0, (out, srv.log())
            # the dead peer was noticed (nginx's wording) and the others kept serving
            # (requests in flight on its kept-alive connections are reset; a new connection is
            # refused; either marks it failed, and the first may be all there is before the run
            # ends)
            assert "connect() failed (111: Connection refused)" in srv.log() or \
                "upstream prematurely closed" in srv.log() or \
                "recv() failed (104: Connection reset by peer) while reading response header" \
                in srv.log(), srv.log()
            for _ in range(10):
                assert srv.get()[0] == 200
    finally:
        for proc, _ in backends:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
