"""Which notify scripts a state change runs, and with which arguments, as keepalived does (PURE).

Owns the decision part of keepalived's notify_instance_exec / notify_group_exec (reference
vrrp-keepalived.md §2.5), so that notify.py only starts processes:

* the state name a script sees: MASTER, BACKUP, FAULT, STOP; an instance that a reload removed
  is reported as FAULT, or as DELETED when it sets `notify_deleted` (`deleted_state`);
* the specific script of that state (notify_master / notify_backup / notify_fault /
  notify_stop) runs as written, nothing appended; a removed instance runs none;
* then the generic `notify` with four more arguments: INSTANCE or GROUP, the name, the state
  and the priority (the effective priority of an instance, 0 for a group).

What keepalived 2.2.7 runs was recorded in a namespace (tests/netns/vrrp/test_notify.py and
test_reload.py compare halb with it).

`commands` returns the argument vectors in the order they are started.
"""

from __future__ import annotations

from dataclasses import dataclass

from halb.config.keepalived_model import Script

STATES = ("MASTER", "BACKUP", "FAULT", "STOP", "DELETED")


@dataclass(frozen=True, slots=True)
class Scripts:
    """The notify_* settings of an instance or a sync group."""

    master: Script | None = None
    backup: Script | None = None
    fault: Script | None = None
    stop: Script | None = None
    generic: Script | None = None

    def specific(self, state: str) -> Script | None:
        return {"MASTER": self.master, "BACKUP": self.backup, "FAULT": self.fault,
                "STOP": self.stop}.get(state)


def deleted_state(notify_deleted: bool) -> str:
    """The state a removed instance's generic notify is given."""
    return "DELETED" if notify_deleted else "FAULT"


def commands(kind: str, name: str, state: str, priority: int, scripts: Scripts, *,
             deleted: bool = False) -> list[tuple[Script, tuple[str, ...]]]:
    """(script, argv) pairs to start for `name` (kind INSTANCE or GROUP) entering `state`;
    `deleted`: the instance was removed by a reload (only the generic script runs)."""
    if kind not in ("INSTANCE", "GROUP"):
        raise ValueError(f"kind {kind!r} is not INSTANCE or GROUP")
    if state not in STATES:
        raise ValueError(f"state {state!r} is not one of {', '.join(STATES)}")
    out: list[tuple[Script, tuple[str, ...]]] = []
    specific = None if deleted else scripts.specific(state)
    if specific is not None:
        out.append((specific, specific.argv))
    if scripts.generic is not None:
        out.append((scripts.generic, (*scripts.generic.argv, kind, name, state,
                                      str(priority))))
    return out
