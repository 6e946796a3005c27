"""`halb keepalived`: keepalived's command line, process layout, exit codes and log lines.

Flags (keepalived 2.2.7's names): -f/--use-file FILE (default /etc/keepalived/keepalived.conf),
-n/--dont-fork, -l/--log-console, -D/--log-detail, -P/--vrrp, -C/--check, -t/--config-test[=FILE],
-p/--pid FILE (default /run/keepalived.pid), -r/--vrrp_pid FILE (default /run/vrrp.pid),
-c/--checkers_pid FILE (accepted), -i/--config-id ID, -S/--log-facility N (accepted),
-v/--version, -h/--help.

Processes, as keepalived: the parent (writes the pid file, supervises, forwards SIGTERM, SIGINT,
SIGHUP and the dump signals SIGUSR1 / SIGUSR2) and the VRRP child (vrrp/daemon.py, its own event loop, killed by the kernel's
parent-death signal if the parent dies: it then stops gracefully, as keepalived's child does)
and the checker child (health/daemon.py: the health checks and the L4 director they drive,
with the ipvsadm control socket). -P runs only the VRRP child, -C only the checker child,
neither flag both; the checker child runs only when the configuration has virtual_server
blocks (as keepalived's); a SIGHUP whose file now has some starts it. halb's own options:
--dataplane nftables|userspace (the director's; default nftables as root, userspace
otherwise) and --ipvsadm-socket PATH (default
$HALB_IPVSADM_SOCKET or /run/halb/ipvsadm.sock). A child that dies is restarted; one that exits
with 0 (a configuration error, or its work is over) ends the daemon. Without -n the parent
detaches first.

Logging (halb's choice, both on stderr): with -l keepalived's console lines
("Sat Nov 21 07:52:36 2026: (VI_1) Entering MASTER STATE"); without it syslog-style lines
("Nov 21 07:52:36 host Keepalived_vrrp[123]: (VI_1) Entering MASTER STATE"). -D adds the
per-packet detail (every dropped advert).

-t prints keepalived's lines (config warnings with "(FILE: Line N)", a missing interface, a
script run as root without enable_script_security) and exits as keepalived 2.2.7 does: 0 when
nothing was reported, 5 when something was, 6 for the script-security violation alone. A fatal
configuration error at start exits 2 ("exited with permanent error CONFIG").
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from halb import __version__
from halb.config.errors import ConfigError

if TYPE_CHECKING:
    from halb.config.keepalived_model import KeepalivedConfig

VERSION = "Keepalived v2.2.7 (halb " + __version__ + ")"
DEFAULT_CONF = "/etc/keepalived/keepalived.conf"
EXIT_OK, EXIT_PROGRAM_ERROR, EXIT_CONFIG_TEST, EXIT_CONFIG_TEST_SECURITY = 0, 2, 5, 6
RESPAWN_DELAY = 1.0


@dataclass
class Options:
    conf: str = DEFAULT_CONF
    dont_fork: bool = False
    log_console: bool = False
    log_detail: bool = False
    vrrp: bool = False
    check: bool = False
    test: bool = False
    test_file: str | None = None
    pid: str = "/run/keepalived.pid"
    vrrp_pid: str = "/run/vrrp.pid"
    config_id: str | None = None
    version: bool = False
    checkers_pid: str = "/run/checkers.pid"
    dataplane: str | None = None
    ipvsadm_socket: str | None = None


def parse_args(argv: list[str]) -> Options:
    p = argparse.ArgumentParser(prog="halb keepalived", add_help=True)
    p.add_argument("-f", "--use-file", dest="conf", default=DEFAULT_CONF)
    p.add_argument("-n", "--dont-fork", action="store_true")
    p.add_argument("-l", "--log-console", action="store_true")
    p.add_argument("-D", "--log-detail", action="store_true")
    p.add_argument("-P", "--vrrp", action="store_true")
    p.add_argument("-C", "--check", action="store_true")
    p.add_argument("-t", "--config-test", nargs="?", const="", default=None)
    p.add_argument("-p", "--pid", default="/run/keepalived.pid")
    p.add_argument("-r", "--vrrp_pid", default="/run/vrrp.pid")
    p.add_argument("-c", "--checkers_pid", default="/run/checkers.pid")
    p.add_argument("-i", "--config-id", default=None)
    p.add_argument("-S", "--log-facility", default=None)
    p.add_argument("-d", "--dump-conf", action="store_true")
    p.add_argument("-v", "--version", action="store_true")
    p.add_argument("--dataplane", choices=("nftables", "userspace"), default=None)
    p.add_argument("--ipvsadm-socket", default=None)
    a = p.parse_args(argv)
    return Options(a.conf, a.dont_fork, a.log_console, a.log_detail, a.vrrp, a.check,
                   a.config_test is not None, a.config_test or None, a.pid, a.vrrp_pid,
                   a.config_id, a.version, a.checkers_pid, a.dataplane, a.ipvsadm_socket)


class Logger:
    """One log line per call, on stderr, in keepalived's console or syslog-like form."""

    def __init__(self, console: bool, ident: str = "Keepalived") -> None:
        self.console = console
        self.ident = ident
        self.host = socket.gethostname().split(".")[0]

    def __call__(self, message: str) -> None:
        now = time.time()
        if self.console:
            line = f"{time.strftime('%a %b %d %H:%M:%S %Y', time.localtime(now))}: {message}"
        else:
            line = (f"{time.strftime('%b %d %H:%M:%S', time.localtime(now))} {self.host} "
                    f"{self.ident}[{os.getpid()}]: {message}")
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(line + "\n")
            sys.stderr.flush()


