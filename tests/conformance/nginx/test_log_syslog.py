"""access_log and error_log to syslog, side by side with nginx: each server sends its datagrams
to a UDP socket on its own loopback address (syslog:server=%ADDR%:P, bound before the servers
start); the datagrams must be the same once the time, the pid and the server's address are
normalized: the same <PRI>, header, tag and text."""

from __future__ import annotations

import atexit
import re
import socket
import time

import pytest
from harness import HALB_ADDR, NGINX_ADDR, Case, Pair, compare, ids, req

pytestmark = pytest.mark.peer



def _bind_pair() -> dict[str, socket.socket]:
    """One UDP port number free on both servers' addresses."""
    for _ in range(50):
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind((NGINX_ADDR, 0))
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            b.bind((HALB_ADDR, a.getsockname()[1]))
        except OSError:
            a.close()
            b.close()
            continue
        for s in (a, b):
            s.settimeout(0.1)
        return {"nginx": a, "halb": b}
    raise RuntimeError("no UDP port free on both addresses")


_UDP = _bind_pair()
atexit.register(lambda: [s.close() for s in _UDP.values()])  # (bound while collecting)
SYSLOG = f"%ADDR%:{_UDP['nginx'].getsockname()[1]}"

CONFIG = f"""
    log_format sl '$server_addr "$request" $status $http_user_agent';
    server {{
        listen %ADDR%:%PORT%;
        server_name localhost;
        root %WWW%;
        access_log syslog:server={SYSLOG},tag=acc,facility=local3 sl;
        access_log syslog:server={SYSLOG},nohostname,severity=notice sl;
        error_log syslog:server={SYSLOG},tag=err_log warn;
    }}
"""

CASES = [
    Case("found", req("/a.txt?m=1", headers=[("Connection", "close"),
                                             ("User-Agent", 'q"\x01')])),
    Case("not-found", req("/missing?m=2", headers=[("Connection", "close")])),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_answers(pair: Pair, case: Case) -> None:
    compare(pair, case)


def _normalize(msg: bytes) -> str:
    text = msg.decode("utf-8", "replace")
    text = re.sub(r"^(<\d+>)\w{3} [ \d]\d \d\d:\d\d:\d\d ", r"\1TIME ", text)
    text = re.sub(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: \*\d+ ", r"[\1] ", text)
    return text.replace(socket.gethostname(), "HOST")


def test_same_datagrams(pair: Pair) -> None:
    pair.prefetch(CASES)
    got: dict[str, list[str]] = {"nginx": [], "halb": []}
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not all(len(v) >= 5 for v in got.values()):
        for name, sock in _UDP.items():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            got[name].append(re.sub(r"127\.0\.0\.[23]", "ADDR", _normalize(data)))
    nginx, halb = sorted(got["nginx"]), sorted(got["halb"])
    assert len(nginx) == 5, nginx  # 2 requests x 2 access logs, 1 error line (404)
    assert halb == nginx
    assert any(t.startswith("<158>TIME HOST acc: ADDR") for t in nginx)  # local3.info
    assert any(t.startswith("<189>TIME nginx: ADDR") for t in nginx)  # severity=notice
    assert any(t.startswith("<187>TIME HOST err_log: [error] open() ") for t in nginx)
