"""nginx Plus's active health checks (`health_check`), decided without I/O (PURE).

Owns what ngx_http_upstream_hc_module documents, with time and randomness passed in:

* Per check and server a state: "checking" (a `mandatory` check's server before its first
  result, also a server found unhealthy when the checker (re)starts), "up" or "down". In
  "checking" the first result decides. An up server goes down after `fails` consecutive failed
  checks, a down one comes up after `passes` consecutive passed checks.
* A server is healthy only when every check of its group has it "up" ("a single failure of any
  check will make the corresponding server be considered unhealthy"); client requests go to
  healthy servers only (the balancers skip `Peer.healthy == False`).
* Scheduling: each check of each server runs first at start (plus a random part of `jitter`),
  then `interval` (+ jitter) after its previous check completed; one probe per check and server
  at a time. `down` servers are never checked (they are never chosen).
* `Transition`s say when a server's state changed (checking → up or down, up ↔ down), and
  whether it came back from "down" (a slow_start ramp begins then; a server leaving
  "checking" is not recovering).

The response side: `ResponseReader` takes the bytes of the check's response (HTTP/1.x) and says
when it has all that the check needs: the head, then the body up to its end (Content-Length,
chunked, or the connection's end), of which only the first 256k are kept (the module examines
no more). `verdict` turns the outcome into pass / fail, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from halb.config.nginx_health import BODY_LIMIT, HealthCheck

CHECKING, UP, DOWN = "checking", "up", "down"
MAX_HEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class Transition:
    peer: int  # index in the group's peer list
    healthy: bool
    recovered: bool  # came back from "down" (not from "checking")
    reason: str = ""


@dataclass(slots=True)
class _Slot:
    state: str
    fails: int = 0
    passes: int = 0
    due: float = 0.0
    running: bool = False


class GroupHealth:
    """Every check of one upstream group against every one of its servers."""

    def __init__(self, checks: Sequence[HealthCheck], healthy: Sequence[bool],
                 skip: Sequence[bool], now: float, rng: Callable[[], float]) -> None:
        """`healthy`: each server's flag as it is now (the zone's); `skip`: servers that are
        never checked (`down`)."""
        self.checks = list(checks)
        self.rng = rng
        self.skip = list(skip)
        self.healthy = list(healthy)
        self.slots: list[list[_Slot]] = []
        for hc in self.checks:
            row = []
            for ok in self.healthy:
                slot = _Slot(UP if ok else CHECKING)
                slot.due = now + self._jitter(hc)
                row.append(slot)
            self.slots.append(row)
        self.labels = [UP if ok else CHECKING for ok in self.healthy]

    def _jitter(self, hc: HealthCheck) -> float:
        return hc.jitter * self.rng() if hc.jitter else 0.0

    # -- inputs -------------------------------------------------------------------------------

    def due(self, now: float) -> list[tuple[int, int]]:
        """(check, server) pairs whose probe starts now; they count as running."""
        out = []
        for c, row in enumerate(self.slots):
            for p, slot in enumerate(row):
                if not slot.running and not self.skip[p] and slot.due <= now:
                    slot.running = True
                    out.append((c, p))
        return out

    def result(self, check: int, peer: int, ok: bool, now: float,
               reason: str = "") -> Transition | None:
        """A probe finished. Returns the server's new health when it changed."""
        hc = self.checks[check]
        slot = self.slots[check][peer]
        slot.running = False
        slot.due = now + hc.interval + self._jitter(hc)
        was_down = any(row[peer].state == DOWN for row in self.slots)
        if slot.state == CHECKING:
            slot.state = UP if ok else DOWN
            slot.fails = slot.passes = 0
        elif slot.state == UP:
            slot.passes = 0
            slot.fails = 0 if ok else slot.fails + 1
            if slot.fails >= hc.fails:
                slot.state, slot.fails = DOWN, 0
        else:
            slot.fails = 0
            slot.passes = slot.passes + 1 if ok else 0
            if slot.passes >= hc.passes:
                slot.state, slot.passes = UP, 0
        label = self._label(peer)
        if label == self.labels[peer]:
            return None
        self.labels[peer] = label
        healthy = self.healthy[peer] = label == UP
        return Transition(peer, healthy, healthy and was_down, reason)

    def _label(self, peer: int) -> str:
        """The server's state over all checks: up when all are, down when one is."""
        states = {row[peer].state for row in self.slots}
        return DOWN if DOWN in states else CHECKING if CHECKING in states else UP

    def next_deadline(self) -> float | None:
        times = [slot.due for row in self.slots for p, slot in enumerate(row)
                 if not slot.running and not self.skip[p]]
        return min(times) if times else None

    def state(self, check: int, peer: int) -> str:
        return self.slots[check][peer].state


