"""VRRP in network namespaces: halb and Debian's keepalived on one bridged 198.18.0.0/15 LAN.

`lan` builds the LAN (halb.testing.netns.Lan: a bridge namespace, node namespaces, a client) and
always removes it, processes first, also when the test fails; `cluster` runs daemons on it
(vrrp_lab.Cluster). Measured takeover times are printed in the terminal summary.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from vrrp_lab import TIMINGS, Cluster

from halb.testing.netns import Lan


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("VRRP takeover times (measured / bound)")
    for what, measured, bound in TIMINGS:
        terminalreporter.write_line(f"{what:70s} {measured * 1000:7.0f} ms / {bound * 1000:5.0f}"
                                    f" ms")


@pytest.fixture
def lan(request: pytest.FixtureRequest, root: None) -> Iterator[Lan]:
    params = getattr(request, "param", {}) or {}
    with Lan(**params) as built:
        yield built


@pytest.fixture
def cluster(lan: Lan, tmp_path: pathlib.Path, request: pytest.FixtureRequest
            ) -> Iterator[Cluster]:
    c = Cluster(lan, tmp_path)
    impls = getattr(request.node, "callspec", None)
    if impls is not None and "keepalived" in str(impls.params):
        c.keepalived = request.getfixturevalue("keepalived_binary")
    try:
        yield c
    finally:
        c.close()
