"""The L4 director: one `ServiceTable` (l4/service.py) and one data plane, with a periodic tick.

What `halb ipvsadm` (through l4/control.py), `halb keepalived` and the tests call:

* ``await start()`` starts the data plane and the tick; ``await stop()`` stops the tick, stops
  the data plane (which removes everything it created) and clears the table;
* ``await execute(cmd)`` applies one `model.Command` to the table, then ``dataplane.sync``;
  it raises `DirectorError(errno)` with the kernel's errno (EEXIST, ESRCH, ENOENT, ERANGE,
  EINVAL...), EOPNOTSUPP when the data plane cannot carry the service or real server (DR in
  user space), or the data plane's errno when it cannot apply the table (a VIP it cannot bind);
  a command refused by the data plane leaves the table as it was;
* ``view(connections=False)`` answers every listing with a `model.TableView`;
* ``tick()`` (every `interval` seconds, also callable by hand): entry and template expiry and
  the 2-second rate estimator, after folding in what a kernel data plane reports (`collect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import time
from collections.abc import Callable

from halb.l4.dataplane.base import DataPlane, DataPlaneError
from halb.l4.model import Command, Op, TableView
from halb.l4.service import DirectorError, ServiceTable

log = logging.getLogger("halb.l4.director")

TICK = 1.0


class Director:
    def __init__(self, dataplane: DataPlane, *, now: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, interval: float = TICK,
                 table: ServiceTable | None = None) -> None:
        self.dataplane = dataplane
        self.now = now
        self.rng = rng if rng is not None else random.Random()
        self.interval = interval
        self.table = table if table is not None else ServiceTable()
        self._ticker: asyncio.Task[None] | None = None
        dataplane.use_clock(now, self.rng)

    # -- life ------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.dataplane.start(self.table)
        self._ticker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self.dataplane.stop()
        for cp in list(self.table.entries):
            self.table.close(cp)
        self.table.apply(Command(Op.CLEAR), self.now())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                feedback = await self.dataplane.collect()
                if feedback is not None:
                    self.table.absorb(feedback, self.now())
                self.tick()
            except Exception:  # a bad reading must not stop expiry and rates
                log.exception("director tick")

    def tick(self) -> None:
        self.table.tick(self.now())

    # -- commands and views ----------------------------------------------------------------------

    async def execute(self, cmd: Command) -> None:
        table = self.table
        now = self.now()
        self._check_dataplane(cmd)
        table.apply(cmd, now)
        if cmd.op is Op.LIST:
            return
        try:
            self.dataplane.sync(table)
        except DataPlaneError as e:
            code = getattr(e, "errno", None) or errno.EIO
            if cmd.op is Op.ADD_SERVICE and cmd.service is not None:
                # undo, so that the table says what is forwarded
                table.apply(Command(Op.DEL_SERVICE, service=cmd.service), now)
                with contextlib.suppress(DataPlaneError):
                    self.dataplane.sync(table)
            raise DirectorError(code, str(e)) from e

    def _check_dataplane(self, cmd: Command) -> None:
        spec = cmd.service
        if spec is None:
            return
        if cmd.op in (Op.ADD_SERVICE, Op.EDIT_SERVICE):
            why = self.dataplane.unsupported(spec)
        elif cmd.op in (Op.ADD_DEST, Op.EDIT_DEST) and cmd.dest is not None:
            svc = self.table.services.get(spec.key)
            if svc is None:
                return  # the table answers ESRCH
            why = self.dataplane.unsupported(svc.spec, cmd.dest)
        else:
            return
        if why:
            raise DirectorError(errno.EOPNOTSUPP, why)

    def view(self, *, connections: bool = False) -> TableView:
        return self.table.view(self.now(), connections=connections)
