"""Helpers for the IPVS scheduler tests: peers from a compact spec, contexts, pick sequences."""

from __future__ import annotations

import ipaddress
import random
import re
from typing import Any

from halb.balancing import Peer, PickContext, create
from halb.balancing.ipvs_common import IpvsBalancer

SPEC = re.compile(r"(?P<name>\w+)(?::(?P<w>\d+))?(?:@(?P<a>\d+)(?:/(?P<i>\d+))?)?(?P<over>!)?$")


def mk(spec: str) -> list[Peer]:
    """"A:4@1/3! B" → A weight 4, 1 active, 3 inactive, overloaded; B weight 1, idle.

    Hosts are 198.18.0.10, .11, ... port 80, in spec order."""
    out = []
    for i, item in enumerate(spec.split()):
        m = SPEC.match(item)
        assert m, item
        p = Peer(m["name"], host=f"198.18.0.{10 + i}", port=80, weight=int(m["w"] or 1))
        p.active = int(m["a"] or 0)
        p.inactive = int(m["i"] or 0)
        p.overloaded = bool(m["over"])
        out.append(p)
    return out


def sched(name: str, spec: str, **params: Any) -> IpvsBalancer:
    b = create(name, mk(spec), **params)
    assert isinstance(b, IpvsBalancer)
    return b


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def ctx(client: str | None = None, port: int | None = None, daddr: str | None = None,
        now: float = 0.0, rng: random.Random | None = None) -> PickContext:
    return PickContext(now=now, rng=rng or random.Random(0),
                       client=None if client is None else ip(client), port=port,
                       daddr=None if daddr is None else ip(daddr))


def name(p: Peer | None) -> str:
    return "-" if p is None else p.name


def seq(b: IpvsBalancer, n: int, **kw: Any) -> str:
    """The names of n picks (one letter each, '-' for None), counting nothing."""
    return "".join(name(b.pick(ctx(**kw))) for _ in range(n))


def peer(b: IpvsBalancer, n: str) -> Peer:
    return next(p for p in b.peers if p.name == n)
