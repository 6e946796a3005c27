"""stub_status (ngx_http_stub_status_module): the connection counters every worker shares, the
location content handler that prints them in nginx's exact text, and $connections_*.

Counters live in a StatusZone, an anonymous shared mmap the master makes once (before its first
fork; it survives reloads, as nginx's counters do). Each worker owns one slot of 8-byte words
and is its only writer, so no lock or atomic instruction is needed: readers sum the slots in
use (an aligned 8-byte store is never seen half-written). When a worker exits the master folds
its cumulative counters (accepts, handled, requests) into slot 0 and frees the slot; the gauges
(active, reading, writing, waiting) of a dead worker are gone with its connections.

What is counted is what nginx counts: a connection is accepted, handled (not refused for
worker_connections), then active until closed, and at any moment waiting (no request begun),
reading (a request's header is being read) or writing (a request is being processed). A request
is counted when its first byte arrives. The per-request part runs only when the configuration
uses stub_status or a $connections_* variable: the server then makes its connections with
CountingConnection, which updates the slot at the transitions (checked once, at load time).
"""

from __future__ import annotations

import contextlib
import mmap
from typing import TYPE_CHECKING, Any

from halb.l7.http import HttpConnection
from halb.l7.response import Response
from halb.l7.static import Finish

if TYPE_CHECKING:
    from halb.l7.request import Request

ACCEPTED, HANDLED, REQUESTS, ACTIVE, READING, WRITING, WAITING = range(7)
CUMULATIVE = (ACCEPTED, HANDLED, REQUESTS)
STRIDE = 8  # words per slot
IN_USE = 7  # word 7 of slot 0: how many slots have ever been handed out (readers sum these)
NONE = -1  # a connection not (or no longer) counted in a gauge


class StatusZone:
    """The shared counter block: slot 0 holds what exited workers counted, slots 1.. belong to
    live workers (handed out by the master, or by `private()` in a single process)."""

    def __init__(self, slots: int = 1024) -> None:
        self.slots = slots
        self.mm = mmap.mmap(-1, 8 * STRIDE * (slots + 1))
        self.words = memoryview(self.mm).cast("q")
        self.free: list[int] = []
        self.owners: dict[int, int] = {}  # pid -> slot (master's bookkeeping)

    @classmethod
    def private(cls) -> StatusZone:
        return cls(slots=1)

    def allocate(self, pid: int = 0) -> int:
        """A slot for a worker about to start (0 when every slot is taken: it then counts into
        the shared base slot, which only loses exactness)."""
        if self.free:
            slot = self.free.pop()
        else:
            slot = self.words[IN_USE] + 1
            if slot > self.slots:
                return 0
            self.words[IN_USE] = slot
        if pid:
            self.owners[pid] = slot
        return slot

    def assign(self, pid: int, slot: int) -> None:
        if slot:
            self.owners[pid] = slot

    def retire(self, pid: int) -> None:
        """A worker exited: keep its totals, forget its gauges, free its slot."""
        slot = self.owners.pop(pid, 0)
        if not slot:
            return
        w = self.words
        base = slot * STRIDE
        for k in CUMULATIVE:
            w[k] += w[base + k]
        for k in range(STRIDE):
            w[base + k] = 0
        self.free.append(slot)

    def slot(self, slot: int) -> memoryview:
        return self.words[slot * STRIDE:(slot + 1) * STRIDE]

    def totals(self) -> list[int]:
        w = self.words
        out = [w[k] for k in range(7)]
        for slot in range(1, w[IN_USE] + 1):
            base = slot * STRIDE
            for k in range(7):
                out[k] += w[base + k]
        return out

    def close(self) -> None:
        """Unmap (a slot view still held elsewhere keeps the mapping until it is dropped)."""
        self.words.release()
        with contextlib.suppress(BufferError):
            self.mm.close()


def render(t: list[int]) -> bytes:
    """ngx_http_stub_status_handler's text, byte for byte."""
    return (f"Active connections: {t[ACTIVE]} \n"
            "server accepts handled requests\n"
            f" {t[ACCEPTED]} {t[HANDLED]} {t[REQUESTS]} \n"
            f"Reading: {t[READING]} Writing: {t[WRITING]} Waiting: {t[WAITING]} \n").encode()


def _zone(r: Request) -> StatusZone:
    return r.conn.server.status_zone  # type: ignore[no-any-return]


def stub_status(r: Request, _value: Any) -> Response | Finish:
    if r.method not in ("GET", "HEAD"):
        return Finish(405)
    r.test_expect()  # ngx_http_discard_request_body
    body = render(_zone(r).totals())
    return Response(200, body=body, content_type="text/plain")


def _gauge(k: int) -> Any:
    def get(r: Request) -> str:
        return str(_zone(r).totals()[k])

    return get


def register() -> None:
    from halb.l7.handler import CONTENT_HANDLERS
    from halb.l7.variables import VARIABLES

    CONTENT_HANDLERS.setdefault("stub_status", stub_status)
    for name, k in (("active", ACTIVE), ("reading", READING), ("writing", WRITING),
                    ("waiting", WAITING)):
        VARIABLES[f"connections_{name}"] = _gauge(k)


register()


class CountingConnection(HttpConnection):
    """An HttpConnection that keeps its worker's slot up to date: each hook runs the plain one,
    then moves the connection to the gauge it is in now."""

    __slots__ = ("counted", "gauge", "live")
    express = False  # (the proxy's express lane skips the hooks that count)

    def _restat(self) -> None:
        if self.closing:  # being closed: active until it is gone, in no gauge (as nginx)
            g = NONE
        elif self.responding is not None or self.queue or self.pending is not None:
            g = WRITING
        elif self.cur is not None:
            g = READING
        else:
            g = WAITING
        # requests: one per request begun (a re-parse of the same bytes counts nothing twice)
        cur = self.cur
        n = self.requests + (1 if cur is not None and not cur.request_line else 0)
        if n > self.counted:
            self.server.status_slot[REQUESTS] += n - self.counted
            self.counted = n
        self._move(g)

    def _move(self, g: int) -> None:
        old = self.gauge
        if g != old:
            w = self.server.status_slot
            if old != NONE:
                w[old] -= 1
            if g != NONE:
                w[g] += 1
            self.gauge = g

    def connection_made(self, transport: Any) -> None:
        self.gauge = NONE
        self.counted = 0
        self.live = False
        super().connection_made(transport)
        if not self.closing:
            self.live = True
            self.server.status_slot[ACTIVE] += 1
            self._restat()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.live:
            self.live = False
            self._move(NONE)
            self.server.status_slot[ACTIVE] -= 1

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._restat()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._restat()

    def _start(self, r: Request) -> None:
        self._move(WRITING)
        super()._start(r)

    def _done(self, r: Request, lingering: bool) -> None:
        # nginx frees the request (writing - 1) before its log handler runs
        self._move(NONE)
        super()._done(r, lingering)
        if self.live:
            self._restat()

    def _idle(self) -> None:
        super()._idle()
        if self.live:
            self._restat()

    def _abort(self, status: int, log: str | None, level: str = "info") -> None:
        super()._abort(status, log, level)
        if self.live:
            self._restat()

