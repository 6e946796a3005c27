"""`halb ipvsadm`: ipvsadm 1.31's command line against a running halb director.

`halb ipvsadm <ipvsadm arguments>` parses as ipvsadm does (l4/ipvsadm_args.py), sends the
command or the listing request over the director's control socket (l4/control.py) and prints
what ipvsadm prints (l4/ipvsadm_format.py), with its exit codes: 0; 2 for usage errors; 255 for
popt's errors and for a command the director refuses (ipvsadm exits with -1 there); 1 for a
listing of a service that does not exist.

Names are resolved here, not in the pure modules: host and service names in arguments only
when they are not numeric, and addresses and ports in listings without -n.

Differences from ipvsadm: -h and --version work without a director (ipvsadm needs the kernel
module even for those); with no director listening, the kernel-module message is adapted and
says how to start one; a command the data plane cannot carry (EOPNOTSUPP, e.g. -g in user
space) gets a second line with the data plane's reason; --start-daemon is refused (no connection sync), --stop-daemon answers
"No daemon is running" and -L --daemon lists nothing, as on a kernel where none runs.

`halb ipvsadm --start-director [--dataplane nftables|userspace] [--socket PATH]` runs a
director in the foreground (halb.l4.director, imported only then) with its control socket;
SIGTERM or SIGINT stops it, and the data plane removes what it created.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib
import os
import signal
import socket
import sys
from typing import Any, TextIO

from halb.l4 import ipvsadm_args as A
from halb.l4 import ipvsadm_format as F
from halb.l4.control import ControlClient, ControlError, ControlServer, NoDirector, socket_path
from halb.l4.model import Command
from halb.runtime.loop import new_event_loop

EXIT_ERROR = 255  # ipvsadm returns -1 from main when libipvs fails
NO_IPVS = ("Can't initialize ipvs: {reason}\n"
           "Are you sure that IP Virtual Server is built in the kernel or as module?\n")


# -- names -------------------------------------------------------------------------------------


def _host(name: str) -> str | None:
    try:
        return socket.gethostbyname(name)
    except (OSError, UnicodeError):
        return None


def _service(name: str, proto: str) -> int | None:
    try:
        return socket.getservbyname(name, proto)
    except OSError:
        return None


def _host_of(addr: str) -> str | None:
    try:
        return socket.gethostbyaddr(addr)[0]
    except (OSError, UnicodeError):
        return None


def _service_of(port: int, proto: str) -> str | None:
    try:
        return socket.getservbyport(port, proto)
    except (OSError, OverflowError):
        return None


NAMES = A.Names(host=_host, service=_service)
REVERSE = F.ReverseNames(host=_host_of, service=_service_of)


# -- talking to the director -------------------------------------------------------------------


class Session:
    """One ipvsadm invocation's connection to the director (opened on first use)."""

    def __init__(self, path: str, out: TextIO, err: TextIO) -> None:
        self.path, self.out, self.err = path, out, err
        self.client: ControlClient | None = None

    def connect(self) -> ControlClient:
        if self.client is None:
            self.client = ControlClient(self.path).connect()
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def run(self, parsed: A.Parsed, stdin: TextIO) -> int:
        if isinstance(parsed, A.Text):
            self.out.write(parsed.text)
            return 0
        if isinstance(parsed, A.Restore):
            return self.restore(stdin.read())
        if isinstance(parsed, A.DaemonCommand):
            return self.daemon(parsed)
        if isinstance(parsed, A.Listing):
            return self.listing(parsed)
        return self.command(parsed)

    def command(self, cmd: Command) -> int:
        try:
            self.connect().execute(cmd)
        except ControlError as e:
            self.err.write(F.error_text(cmd.op, e.errno) + "\n")
            if e.errno == errno.EOPNOTSUPP and str(e) != os.strerror(e.errno):
                # ipvsadm's text for it speaks of IPv6; the data plane says what it refused
                self.err.write(f"halb: {e}\n")
            return EXIT_ERROR
        return 0

    def listing(self, ls: A.Listing) -> int:
        table = self.connect().view(connections=ls.connections)
        try:
            text = F.render(table, ls, F.NUMERIC if ls.numeric else REVERSE)
        except F.NoSuchService as e:
            self.err.write(f"{e}\n")
            return 1
        self.out.write(text)
        return 0

    def daemon(self, cmd: A.DaemonCommand) -> int:
        if cmd.start:
            self.err.write("Operation not supported: halb has no connection sync daemon\n")
        else:
            self.err.write(F.DAEMON_ERRORS[(False, errno.ESRCH)] + "\n")
        return EXIT_ERROR

    def restore(self, text: str) -> int:
        """ipvsadm -R: line by line; a usage error ends it, a refused command does not (the
        exit code is the last line's)."""
        result = 0
        for words in A.restore_words(text):
            try:
                parsed = A.parse(words, NAMES, reading_stdin=True)
            except A.UsageError as e:
                self.out.flush()
                self.err.write(e.message)
                return e.code
            result = self.run(parsed, sys.stdin)
        return result


