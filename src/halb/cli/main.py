"""`halb <command>`, or busybox style: invoked as `nginx` (`keepalived`, `ipvsadm`), halb is
`halb nginx` (`halb keepalived`, `halb ipvsadm`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

USAGE = """usage: halb <command> [options]

commands:
  nginx        the L7 reverse proxy / web server (reads nginx.conf; nginx's flags)
  keepalived   VRRP failover of virtual IPs (reads keepalived.conf; keepalived's flags)
  ipvsadm      the L4 director's table, ipvsadm's grammar and output (--start-director runs one)
  backend      a demo HTTP backend that names the node that answered (--listen --name --delay)
  up           the quickstart: demo backends + halb nginx on loopback, live summary (make run)
  lab          the seeds' cluster in network namespaces: up | down | status | run | report (root)

Invoked through a link named nginx, keepalived or ipvsadm, halb behaves as that command.
"""


def _nginx(argv: list[str]) -> int:
    from halb.cli.nginx import main

    return main(argv)


def _keepalived(argv: list[str]) -> int:
    from halb.cli.keepalived import main

    return main(argv)


def _ipvsadm(argv: list[str]) -> int:
    from halb.cli.ipvsadm import main

    return main(argv)


def _backend(argv: list[str]) -> int:
    from halb.cli.backend import main

    return main(argv)


def _lab(argv: list[str]) -> int:
    from halb.cli.lab import main

    return main(argv)


COMMANDS: dict[str, Callable[[list[str]], int]] = {"nginx": _nginx, "keepalived": _keepalived,
                                                   "ipvsadm": _ipvsadm}
def _up(argv: list[str]) -> int:
    from halb.cli.up import main

    return main(argv)


SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {**COMMANDS, "backend": _backend,
                                                      "lab": _lab, "up": _up}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv if argv is None else argv)
    prog = os.path.basename(args[0]) if args else "halb"
    if prog in COMMANDS:
        return COMMANDS[prog](args[1:])
    if len(args) < 2 or args[1] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if len(args) >= 2 else 1
    cmd = SUBCOMMANDS.get(args[1])
    if cmd is None:
        sys.stderr.write(f"halb: unknown command {args[1]!r}\n{USAGE}")
        return 1
    return cmd(args[2:])


if __name__ == "__main__":
    sys.exit(main())
