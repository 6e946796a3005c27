"""keepalived's checker child: the health checks and the L4 director they drive, in one loop.

`run(config, log, dataplane=..., socket=...)` is what `halb keepalived` (without -P) runs in
its checker process (cli/keepalived.py forks it): it reads the virtual_server blocks
(config/keepalived_lvs.py), starts a `Director` over the chosen data plane ("nftables", the
kernel's, or "userspace", the asyncio proxy), adds every virtual service (health/ipvs.py),
serves the ipvsadm control socket (l4/control.py) so `halb ipvsadm -L -n` lists the table as
ipvsadm lists keepalived's, and starts the `HealthRunner`. Each `HealthChanged` the runner
publishes becomes ipvsadm commands on the director (add with the weight, edit the weight,
delete). A command the director refuses is logged and the checker goes on, as keepalived logs
a failed IPVS call. A virtual service the data plane cannot take yet (the user-space one binds
the VIP, which a VRRP BACKUP does not hold) is tried again every SERVICE_RETRY seconds, quietly,
and gets its current destinations once it is in: so the director of the VRRP MASTER is the one
that receives the VIP's traffic, and a BACKUP's takes over when the VIP arrives.

ha_suspend: a virtual server's checks pause while its address is not local (keepalived's
checker learns it from netlink; halb looks every HA_POLL seconds by binding to it), so a VRRP
BACKUP does not check; they resume when the VIP arrives. Address services only (not fwmark or
group ones).

SIGTERM / SIGINT: the runner stops (keepalived's shutdown: destinations removed; omega runs
notify_down / quorum_down), the services are deleted, the control socket closes and the
director stops, which removes what its data plane created (nft tables, listeners). SIGUSR1 /
SIGUSR2 are ignored.

SIGHUP: keepalived's reload ("Reloading", "Got SIGHUP, reloading checker configuration").
The file is read again with `loader`; if it does not load (a fatal error: keepalived's line
with "(FILE: Line N)"), the running configuration is kept and the reason is logged. Otherwise
the events already out are applied, the table keeper and the health state are carried over to
the new configuration (health/reload.py) and only the difference goes to the director: no
flush, so the services that did not change keep their connections and scheduler state, and
servers that did not change keep their health (no re-check, no flap). A new service the data
plane cannot take yet joins the ones retried every SERVICE_RETRY seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from halb.config.errors import ConfigError
from halb.config.keepalived_lvs_model import LvsConfig
from halb.health.ipvs import IpvsSync
from halb.health.reload import reload_sync
from halb.health.runner import HealthRunner
from halb.l4.model import Command, Op

DATAPLANES = ("nftables", "userspace")
SERVICE_RETRY = 1.0
HA_POLL = 1.0


def is_local(address: str) -> bool:
    """Whether `address` is one of this namespace's (a bind to it succeeds)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((address, 0))
    except OSError:
        return False
    return True


def default_dataplane() -> str:
    """nftables as root (the kernel forwards), user space otherwise."""
    return "nftables" if os.geteuid() == 0 else "userspace"


def build_director(dataplane: str) -> Any:
    from halb.l4.director import Director

    plane: Any
    if dataplane == "nftables":
        from halb.l4.dataplane.nftables import NftablesDataPlane

        plane = NftablesDataPlane()
    elif dataplane == "userspace":
        from halb.l4.dataplane.userspace import UserspaceDataPlane

        plane = UserspaceDataPlane()
    else:
        raise ValueError(f"unknown data plane {dataplane!r} (nftables or userspace)")
    return Director(plane)


def _describe(cmd: Command) -> str:
    parts = [cmd.op.value]
    if cmd.service is not None:
        k = cmd.service.key
        parts.append(f"FWM {k.fwmark}" if k.fwmark else f"{k.proto.value} [{k.addr}]:{k.port}")
    if cmd.dest is not None:
        parts.append(f"-r [{cmd.dest.addr}]:{cmd.dest.port} -w {cmd.dest.weight}")
    return " ".join(parts)