def _no_director(e: NoDirector, err: TextIO) -> int:
    if e.errno in (errno.EACCES, errno.EPERM):
        reason = "Permission denied (you must be root)"
    else:
        reason = f"no halb director listens on {e.path} ({os.strerror(e.errno)})"
    err.write(NO_IPVS.format(reason=reason))
    err.write("halb: start one with `halb ipvsadm --start-director "
              "[--dataplane nftables|userspace]`\n")
    return 2


def run_ipvsadm(argv: list[str], *, path: str | None = None, stdin: TextIO | None = None,
                out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        parsed = A.parse(argv, NAMES)
    except A.UsageError as e:
        err.write(e.message)
        return e.code
    session = Session(socket_path(path), out, err)
    try:
        return session.run(parsed, stdin or sys.stdin)
    except NoDirector as e:
        return _no_director(e, err)
    except ControlError as e:  # a listing the director could not answer
        err.write(f"{e}\n")
        return 1
    except (ConnectionError, TimeoutError, OSError) as e:
        err.write(f"halb ipvsadm: the director's control socket failed: {e}\n")
        return 1
    finally:
        session.close()


# -- --start-director --------------------------------------------------------------------------


def build_director(dataplane: str = "userspace") -> Any:
    """The director --start-director runs: halb.l4.director over the named data plane."""
    from halb.l4.director import Director

    plane: Any
    if dataplane == "nftables":
        from halb.l4.dataplane.nftables import NftablesDataPlane

        plane = NftablesDataPlane()
    else:
        from halb.l4.dataplane.userspace import UserspaceDataPlane

        plane = UserspaceDataPlane()
    return Director(plane)


def _factory(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "Director")


async def _serve(director: Any, path: str, ready: TextIO | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    start = getattr(director, "start", None)
    if start is not None:
        await start()
    try:
        async with ControlServer(director, path):
            if ready is not None:
                ready.write(f"halb ipvsadm: director listening on {path}\n")
                ready.flush()
            await stop.wait()
    finally:
        stopper = getattr(director, "stop", None)
        if stopper is not None:
            await stopper()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def start_director(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="halb ipvsadm --start-director",
                                description="run an L4 director in the foreground")
    p.add_argument("--dataplane", choices=("nftables", "userspace"), default="userspace")
    p.add_argument("--socket", default=None, help="control socket (default "
                   "$HALB_IPVSADM_SOCKET or /run/halb/ipvsadm.sock)")
    p.add_argument("--director-factory", default="halb.cli.ipvsadm:build_director",
                   help=argparse.SUPPRESS)  # tests: halb.testing.fake_director:FakeDirector
    args = p.parse_args(argv)
    path = socket_path(args.socket)
    try:
        director = _factory(args.director_factory)(dataplane=args.dataplane)
    except Exception as e:  # an unusable data plane: say why, as a daemon would
        sys.stderr.write(f"halb ipvsadm: cannot start the director: {e}\n")
        return 1
    # The user-space data plane forwards every byte: uvloop (+40% connections/s measured);
    # the nftables one only drives nft and netlink, on the stock loop pyroute2 supports.
    loop = new_event_loop() if args.dataplane == "userspace" else asyncio.new_event_loop()
    try:
        loop.run_until_complete(_serve(director, path, sys.stderr))
    except OSError as e:
        sys.stderr.write(f"halb ipvsadm: {e.strerror or e}\n")
        return 1
    finally:
        loop.close()
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--start-director":
        return start_director(argv[1:])
    with contextlib.suppress(BrokenPipeError):
        return run_ipvsadm(argv)
    return 1
