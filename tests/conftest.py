"""Shared test policy: peers and root.

Tests that need a peer binary (nginx, wrk, keepalived) or root skip with a visible reason when
it is absent, and fail instead when CI=true: CI runs as root with the peers installed, so a skip
there would hide a test that did not run.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this test must not be skipped)")
    pytest.skip(reason)


def require_binary(name: str) -> str:
    """The path of a peer binary, or skip (fail under CI) when it is not installed."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    _missing(f"{name} is not installed (make test installs it when run as root)")
    raise AssertionError("unreachable")


def require_root() -> None:
    if os.geteuid() != 0:
        _missing("needs root (network namespaces, raw sockets, nftables)")


@pytest.fixture
def nginx_binary() -> str:
    return require_binary("nginx")


@pytest.fixture
def wrk_binary() -> str:
    return require_binary("wrk")


@pytest.fixture
def keepalived_binary() -> str:
    return require_binary("keepalived")


# session-scoped so module-scoped fixtures (the ipvsadm oracle) can use them
@pytest.fixture(scope="session")
def nft_binary() -> str:
    return require_binary("nft")


@pytest.fixture(scope="session")
def ipvsadm_binary() -> str:
    return require_binary("ipvsadm")


@pytest.fixture(scope="session")
def gcc_binary() -> str:
    return require_binary("gcc")


@pytest.fixture
def root() -> None:
    require_root()