# -- configuration ---------------------------------------------------------------------------


def _load(o: Options):  # type: ignore[no-untyped-def]
    from halb.config import keepalived as kconf

    return kconf.load(o.conf, config_id=o.config_id)


def _interface_line(path: str, start: int) -> int:
    """The line of the `interface` keyword in the block starting at `start` (for messages)."""
    with contextlib.suppress(OSError):
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
        for n in range(max(start, 1), len(lines) + 1):
            if re.match(r"\s*interface\s", lines[n - 1]):
                return n
    return start


def system_checks(config) -> tuple[list[str], bool]:  # type: ignore[no-untyped-def]
    """What keepalived checks against the running system: (lines, security violation)."""
    from halb.vrrp.notify import ScriptError, ScriptRunner

    out: list[str] = []
    missing = False
    for inst in config.vrrp_instances:
        if inst.interface is None:
            continue
        try:
            socket.if_nametoindex(inst.interface)
        except OSError:
            missing = True
            where = ""
            if inst.pos is not None:
                where = f"({inst.pos.file}: Line {_interface_line(inst.pos.file, inst.pos.line)})"
            out.append(f"{where} WARNING - interface {inst.interface} for vrrp_instance "
                       f"{inst.name} doesn't exist".lstrip())
    if missing:
        out.append("Non-existent interface specified in configuration")
    g = config.global_defs
    runner = ScriptRunner(g, lambda _m: None)
    scripts = [s.script for s in config.vrrp_scripts.values()]
    for inst in list(config.vrrp_instances) + list(config.vrrp_sync_groups):
        scripts += [s for s in (inst.notify_master, inst.notify_backup, inst.notify_fault,
                                inst.notify_stop, inst.notify) if s is not None]
    insecure = False
    if not g.enable_script_security:
        for script in scripts:
            try:
                runner.resolve(script)
            except ScriptError:
                continue  # keepalived drops a script it cannot find: no violation from it
            if runner.user_of(script)[0] == "root":
                insecure = True
    return out, insecure


def _user_exists(user: str, group: str | None) -> bool:
    import grp
    import pwd

    try:
        pwd.getpwnam(user)
        if group is not None:
            grp.getgrnam(group)
    except KeyError:
        return False
    return True


CHECK_SECURITY = ("SECURITY VIOLATION - check scripts are being executed but script_security "
                  "not enabled.")


