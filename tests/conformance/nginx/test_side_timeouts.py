"""Timeouts: client_header_timeout (both close without answering; nginx logs 408),
client_body_timeout / lingering_timeout for a body that never comes, keepalive_timeout."""

from __future__ import annotations

import pytest
from harness import Case, compare, ids, req

pytestmark = pytest.mark.peer

CONFIG = r"""
    default_type text/plain;
    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        root %WWW%;
        client_header_timeout 1s;
        client_body_timeout 1s;
        keepalive_timeout 1s;
        lingering_timeout 1s;
        location / { }
        location /ret { return 200 "answered\n"; }
        location /small/ { client_max_body_size 10; return 200 "small\n"; }
    }
"""

SLOW = {"wait": 4.0}

CASES = [
    # nothing is sent back when the header does not arrive in time: the connection closes
    Case("header-timeout-partial-line", b"GET /a.t", {"closed": True, "statuses": ()},
         **SLOW),
    Case("header-timeout-partial-headers", b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n",
         {"closed": True, "statuses": ()}, **SLOW),
    Case("header-timeout-nothing", b"", {"closed": True, "statuses": ()}, **SLOW),
    Case("header-timeout-second-request", req("/a.txt") + b"GET /a.txt HTTP/1.1\r\n",
         {"closed": True, "statuses": (200,)}, requests=2, **SLOW),
    # answered at once; the body that never comes is waited for, then the connection closes
    Case("body-never-comes-static", req("/a.txt", headers=[("Content-Length", "100")]),
         {"statuses": (200,)}, close_wait=3.0, **SLOW),
    Case("body-never-comes-return", req("/ret", method="POST",
                                        headers=[("Content-Length", "100")]),
         {"statuses": (200,)}, close_wait=3.0, **SLOW),
    Case("body-never-comes-413", req("/small/", method="POST",
                                     headers=[("Content-Length", "100")]),
         {"statuses": (413,)}, close_wait=3.0, **SLOW),
    Case("body-half-sent", req("/ret", method="POST", headers=[("Content-Length", "100")])
         + b"x" * 50, {"statuses": (200,)}, close_wait=3.0, **SLOW),
    # an idle keep-alive connection closes after keepalive_timeout
    Case("keepalive-timeout", req("/a.txt"), {"statuses": (200,), "closed": True},
         close_wait=3.0, **SLOW),
    Case("keepalive-timeout-pipelined", req("/a.txt") * 3, {"closed": True},
         close_wait=3.0, **SLOW),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_timeouts(pair, case: Case) -> None:  # type: ignore[no-untyped-def]
    compare(pair, case)


def test_header_timeout_is_logged_as_408(pair) -> None:  # type: ignore[no-untyped-def]
    """Nothing is sent on client_header_timeout, but both log it: 408 in the access log and
    "client timed out" at info in the error log."""
    import time

    pair.prefetch(CASES)  # the timeout cases have run (prefetched for the table)
    deadline = time.monotonic() + 5
    while True:
        logs = {name: ((srv.prefix / "access.log").read_text(errors="replace")
                       if (srv.prefix / "access.log").exists() else "",
                       srv.error_log_since(0)) for name, srv in pair.servers.items()}
        ok = all('" 408 ' in access and "client timed out (110: Connection timed out) while "
                 "reading client request headers" in errors
                 for access, errors in logs.values())
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for name, (access, errors) in logs.items():
        assert '" 408 ' in access, f"{name} access log:\n{access}"
        assert "client timed out" in errors, f"{name} error log:\n{errors[-2000:]}"
