"""Which notify scripts a state change runs, and with which arguments, as keepalived does (PURE).

Owns the decision part of keepalived's notify_instance_exec / notify_group_exec (reference
vrrp-keepalived.md §2.5), so that notify.py only starts processes:

* the state name a script sees: MASTER, BACKUP, FAULT, STOP, and DELETED for an instance that a
  reload removed (halb follows keepalived's `notify_deleted` wording; keepalived without that
  option reports a deleted instance as FAULT);
* the specific script of that state (notify_master / notify_backup / notify_fault /
  notify_stop; DELETED runs notify_stop) runs as written, nothing appended;
* then the generic `notify` with four more arguments: INSTANCE or GROUP, the name, the state
  and the priority (the effective priority of an instance, 0 for a group).

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
                "STOP": self.stop, "DELETED": self.stop}.get(state)


def commands(kind: str, name: str, state: str, priority: int,
             scripts: Scripts) -> list[tuple[Script, tuple[str, ...]]]:
    """(script, argv) pairs to start for `name` (kind INSTANCE or GROUP) entering `state`."""
    if kind not in ("INSTANCE", "GROUP"):
        raise ValueError(f"kind {kind!r} is not INSTANCE or GROUP")
    if state not in STATES:
        raise ValueError(f"state {state!r} is not one of {', '.join(STATES)}")
    out: list[tuple[Script, tuple[str, ...]]] = []
    specific = scripts.specific(state)
    if specific is not None:
        out.append((specific, specific.argv))
    if scripts.generic is not None:
        out.append((scripts.generic, (*scripts.generic.argv, kind, name, state,
                                      str(priority))))
    return out