def _lvs_warnings(config: KeepalivedConfig) -> tuple[list[str], bool]:
    """What keepalived's checker parse prints for virtual_server blocks (its -t lines), and
    whether its scripts (MISC_CHECK, notify_up/down, quorum_up/down) run as root without
    enable_script_security."""
    from halb.config.keepalived import FatalConfigError, format_error
    from halb.config.keepalived_lvs import virtual_servers
    from halb.vrrp.notify import ScriptError, ScriptRunner

    if not any(b.name in ("virtual_server", "virtual_server_group") for b in config.raw):
        return [], False
    try:
        lvs = virtual_servers(config, lookup_user=_user_exists)
    except FatalConfigError as e:
        return [format_error(w) for w in e.warnings] + [format_error(e)], False
    lines = [format_error(w) for w in lvs.warnings if w.level == "warn"]
    insecure = False
    if not config.global_defs.enable_script_security:
        runner = ScriptRunner(config.global_defs, lambda _m: None)
        for script in lvs.scripts():
            try:
                runner.resolve(script)
            except ScriptError:
                continue
            insecure = insecure or runner.user_of(script)[0] == "root"
    return lines, insecure


def _emit(o: Options, text: str) -> None:
    if o.test_file:
        with open(o.test_file, "w") as f:
            f.write(text)
    else:
        sys.stderr.write(text)


def config_test(o: Options) -> int:
    from halb.config.keepalived import FatalConfigError, format_error

    lines: list[str] = []
    insecure = check_insecure = False
    try:
        loaded = _load(o)
    except FatalConfigError as e:
        lines += [format_error(w) for w in e.warnings] + [format_error(e)]
    except ConfigError as e:
        lines.append(format_error(e))
    else:
        # keepalived's checker parse prints before the VRRP checks; a check-script security
        # violation decides the exit code (6) whatever was printed
        lvs_lines, check_insecure = _lvs_warnings(loaded.config)
        lines += lvs_lines
        lines += [format_error(w) for w in loaded.warnings]
        more, insecure = system_checks(loaded.config)
        lines += more
    if insecure:
        lines.append("SECURITY VIOLATION - scripts are being executed but script_security "
                     "not enabled.")
    if check_insecure:
        lines.append(CHECK_SECURITY)
        text = "".join(line + "\n" for line in lines)
        _emit(o, text)
        return EXIT_CONFIG_TEST_SECURITY
    _emit(o, "".join(line + "\n" for line in lines))
    if len(lines) > (1 if insecure else 0):
        return EXIT_CONFIG_TEST
    return EXIT_CONFIG_TEST_SECURITY if insecure else EXIT_OK


# -- processes -------------------------------------------------------------------------------


def _running(pid_file: str) -> bool:
    from halb.runtime.process import read_pid

    try:
        pid = read_pid(pid_file)
    except ConfigError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _vrrp_child(o: Options, config, log: Logger) -> int:  # type: ignore[no-untyped-def]
    from halb.config.keepalived import format_error
    from halb.runtime.process import die_with_parent, write_pid
    from halb.vrrp import daemon

    die_with_parent(signal.SIGTERM)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    # reload and dumps, once the loop handles them (a SIGHUP while starting must not kill it)
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    log.ident = "Keepalived_vrrp"
    with contextlib.suppress(ConfigError):
        write_pid(o.vrrp_pid)

    def loader():  # type: ignore[no-untyped-def]
        loaded = _load(o)
        for w in loaded.warnings:
            log(format_error(w))
        return loaded.config

    try:
        return daemon.run(config, loader, log, o.log_detail)
    finally:
        from halb.runtime.process import remove_pid

        remove_pid(o.vrrp_pid)


def _checker_child(o: Options, config, log: Logger) -> int:  # type: ignore[no-untyped-def]
    from halb.config.keepalived import format_error
    from halb.health import daemon
    from halb.runtime.process import die_with_parent, remove_pid, write_pid

    die_with_parent(signal.SIGTERM)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):  # SIGHUP: once the loop reloads
        signal.signal(sig, signal.SIG_IGN)
    log.ident = "Keepalived_healthcheckers"
    with contextlib.suppress(ConfigError):
        write_pid(o.checkers_pid)

    def loader():  # type: ignore[no-untyped-def]
        loaded = _load(o)
        for w in loaded.warnings:
            log(format_error(w))
        return loaded.config

    try:
        return daemon.run(config, log, dataplane=o.dataplane, socket=o.ipvsadm_socket,
                          loader=loader)
    finally:
        remove_pid(o.checkers_pid)


