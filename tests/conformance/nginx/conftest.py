"""Fixtures for the side-by-side nginx/halb tests (see harness.py).

- `docroot`: the document tree, built once per session; both servers serve it.
- `pair`: nginx and halb started on the test module's `CONFIG` (the http block, with the
  harness placeholders), once per module. It is created lazily through the `nginx_binary`
  fixture, so a missing nginx skips (fails under CI=true) before anything is started.
- `halb_only`: halb alone on the module's `HALB_CONFIG`, for deliberate differences.
- `backends`: when the module names `BACKENDS` (and optionally `DOWN`, `BLACKHOLE`), the
  scriptable backends of backends.py, started before the pair; `%B_name%` in `CONFIG` is
  that backend's 127.0.0.1:port.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import BackendSet
from harness import Pair, build_docroot


@pytest.fixture(scope="session")
def docroot(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_docroot(tmp_path_factory.mktemp("docroot"))


class _Lazy:
    """A Pair started on first use and stopped at the end of the module."""

    def __init__(self, config: str, workdir: Path, dirs: dict[str, Path],
                 with_nginx: bool) -> None:
        self.config = config
        self.workdir = workdir
        self.dirs = dirs
        self.with_nginx = with_nginx
        self.pair: Pair | None = None
        self.failed: BaseException | None = None
        self.backends: BackendSet | None = None

    def get(self, nginx: str | None) -> Pair:
        if self.failed is not None:
            raise RuntimeError("the servers did not start (see the first failure)") \
                from self.failed
        if self.pair is None:
            pair = Pair(self.config, self.workdir, self.dirs,
                        nginx if self.with_nginx else None)
            try:
                pair.start()
            except BaseException as e:
                self.failed = e
                raise
            self.pair = pair
        return self.pair

    def stop(self) -> None:
        if self.pair is not None:
            self.pair.stop()
            self.pair = None


@pytest.fixture(scope="module")
def _lazy_pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               docroot: dict[str, Path]) -> Iterator[_Lazy]:
    config = request.module.CONFIG
    names = getattr(request.module, "BACKENDS", None)
    bset = None
    if names is not None:
        bset = BackendSet(list(names), getattr(request.module, "DOWN", ()),
                          getattr(request.module, "BLACKHOLE", ())).start()
        config = bset.substitute(config)
    lazy = _Lazy(config, tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]),
                 docroot, with_nginx=True)
    lazy.backends = bset
    try:
        yield lazy
    finally:
        try:
            lazy.stop()
        finally:
            if bset is not None:
                bset.stop()


@pytest.fixture
def pair(request: pytest.FixtureRequest, nginx_binary: str, _lazy_pair: _Lazy) -> Pair:
    started = _lazy_pair.pair is not None
    p = _lazy_pair.get(nginx_binary)
    if not started:  # the module's table runs concurrently once; each test reads its answer
        cases = getattr(request.module, "CASES", ())
        p.prefetch(c.values[0] if hasattr(c, "values") else c for c in cases)
    return p


@pytest.fixture
def backends(pair: Pair, _lazy_pair: _Lazy) -> BackendSet:
    assert _lazy_pair.backends is not None, "the module names no BACKENDS"
    return _lazy_pair.backends


@pytest.fixture(scope="module")
def _lazy_halb(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               docroot: dict[str, Path]) -> Iterator[_Lazy]:
    lazy = _Lazy(request.module.HALB_CONFIG, tmp_path_factory.mktemp("halb_only"), docroot,
                 with_nginx=False)
    try:
        yield lazy
    finally:
        lazy.stop()


@pytest.fixture
def halb_only(_lazy_halb: _Lazy) -> Pair:
    return _lazy_halb.get(None)
