"""A fake-clock driver of health/state.py's HealthState, shared by the checker's unit tests:
it runs the due probes up to a time, answering them through `outcome`, and records what the
state machine did (actions) and which probes ran when."""

from __future__ import annotations

from collections.abc import Callable

from halb.config.keepalived import load_text
from halb.config.keepalived_lvs import virtual_servers
from halb.config.keepalived_lvs_model import LvsConfig
from halb.health.events import Action, HealthChanged, Probe, ProbeResult
from halb.health.state import HealthState

Outcome = Callable[[Probe, float], ProbeResult]
OK = ProbeResult(ok=True)


def lvs_of(text: str, levels: tuple[str, ...] | None = None) -> LvsConfig:
    """The virtual servers of a keepalived.conf text, which has no warning (of those
    levels)."""
    cfg = virtual_servers(load_text(text, config_id="vm").config)
    assert [w.message for w in cfg.warnings if levels is None or w.level in levels] == []
    return cfg


class Driver:
    """Runs the state machine against a fake clock; probes answer through `outcome`."""

    def __init__(self, text: str, rng: float = 0.0,
                 levels: tuple[str, ...] | None = None) -> None:
        self.lvs = lvs_of(text, levels)
        self.h = HealthState(self.lvs, lambda: rng)
        self.now = 0.0
        self.actions: list[Action] = []
        self.probes: list[tuple[float, str, int]] = []  # (time, server, url index)
        self.setup()
        self._do(self.h.start(0.0))

    def setup(self) -> None:
        """What a subclass needs before the state machine starts."""

    def _do(self, actions: list[Action]) -> None:
        self.actions += actions

    def run(self, until: float, outcome: Outcome = lambda p, t: OK) -> None:
        while True:
            deadline = self.h.next_deadline()
            if deadline is None or deadline > until + 1e-9:
                break
            self.now = deadline
            for p in self.h.due(deadline):
                self.probes.append((deadline, p.id[1], p.url_index))
                self._do(self.h.result(p.id, outcome(p, deadline), deadline))
        self.now = until

    def take(self) -> list[Action]:
        out, self.actions = self.actions, []
        return out

    def changes(self) -> list[tuple[str, bool, int, bool]]:
        return [(a.server, a.present, a.weight, a.up) for a in self.take()
                if isinstance(a, HealthChanged)]

    def times(self, server: str) -> list[float]:
        return [round(t, 6) for t, s, _ in self.probes if s == server]