def _start_child(target: Callable[[], int], what: str = "VRRP") -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = target()
        except BaseException as e:  # the child never returns into the parent's code
            with contextlib.suppress(Exception):
                sys.stderr.write(f"{what} child failed: {e!r}\n")
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os._exit(code)
    return pid


def serve(o: Options) -> int:
    from halb.config.keepalived import FatalConfigError, format_error
    from halb.runtime.process import daemonize, remove_pid, write_pid

    log = Logger(o.log_console)
    log(f"Starting {VERSION}")
    log(f"Command line: {' '.join(repr(a) for a in sys.argv)}")
    try:
        loaded = _load(o)
    except FatalConfigError as e:
        for w in e.warnings:
            log(format_error(w))
        log(format_error(e))
        log("Stopped - exited with permanent error CONFIG. Terminating")
        return EXIT_PROGRAM_ERROR
    except ConfigError as e:
        log(format_error(e))
        return EXIT_PROGRAM_ERROR
    log(f"Configuration file {o.conf}")
    for w in loaded.warnings:
        log(format_error(w))
    config = loaded.config
    kinds = []
    if not o.check or o.vrrp:
        kinds.append("VRRP")
    if (not o.vrrp or o.check) and config.raw_blocks("virtual_server"):
        kinds.append("Healthcheck")
    if _running(o.pid):
        log("daemon is already running")
        return 1
    if not o.dont_fork:
        daemonize()
    try:
        write_pid(o.pid)
    except ConfigError as e:
        log(str(e))
        return 1
    stopping: list[int] = []
    children: dict[int, str] = {}
    busy: list[bool] = []  # set while the loop starts or restarts a child

    def forward(sig: int, _frame: object) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT):
            stopping.append(sig)
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if sig == signal.SIGHUP:
            reload_children()

    def reload_children() -> None:
        """A reload whose file now has virtual_server blocks starts the checker child (the
        running children reload themselves)."""
        if busy or stopping or "Healthcheck" in children.values() or (o.vrrp and not o.check):
            return
        try:
            cfg = _load(o).config
        except ConfigError:
            return  # the running children log why
        if cfg.raw_blocks("virtual_server"):
            spawn("Healthcheck", cfg)

    def spawn(kind: str, cfg) -> None:  # type: ignore[no-untyped-def]
        busy.append(True)
        try:
            if kind == "VRRP":
                pid = _start_child(lambda: _vrrp_child(o, cfg, log))
            else:
                pid = _start_child(lambda: _checker_child(o, cfg, log), kind)
            children[pid] = kind
        finally:
            busy.pop()
        log(f"Starting {kind} child process, pid={pid}")
        if stopping:  # a signal that came before the child existed
            os.kill(pid, signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)
    if not kinds:
        log("nothing to run: -C without virtual_server blocks")
    try:
        for kind in kinds:
            spawn(kind, config)
        while children:
            pid, status = os.waitpid(-1, 0)
            busy.append(True)  # a SIGHUP now must not start a child this restarts
            try:
                kind = children.pop(pid, "")
                if not kind:
                    continue
                code = os.waitstatus_to_exitcode(status)
                if stopping:
                    continue
                if code == 0:  # its work is over: so is the daemon's
                    stopping.append(signal.SIGTERM)
                    for other in list(children):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(other, signal.SIGTERM)
                    continue
                log(f"{kind} child process({pid}) died: Respawning")
                time.sleep(RESPAWN_DELAY)
                with contextlib.suppress(ConfigError, OSError):
                    config = _load(o).config
                spawn(kind, config)
            finally:
                busy.pop()
    finally:
        remove_pid(o.pid)
    log(f"Stopped {VERSION}")
    return 0


def main(argv: list[str]) -> int:
    try:
        o = parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if o.version:
        sys.stderr.write(f"{VERSION}\n")
        return 0
    if o.test:
        return config_test(o)
    return serve(o)
