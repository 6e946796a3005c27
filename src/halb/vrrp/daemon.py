"""The VRRP process: every vrrp_instance of a keepalived.conf in one asyncio loop.

Owns the process-wide parts of keepalived's VRRP child (DESIGN rule 4: this runs in a process of
its own, so nothing else can delay an advert):

* the shared handles: one VrrpSocket per (interface, family) with adverts dispatched to the
  instance of their VRID (unknown VRIDs are counted as drops), one Announcer per interface, the
  netlink handle, the LinkWatcher and one ScriptTracker per vrrp_script that something tracks;
* start: sockets, trackers, then every instance (VIPs left over are removed, machines started);
* SIGTERM / SIGINT: every instance stops (a MASTER sends priority 0 and removes its VIPs,
  notify_stop runs), then the process exits;
* SIGHUP: reload. The new file is read and checked first; if it does not load the old
  configuration keeps running and the reason is logged with file:line. Otherwise instances with
  the same name, VRID and interface keep their state (and take the new settings), removed ones
  stop as on SIGTERM (notify with DELETED), new ones start; scripts whose definition did not
  change keep their rise/fall state.
* SIGUSR1 / SIGUSR2: keepalived's dumps, keepalived.data (the VRRP topology: states,
  priorities, timers, addresses) and keepalived.stats (per-instance counters, stats.py), written
  to $TMPDIR (default /tmp) as keepalived writes them to /tmp. A datagram the socket could not
  decode counts against the instance of the VRID in its header, like every other drop; one whose
  VRID no instance has is counted as the daemon's own.

The stdlib event loop is used (pyroute2's asyncio netlink does not run on uvloop).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from collections import Counter
from collections.abc import Callable

from halb.config.errors import ConfigError
from halb.config.keepalived import format_error
from halb.config.keepalived_model import KeepalivedConfig, VrrpInstance, VrrpScript
from halb.vrrp.addresses import Announcer, Netlink
from halb.vrrp.instance import Host, Instance, SyncGroup
from halb.vrrp.notify import Notifier, ScriptRunner
from halb.vrrp.socket import Rejected, VrrpSocket
from halb.vrrp.stats import format_data, format_stats
from halb.vrrp.tracking import LinkWatcher, ScriptTracker

Loader = Callable[[], KeepalivedConfig]
Log = Callable[[str], None]


def _same_script(a: VrrpScript, b: VrrpScript) -> bool:
    return dataclasses.replace(a, pos=None) == dataclasses.replace(b, pos=None)


class Daemon:
    def __init__(self, config: KeepalivedConfig, loader: Loader, log: Log,
                 detail: bool = False) -> None:
        self.config = config
        self.loader = loader
        self.log = log
        self.detail = detail
        self.netlink = Netlink()
        self.links = LinkWatcher(log)
        self.sockets: dict[tuple[str, int], VrrpSocket] = {}
        self.announcers: dict[str, Announcer] = {}
        self.scripts: dict[str, ScriptTracker] = {}
        self.instances: dict[tuple[str, int, str | None], Instance] = {}
        self.groups: list[SyncGroup] = []
        self.drops: Counter[str] = Counter()
        self.runner = ScriptRunner(config.global_defs, log)
        self._events: asyncio.Queue[str] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- shared handles ----------------------------------------------------------------------

    def _socket(self, ifname: str, family: int) -> VrrpSocket:
        key = (ifname, family)
        sock = self.sockets.get(key)
        if sock is None:
            sock = VrrpSocket(ifname, family)
            self.sockets[key] = sock
            assert self._loop is not None
            self._loop.add_reader(sock.fileno(), self._readable, sock)
        return sock

    def _announcer(self, ifname: str) -> Announcer:
        if ifname not in self.announcers:
            self.announcers[ifname] = Announcer(ifname)
        return self.announcers[ifname]

    def _script_ok(self, name: str) -> bool:
        tracker = self.scripts.get(name)
        return True if tracker is None else tracker.ok

    def _link_ok(self, name: str) -> bool:
        return self.links.watch(name)

    def _host(self, config: KeepalivedConfig) -> Host:
        assert self._loop is not None
        self.runner.g = config.global_defs
        return Host(config.global_defs, self.netlink, Notifier(self.runner), self.log,
                    self._socket, self._announcer, self._script_ok, self._link_ok,
                    self.detail, self._loop)

    def _readable(self, sock: VrrpSocket) -> None:
        for rx in sock.read():
            vrid = rx.vrid if isinstance(rx, Rejected) else rx.advert.vrid
            inst = self._by_vrid.get((sock.ifname, sock.family, vrid))
            if inst is None:  # other routers' VRIDs are normal on a LAN: counted, not logged
                self.drops[rx.reason if isinstance(rx, Rejected) else "unknown_vrid"] += 1
                if self.detail and isinstance(rx, Rejected):
                    self.log(f"{sock.ifname}: {rx.message}")
            elif isinstance(rx, Rejected):
                inst.reject(rx.reason, rx.message)
            else:
                inst.receive(rx)

    # -- keepalived's dump files ---------------------------------------------------------------

    def dump_dir(self) -> str:
        return os.environ.get("TMPDIR") or "/tmp"

    def dump(self, what: str) -> str:
        """Write keepalived.stats ("stats") or keepalived.data ("data"); returns the path."""
        insts = list(self.instances.values())
        if what == "stats":
            self.log(f"Printing VRRP stats for process({os.getpid()}) on signal")
            text = format_stats([(i.name, i.stats) for i in insts], self.drops)
        else:
            self.log(f"Printing VRRP data for process({os.getpid()}) on signal")
            text = format_data(i.view() for i in insts)
        path = os.path.join(self.dump_dir(), f"keepalived.{what}")
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        return path

    def _index(self) -> None:
        self._by_vrid = {(i.conf.interface or "", i.conf.family, i.conf.virtual_router_id): i
                         for i in self.instances.values()}

    # -- trackers ----------------------------------------------------------------------------

    def _tracked_scripts(self, config: KeepalivedConfig) -> set[str]:
        names = {t.name for i in config.vrrp_instances for t in i.track_scripts}
        names |= {t.name for g in config.vrrp_sync_groups for t in g.track_scripts}
        return names & set(config.vrrp_scripts)

    def _on_script(self, name: str, ok: bool) -> None:
        for inst in list(self.instances.values()):
            scripts, _ = inst.tracked()
            if any(t.name == name for t in scripts):
                inst.refresh()

    def _on_link(self, name: str, ok: bool) -> None:
        for inst in list(self.instances.values()):
            _, links = inst.tracked()
            if any(t.name == name for t in links):
                inst.refresh()

    async def _sync_scripts(self, config: KeepalivedConfig) -> None:
        wanted = self._tracked_scripts(config)
        for name in list(self.scripts):
            new = config.vrrp_scripts.get(name)
            if name not in wanted or new is None or not _same_script(new,
                                                                      self.scripts[name].script):
                await self.scripts.pop(name).stop()
        for name in sorted(wanted):
            if name not in self.scripts:
                tracker = ScriptTracker(config.vrrp_scripts[name], self.runner)
                tracker.listeners.append(self._on_script)
                self.scripts[name] = tracker
                tracker.start()

    # -- building ----------------------------------------------------------------------------

    def _make(self, conf: VrrpInstance, host: Host) -> Instance | None:
        try:
            return Instance(conf, host)
        except (ValueError, OSError) as e:
            self.log(str(e) if isinstance(e, ValueError) else
                     f"({conf.name}) Cant open raw socket on {conf.interface}: {e}")
            return None

    def _groups(self, config: KeepalivedConfig, host: Host) -> None:
        for inst in self.instances.values():
            inst.sync = None
        by_name = {i.name: i for i in self.instances.values()}
        self.groups = []
        for g in config.vrrp_sync_groups:
            members = [by_name[n] for n in g.group if n in by_name]
            if members:
                self.groups.append(SyncGroup(g, members, host))

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.netlink.open()
        self.links.listeners.append(self._on_link)
        self.links.start()
        host = self._host(self.config)
        await self._sync_scripts(self.config)
        for conf in self.config.vrrp_instances:
            inst = self._make(conf, host)
            if inst is not None:
                self.instances[inst.key] = inst
        self._index()
        self._groups(self.config, host)
        self._open_announcers()
        for inst in self.instances.values():
            await inst.start()

    def _open_announcers(self) -> None:
        """The gratuitous ARP senders of every interface a VIP may go on, opened now so a
        takeover never waits for a socket (addresses.Announcer)."""
        for inst in self.instances.values():
            for dev in {v.dev or inst.conf.interface or "" for v in inst.all_vips()}:
                with contextlib.suppress(OSError):
                    self._announcer(dev)

    async def reload(self) -> bool:
        self.log("Reloading")
        try:
            config = self.loader()
        except ConfigError as e:
            self.log(f"Reload failed, the running configuration is kept: {format_error(e)}")
            return False
        host = self._host(config)
        await self._sync_scripts(config)
        new_keys: dict[tuple[str, int, str | None], VrrpInstance] = {
            (c.name, c.virtual_router_id, c.interface): c for c in config.vrrp_instances}
        for key in [k for k in self.instances if k not in new_keys]:
            inst = self.instances.pop(key)
            await inst.stop("DELETED")
        started: list[Instance] = []
        for key, conf in new_keys.items():
            inst = self.instances.get(key)
            if inst is not None:
                inst.host = host
                try:
                    inst.update(conf)
                except (ValueError, OSError) as e:
                    self.log(str(e))
                continue
            made = self._make(conf, host)
            if made is not None:
                self.instances[key] = made
                started.append(made)
        self.config = config
        self._index()
        self._groups(config, host)
        self._open_announcers()
        for inst in started:
            await inst.start()
        for inst in self.instances.values():
            inst.refresh()
        self._close_unused()
        return True

    def _close_unused(self) -> None:
        used = {(i.conf.interface, i.conf.family) for i in self.instances.values()}
        for key in [k for k in self.sockets if k not in used]:
            sock = self.sockets.pop(key)
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()

    async def stop(self) -> None:
        for inst in list(self.instances.values()):
            with contextlib.suppress(Exception):
                await inst.stop()
        await self.runner.drain()
        for tracker in list(self.scripts.values()):
            await tracker.stop()
        self.links.stop()
        for sock in self.sockets.values():
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self.sockets.clear()
        for ann in self.announcers.values():
            ann.close()
        await self.netlink.close()

    # -- the process ---------------------------------------------------------------------------

    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT; SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        for sig, event in ((signal.SIGTERM, "stop"), (signal.SIGINT, "stop"),
                           (signal.SIGHUP, "reload"), (signal.SIGUSR1, "data"),
                           (signal.SIGUSR2, "stats")):
            loop.add_signal_handler(sig, self._events.put_nowait, event)
        try:
            await self.start()
            while True:
                event = await self._events.get()
                if event == "stop":
                    break
                if event in ("data", "stats"):
                    try:
                        self.dump(event)
                    except OSError as e:
                        self.log(f"Can't open {self.dump_dir()}/keepalived.{event} "
                                 f"({e.errno}: {e.strerror})")
                    continue
                await self.reload()
        finally:
            await self.stop()
            self.log("Stopped")
        return 0


def run(config: KeepalivedConfig, loader: Loader, log: Log, detail: bool = False) -> int:
    """The VRRP child's main: its own (stdlib) event loop until SIGTERM."""

    async def main() -> int:
        return await Daemon(config, loader, log, detail).serve()

    return asyncio.run(main())
