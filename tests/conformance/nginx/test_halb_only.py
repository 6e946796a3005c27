"""Deliberate differences from nginx, checked on halb alone.

A symlink that leads out of root/alias: nginx follows it (its disable_symlinks default is off);
halb refuses it with 403 unless `disable_symlinks off` is written in the configuration. Links
that stay inside the root are served by both.
"""

from __future__ import annotations

import pytest
from harness import Case, exchange, req

pytestmark = pytest.mark.peer

HALB_CONFIG = r"""
    default_type text/plain;
    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        root %WWW%;
        location / { }
        location /follow/ { alias %WWW%/; disable_symlinks off; }
        location /strict/ { alias %WWW%/; disable_symlinks on; }
    }
"""

CASES = [
    (Case("symlink-out-refused", req("/escape/out.txt")), 403, None),
    (Case("symlink-out-followed-when-off", req("/follow/escape/out.txt")), 200,
     b"outside the root\n"),
    (Case("plain-file-next-to-it", req("/escape/in.txt")), 200, b"inside escape\n"),
    (Case("symlink-inside-served", req("/link.txt")), 200, b"hello from a.txt\n"),
    (Case("symlink-dir-inside-served", req("/dirlink/page.html")), 200, None),
    (Case("symlink-out-refused-on", req("/strict/escape/out.txt")), 403, None),
]


@pytest.mark.parametrize(("case", "status", "body"), CASES, ids=[c[0].name for c in CASES])
def test_halb_symlinks(halb_only, case: Case, status: int, body: bytes | None) -> None:  # type: ignore[no-untyped-def]
    srv = halb_only["halb"]
    ex = exchange(srv.addr, halb_only.ports[case.port_index], case)
    assert ex.finals, ex
    assert ex.finals[-1].status == status
    if body is not None:
        assert ex.finals[-1].body == body