class Checker:
    """The checker process's work: a director, its control socket, the runner between them."""

    def __init__(self, lvs: LvsConfig, director: Any, log: Callable[[str], None], *,
                 global_defs: Any = None, socket: str | None = None) -> None:
        self.lvs = lvs
        self.director = director
        self.log = log
        self.socket = socket
        self.sync = IpvsSync(lvs)
        self.runner = HealthRunner(lvs, global_defs=global_defs, log=log)
        self._consumer: asyncio.Task[None] | None = None
        self._retry: asyncio.Task[None] | None = None
        self._suspend: asyncio.Task[None] | None = None
        self.pending: list[Command] = []  # -A commands the data plane refused so far
        self._lock = asyncio.Lock()  # events and reloads change the table one at a time
        self._stopping = False

    async def execute(self, cmd: Command, quiet: bool = False) -> bool:
        try:
            await self.director.execute(cmd)
        except Exception as e:  # keepalived logs a refused IPVS command and goes on
            if not quiet:
                self.log(f"IPVS ({_describe(cmd)}): {e}")
            return False
        return True

    def _pending(self, cmd: Command) -> bool:
        """A command for a service still waiting for the data plane: it fails, quietly."""
        return cmd.service is not None and any(
            p.service is not None and p.service.key == cmd.service.key for p in self.pending)

    def _watch(self) -> None:
        """ha_suspend: poll the addresses of the virtual servers that have it."""
        if self._suspend is not None:
            self._suspend.cancel()
            self._suspend = None
        watched = [(vs.name, str(vs.address)) for vs in self.lvs.virtual_servers
                   if vs.ha_suspend and vs.address is not None and vs.group is None]
        if watched:
            self._suspend = asyncio.create_task(self._ha_suspend(watched), name="ha-suspend")

    async def _ha_suspend(self, watched: list[tuple[str, str]]) -> None:
        local: dict[str, bool] = {}
        while True:
            for name, address in watched:
                now = is_local(address)
                if local.get(name) != now:
                    local[name] = now
                    self.runner.set_enabled(name, now)
            await asyncio.sleep(HA_POLL)

    def _retry_later(self) -> None:
        if self.pending and (self._retry is None or self._retry.done()):
            self._retry = asyncio.create_task(self._retry_services(), name="vs-retry")

    async def _retry_services(self) -> None:
        while self.pending:
            await asyncio.sleep(SERVICE_RETRY)
            async with self._lock:
                for cmd in list(self.pending):
                    if cmd.service is None or not await self.execute(cmd, quiet=True):
                        continue
                    self.pending.remove(cmd)
                    self.log(f"IPVS ({_describe(cmd)}): added")
                    for add in self.sync.replay(cmd.service):
                        await self.execute(add)

    async def _consume(self) -> None:
        while True:
            ev = await self.runner.queue.get()
            async with self._lock:
                for cmd in self.sync.apply(ev):
                    await self.execute(cmd, quiet=self._pending(cmd))

    async def reload(self, loader: Callable[[], Any]) -> bool:
        """SIGHUP: re-read, diff, carry the state over, change only the difference."""
        from halb.config.keepalived import format_error
        from halb.config.keepalived_lvs import virtual_servers

        if self._stopping:
            return False
        self.log("Reloading")
        self.log("Got SIGHUP, reloading checker configuration")
        def parse() -> tuple[Any, LvsConfig]:
            config = loader()
            return config, virtual_servers(config)

        try:  # in a thread: the checks and the table go on while a big file is read
            config, lvs = await asyncio.get_running_loop().run_in_executor(None, parse)
        except ConfigError as e:
            for w in getattr(e, "warnings", []):
                self.log(format_error(w))
            self.log(f"Reload failed, the running configuration is kept: {format_error(e)}")
            return False
        async with self._lock:
            if self._stopping:
                return False
            await self._drain()  # what the old state decided, on the old table
            sync, cmds = reload_sync(self.sync, lvs)
            old_pending = {c.service.key for c in self.pending if c.service is not None}
            new_keys = {s.key: s for specs in sync.specs.values() for s in specs}
            self.pending = [Command(Op.ADD_SERVICE, service=new_keys[k])
                            for k in old_pending if k in new_keys]
            self.sync, self.lvs = sync, lvs
            self.runner.reload(lvs, config.global_defs)  # its events wait for the lock
            for cmd in cmds:
                key = cmd.service.key if cmd.service is not None else None
                if key in old_pending or self._pending(cmd):
                    continue  # not in the data plane: the retry adds it as it is now
                if not await self.execute(cmd) and cmd.op is Op.ADD_SERVICE:
                    self.pending.append(cmd)
            self._retry_later()
            self._watch()
        self.log(f"Reloaded: {len(sync.specs)} virtual server(s)")
        return True

    async def _drain(self) -> None:
        while not self.runner.queue.empty():
            for cmd in self.sync.apply(self.runner.queue.get_nowait()):
                await self.execute(cmd, quiet=self._pending(cmd))

    async def serve(self, stop: asyncio.Event, ready: Callable[[], None] | None = None) -> None:
        from halb.l4.control import ControlServer

        await self.director.start()
        try:
            async with ControlServer(self.director, self.socket):
                for cmd in self.sync.services():
                    if not await self.execute(cmd):
                        self.pending.append(cmd)
                if self.pending:
                    self.log(f"{len(self.pending)} virtual service(s) not in the data plane "
                             f"yet: trying again every {SERVICE_RETRY:g} s")
                    self._retry_later()
                await self.runner.start()
                self._watch()
                self._consumer = asyncio.create_task(self._consume(), name="ipvs-sync")
                if ready is not None:
                    ready()
                try:
                    await stop.wait()
                finally:
                    await self.shutdown()
        finally:
            await self.director.stop()

    async def shutdown(self) -> None:
        self._stopping = True
        for task in (self._consumer, self._retry, self._suspend):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._consumer = self._retry = self._suspend = None
        async with self._lock:  # a reload under way finishes first
            await self.runner.stop()
            await self._drain()
            for cmd in self.sync.shutdown():
                await self.execute(cmd, quiet=self._pending(cmd))


