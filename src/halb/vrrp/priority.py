"""Tracking arithmetic: vrrp_script rise/fall counters and the effective priority (PURE).

Owns what keepalived's vrrp_track.c decides (reference vrrp-keepalived.md §2.4), with no I/O:

* `ScriptState` is a script's single counter `result` in [0, rise+fall-1]. It starts at rise-1
  (state INIT, which counts as OK), so one success confirms it and the first failure marks it
  failed; `init_fail` starts it failed. A success increments it and reaching `rise` turns the
  script OK (the counter then jumps to rise+fall-1); a failure decrements it and dropping below
  `rise` turns it KO (the counter resets to 0). So a healthy script needs `fall` failures in a
  row to fail and a failed one `rise` successes to recover.
* `evaluate(base, trackers)` folds the trackers (scripts and interfaces alike: "ok" is a script
  succeeding or a link being up) into (effective priority, fault): weight 0 means FAULT while the
  tracker is down (`reverse`: while it is up); weight > 0 is added while up, weight < 0 is
  subtracted while down, `reverse` flips the direction; the result is clamped to 1..254, and an
  owner's base priority 255 never changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

OWNER = 255


class ScriptState:
    """keepalived's rise/fall counter for one vrrp_script."""

    def __init__(self, rise: int = 1, fall: int = 1, init_fail: bool = False) -> None:
        self.rise = max(1, rise)
        self.fall = max(1, fall)
        self.result = 0 if init_fail else self.rise - 1
        self.ok = not init_fail
        self.initial = not init_fail  # INIT: not confirmed either way yet

    def report(self, success: bool) -> bool:
        """One run's outcome; True when the script changed between OK and KO."""
        top = self.rise + self.fall - 1
        was = self.ok
        if success:
            self.result = min(top, self.result + 1)
            if self.result >= self.rise and (not self.ok or self.initial):
                self.ok, self.result = True, top
        else:
            self.result = max(0, self.result - 1)
            if self.result < self.rise and (self.ok or self.initial):
                self.ok, self.result = False, 0
        self.initial = False
        return self.ok != was


@dataclass(frozen=True, slots=True)
class Tracker:
    """One tracked object as an instance sees it: its weight for this instance and whether it
    is currently OK (script succeeding, interface up)."""

    name: str
    weight: int = 0
    reverse: bool = False
    ok: bool = True

    @property
    def faults(self) -> bool:
        return self.weight == 0 and (self.ok if self.reverse else not self.ok)

    @property
    def delta(self) -> int:
        if self.weight > 0 and self.ok:
            return -self.weight if self.reverse else self.weight
        if self.weight < 0 and not self.ok:
            return -self.weight if self.reverse else self.weight
        return 0


def clamp_weight(weight: int) -> int:
    """Weights of +-254 are taken as +-253, as keepalived reads them."""
    return max(-253, min(253, weight))


def evaluate(base: int, trackers: Iterable[Tracker]) -> tuple[int, bool]:
    """(effective priority, fault) for an instance of base priority `base`."""
    items = list(trackers)
    fault = any(t.faults for t in items)
    if base >= OWNER:
        return base, fault
    total = base + sum(clamp_weight(t.delta) for t in items)
    return max(1, min(OWNER - 1, total)), fault
