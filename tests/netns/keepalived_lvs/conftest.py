"""`halb keepalived -C` driving the L4 director in network namespaces: an LVS topology
(halb.testing.l4net.L4Net on 198.18.0.0/15) with keepalived's checker process as its director,
both removed after each test, also when it fails.

`lab(conf_text, mode=..., dataplane=..., servers=...)` gives (net, keepalived).
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Callable, Iterator

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from kalab import Keepalived

from halb.testing.l4net import L4Net

Lab = Callable[..., tuple[L4Net, Keepalived]]


@pytest.fixture
def lab(root: None, tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    made: list[tuple[L4Net, Keepalived | None]] = []

    def build(conf: str, *, mode: str = "nat", dataplane: str = "userspace",
              halves: tuple[str, ...] = ("-C",), before: Callable[[L4Net], object] | None = None,
              topology: type[L4Net] = L4Net, ready: str = "Initializing ipvs",
              **kw: object) -> tuple[L4Net, Keepalived]:
        if dataplane == "nftables":
            request.getfixturevalue("nft_binary")
        net = topology(mode, prefix=f"ka{os.getpid() % 10000}{len(made)}", **kw)  # type: ignore[arg-type]
        made.append((net, None))
        net.__enter__()
        tmp = tmp_path / f"ka{len(made)}"
        tmp.mkdir()
        if before is not None:
            before(net)
        ka = Keepalived(net, conf, tmp, dataplane, halves, ready=ready)
        made[-1] = (net, ka)
        return net, ka

    try:
        yield build
    finally:
        for net, ka in reversed(made):
            try:
                if ka is not None:
                    ka.close()
            finally:
                net.close()
