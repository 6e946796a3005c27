"""An in-memory director for tests: the interface `l4/control.py` serves (`async execute`,
`view`) over a real `l4.service.ServiceTable`, with no data plane.

Commands get the table's own semantics and errors (DirectorError with the kernel's errno), so
`halb ipvsadm` can be exercised end to end without root or traffic. Tests can also preload a
table (`apply`), replace what `view` returns (`fixed_view`), make the next commands fail with
a chosen errno (`fail_next`), and read what was executed (`executed`).

`FakeDirector(dataplane=...)` accepts the same keyword `halb ipvsadm --start-director` passes,
and has `start()` / `stop()`, so the CLI can run it in the foreground (`--director-factory
halb.testing.fake_director:FakeDirector`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from halb.l4.model import Command, TableView
from halb.l4.service import DirectorError, ServiceTable


class FakeDirector:
    def __init__(self, dataplane: str = "none", *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dataplane = dataplane
        self.table = ServiceTable()
        self.clock = clock
        self.executed: list[Command] = []
        self.fixed_view: TableView | None = None
        self._failures: list[tuple[int, str]] = []
        self.started = False
        self.stopped = False

    def apply(self, *commands: Command) -> None:
        """Preload the table (synchronously, not recorded in `executed`)."""
        for cmd in commands:
            self.table.apply(cmd, self.clock())

    def fail_next(self, *errors: int | tuple[int, str]) -> None:
        """The next commands fail with these errnos (or (errno, message) pairs)."""
        self._failures.extend(e if isinstance(e, tuple) else (e, "") for e in errors)

    async def execute(self, cmd: Command) -> None:
        self.executed.append(cmd)
        if self._failures:
            raise DirectorError(*self._failures.pop(0))
        self.table.apply(cmd, self.clock())

    def view(self, *, connections: bool = False) -> TableView:
        if self.fixed_view is not None:
            return self.fixed_view
        return self.table.view(self.clock(), connections=connections)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True
