"""What the health checker says and hears (PURE): the events other roles consume, the probe
requests the runner carries out, and the probe results it feeds back.

DESIGN rule 3: health publishes `HealthChanged`; the L4 director (and the L7 upstreams) consume
it, and nothing calls back into the checker. Everything here is a small frozen value of plain
types, so it can cross a process boundary (keepalived's checker child) as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from halb.config.keepalived_lvs_model import Checker
from halb.config.keepalived_model import Script


@dataclass(frozen=True, slots=True)
class HealthChanged:
    """A destination of a virtual service changed: keepalived's view of its IPVS entry.

    `present`: the destination is in the table (the director adds it / keeps it); False: it is
    removed. `weight`: its weight there (0 when kept by inhibit_on_failure, or set to 0 by a
    MISC_CHECK with misc_dynamic). `up`: keepalived's "alive" (all its checkers pass; for the
    sorry server: it is in use). A balancer sends new connections to it when `serving`.
    """

    service: str  # "[198.18.0.10]:tcp:80", "FWM 7", "[GROUP]:0" (keepalived's names)
    server: str  # "[198.18.0.11]:tcp:80"
    address: str
    port: int
    up: bool
    weight: int
    present: bool
    sorry: bool = False  # the virtual server's sorry_server

    @property
    def serving(self) -> bool:
        return self.present and self.weight > 0


@dataclass(frozen=True, slots=True)
class RunScript:
    """Run a notify_up / notify_down / quorum_up / quorum_down script now, without waiting for
    it (keepalived's notify_exec). While stopping keepalived gives it 1 s."""

    script: Script
    reason: str  # "notify_up" | "notify_down" | "quorum_up" | "quorum_down"
    service: str
    server: str | None = None
    stopping: bool = False


@dataclass(frozen=True, slots=True)
class Log:
    """A line keepalived's checker process logs at this point."""

    message: str


Action = HealthChanged | RunScript | Log

CheckerId = tuple[str, str, int]  # (service, server, index of the checker in the server)


@dataclass(frozen=True, slots=True)
class Probe:
    """Run this checker once: TCP connect, one HTTP_GET / SSL_GET url, or the MISC_CHECK
    script."""

    id: CheckerId
    checker: Checker
    url_index: int = 0  # HTTP_GET / SSL_GET: which url this round checks


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What a probe found.

    TCP/HTTP/SSL: `ok`, and `message` for a failure (keepalived's words: "Timeout connect",
    "HTTP status code error to", "MD5 digest error to", ...). MISC_CHECK: `exit_status` when the
    script exited, else `signal` (with `timed_out` when it was killed after misc_timeout).
    `unavailable`: the probe could not even start (no socket, bind failed): keepalived then
    tries again a delay_loop later and changes nothing.
    """

    ok: bool = False
    message: str = ""
    exit_status: int | None = None
    signal: int | None = None
    timed_out: bool = False
    unavailable: bool = False
