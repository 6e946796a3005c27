"""The L4 role in network namespaces: an LVS topology (halb.testing.l4net.L4Net: client,
director, three real servers on 198.18.0.0/15), a director process on it (l4lab.Director:
`halb ipvsadm --start-director`), both removed after each test, also when it fails.

`lab(mode, dataplane)` gives (net, director); `scratch` a bare namespace with one veth pair for
checking rulesets against the real nft.
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Callable, Iterator

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from l4lab import Director

from halb.testing.l4net import L4Net
from halb.testing.netns import ip, ns_exists

Lab = Callable[..., tuple[L4Net, Director]]


@pytest.fixture
def lab(root: None, nft_binary: str, tmp_path: pathlib.Path) -> Iterator[Lab]:
    made: list[tuple[L4Net, Director | None]] = []

    def build(mode: str = "nat", dataplane: str = "nftables", *,
              factory: str | None = "l4lab:make_director", **kw: object
              ) -> tuple[L4Net, Director]:
        net = L4Net(mode, prefix=f"l4{os.getpid() % 10000}{len(made)}", **kw)  # type: ignore[arg-type]
        made.append((net, None))
        net.__enter__()
        tmp = tmp_path / f"lab{len(made)}"
        tmp.mkdir()
        director = Director(net, dataplane, tmp, factory)
        made[-1] = (net, director)
        return net, director

    try:
        yield build
    finally:
        for net, director in reversed(made):
            try:
                if director is not None:
                    director.close()
            finally:
                net.close()


@pytest.fixture
def scratch(root: None, nft_binary: str) -> Iterator[str]:
    name = f"l4nft{os.getpid() % 100000}"
    if ns_exists(name):
        ip("netns", "del", name)
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        for dev in ("lo", "eth0", "eth1"):
            ip("-n", name, "link", "set", dev, "up")
        yield name
    finally:
        ip("netns", "del", name, check=False)