async def _reloads(checker: Checker, hups: asyncio.Queue[None],
                   loader: Callable[[], Any]) -> None:
    while True:
        await hups.get()
        try:
            await checker.reload(loader)
        except Exception as e:  # a reload's bug must not end the checker
            checker.log(f"Reload failed: {e!r}")


async def _main(checker: Checker, log: Callable[[str], None],
                loader: Callable[[], Any] | None = None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    hups: asyncio.Queue[None] = asyncio.Queue()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads = None
    if loader is None:
        loop.add_signal_handler(signal.SIGHUP, lambda: log(
            "Reloading: no configuration file to read again; the running one stays"))
    else:
        loop.add_signal_handler(signal.SIGHUP, hups.put_nowait, None)
        reloads = asyncio.create_task(_reloads(checker, hups, loader), name="reloads")
    try:
        await checker.serve(stop, lambda: log(
            f"Initializing ipvs: {len(checker.sync.specs)} virtual server(s), "
            f"control socket {checker.socket or 'default'}"))
    finally:
        if reloads is not None:
            reloads.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reloads
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def run(config: Any, log: Callable[[str], None], *, dataplane: str | None = None,
        socket: str | None = None, loader: Callable[[], Any] | None = None) -> int:
    """The checker child's life: 0 after a clean stop, 1 when the director cannot run."""
    from halb.config.keepalived_lvs import virtual_servers
    from halb.runtime.loop import new_event_loop

    lvs = virtual_servers(config)
    plane = dataplane or default_dataplane()
    try:
        director = build_director(plane)
    except Exception as e:
        log(f"cannot start the {plane} director: {e}")
        return 1
    checker = Checker(lvs, director, log, global_defs=config.global_defs, socket=socket)
    # the user-space data plane forwards every byte: uvloop; nftables drives nft and netlink
    loop = new_event_loop() if plane == "userspace" else asyncio.new_event_loop()
    try:
        loop.run_until_complete(_main(checker, log, loader))
    except OSError as e:
        log(f"checker: {e.strerror or e}")
        return 1
    finally:
        loop.close()
    return 0