# -- the response ---------------------------------------------------------------------------


@dataclass(slots=True)
class ResponseReader:
    """The check's response as it arrives; `feed` returns True once nothing more is needed."""

    buffer: bytearray = field(default_factory=bytearray)
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    head_done: bool = False
    error: str = ""
    length: int | None = None  # Content-Length
    chunked: bool = False
    finished: bool = False
    _chunk_left: int = 0
    _part: str = "size"  # in a chunked body: "size" line, chunk "data", the "crlf" after it
    _raw: bytearray = field(default_factory=bytearray)  # undecoded chunked data

    def feed(self, data: bytes) -> bool:
        if self.finished:
            return True
        if not self.head_done:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            sep = 4
            if end < 0:
                end = self.buffer.find(b"\n\n")
                sep = 2
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    return self._fail("upstream sent too big header")
                return False
            head, data = bytes(self.buffer[:end]), bytes(self.buffer[end + sep:])
            self.buffer = bytearray()
            if not self._head(head):
                return True
            self.head_done = True
        if self.chunked:
            self._raw += data
            return self._dechunk()
        room = BODY_LIMIT - len(self.body)
        if self.length is not None:
            room = min(room, self.length - len(self.body))
        self.body += data[:max(0, room)]
        if len(self.body) >= BODY_LIMIT or (self.length is not None
                                            and len(self.body) >= self.length):
            self.finished = True
        return self.finished

    def eof(self) -> None:
        """The server closed: what came is the response (an unfinished head is an error)."""
        if not self.head_done and not self.error:
            self._fail("upstream prematurely closed connection" if self.buffer
                       else "upstream closed connection without a response")
        self.finished = True

    def _fail(self, why: str) -> bool:
        self.error = why
        self.finished = True
        return True

    def _head(self, head: bytes) -> bool:
        lines = head.replace(b"\r\n", b"\n").split(b"\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or len(parts[1]) != 3 \
                or not parts[1].isdigit():
            self._fail("upstream sent no valid HTTP/1.0 header")
            return False
        self.status = int(parts[1])
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name.strip():
                self._fail("upstream sent invalid header")
                return False
            n = name.strip().decode("latin-1")
            v = value.strip().decode("utf-8", "surrogateescape")
            self.headers.append((n, v))
            low = n.lower()
            if low == "content-length" and v.isdigit():
                self.length = int(v)
            elif low == "transfer-encoding" and "chunked" in v.lower():
                self.chunked = True
        if self.chunked:
            self.length = None
        return True

    def _dechunk(self) -> bool:
        raw = self._raw
        while not self.finished:
            if self._part == "data":
                take = min(self._chunk_left, len(raw))
                if not take:
                    break
                room = BODY_LIMIT - len(self.body)
                if room > 0:
                    self.body += raw[:min(take, room)]
                del raw[:take]
                self._chunk_left -= take
                if not self._chunk_left:
                    self._part = "crlf"
            elif self._part == "crlf":
                if len(raw) < 2:
                    break
                del raw[:2]
                self._part = "size"
            else:
                end = raw.find(b"\r\n")
                if end < 0:
                    if len(raw) > 1024:
                        return self._fail("upstream sent invalid chunked response")
                    break
                size = bytes(raw[:end]).split(b";")[0].strip()
                try:
                    n = int(size, 16)
                except ValueError:
                    return self._fail("upstream sent invalid chunked response")
                del raw[:end + 2]
                if n == 0:
                    self.finished = True
                else:
                    self._chunk_left, self._part = n, "data"
            if len(self.body) >= BODY_LIMIT:
                self.finished = True
        return self.finished


def verdict(hc: HealthCheck, resp: ResponseReader) -> tuple[bool, str]:
    """Did the check pass, and if not, why (the words nginx Plus's error log uses)."""
    if resp.error:
        return False, resp.error
    if not resp.head_done:
        return False, "upstream closed connection without a response"
    if hc.passed(resp.status, resp.headers, bytes(resp.body)):
        return True, ""
    if hc.match is None:
        return False, f"status code {resp.status}"
    return False, f'response does not match "{hc.match.name}"'


__all__ = ["CHECKING", "DOWN", "UP", "GroupHealth", "ResponseReader", "Transition", "verdict"]
