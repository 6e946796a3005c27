"""The interface every L4 data plane implements, and what a data plane may feed back.

A data plane moves the packets (or, for the user-space one, the bytes) of the virtual services
held in an `l4.service.ServiceTable`. The director owns the table and calls, in this order:

* ``use_clock(now, rng)`` once, at construction: the director's clock and random generator
  (the user-space data plane schedules and stamps entries with them);
* ``await start(table)`` once, before any traffic;
* ``unsupported(spec, dest)`` before it applies an -A/-E/-a/-e command: a data plane that cannot
  carry that service or real server (DR in user space, TUN without tunnels, fwmark without
  marks...) returns a message, the command is refused and the table stays unchanged;
* ``sync(table)`` after every change of the table (synchronous: a kernel data plane replaces its
  rules atomically here; the user-space one opens and closes listeners);
* ``await collect()`` on every director tick (about once a second): a kernel data plane returns
  the connection counts and counters it reads from the kernel (conntrack, nft counters) as a
  `Feedback`; the director folds them into the table (`ServiceTable.absorb`), so lc/wlc/... and
  the listings see them. A data plane that keeps the table live itself returns None;
* ``await stop()``: stop forwarding and remove everything the data plane created.

A data plane reads the table through ``table.view()`` (an `l4.model.TableView`: service and
real server specs, weights, overload flags, counts) and ``table.timeouts``; the user-space data
plane also schedules through the table itself.

`exact` names the schedulers a data plane implements exactly as IPVS does (the README's table);
the others it approximates.
"""

from __future__ import annotations

import abc
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from halb.l4.model import ConnView, DestSpec, ServiceKey, ServiceSpec, Stats

if TYPE_CHECKING:
    from halb.l4.service import ServiceTable


class DataPlaneError(Exception):
    """A data plane failed to start or to apply the table (the message says why)."""


@dataclass(frozen=True, slots=True)
class DestCounts:
    """What a kernel data plane observed for one real server of one virtual service."""

    service: ServiceKey
    addr: str
    port: int
    active: int  # connections in ESTABLISHED (IPVS's ActiveConn)
    inactive: int  # every other state (InActConn)
    stats: Stats | None = None  # cumulative counters since the data plane started, if counted


@dataclass(frozen=True, slots=True)
class Feedback:
    """One reading of a kernel data plane's state."""

    dests: tuple[DestCounts, ...] = ()
    # the kernel's connection entries for `ipvsadm -L -c`; None: the table's own entries
    connections: tuple[ConnView, ...] | None = None


class DataPlane(abc.ABC):
    """Base class of the user-space and the kernel (nftables) data planes."""

    name: ClassVar[str] = ""
    exact: ClassVar[frozenset[str]] = frozenset()
    now: Callable[[], float] = staticmethod(time.monotonic)
    rng: random.Random = random.Random()

    def use_clock(self, now: Callable[[], float], rng: random.Random) -> None:
        """The director's clock and random generator (called before start)."""
        self.now = now
        self.rng = rng

    @abc.abstractmethod
    async def start(self, table: ServiceTable) -> None:
        """Begin forwarding the table's services."""

    @abc.abstractmethod
    def sync(self, table: ServiceTable) -> None:
        """The table changed: make the forwarding match it (raises DataPlaneError)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop forwarding and remove everything this data plane created."""

    def unsupported(self, spec: ServiceSpec, dest: DestSpec | None = None) -> str | None:
        """Why this data plane cannot carry `spec` (and `dest`), or None when it can."""
        return None

    async def collect(self) -> Feedback | None:
        """Counts and counters observed outside the table (kernel data planes), or None."""
        return None
