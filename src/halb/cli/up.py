"""`halb up`: the quickstart's command line (arguments only; the work is halb.lab.quickstart).

    halb up [-p PREFIX] [-c FILE]

starts the demo backends named by the configuration's upstreams and `halb nginx` in front of
them, prints the URL and a live one-line summary, and stops everything on Ctrl-C. Defaults:
the prefix examples/quickstart/ when run from the repository, its nginx.conf.
"""

from __future__ import annotations

import argparse
import os
import sys

from halb.config.errors import ConfigError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="halb up",
        description="The quickstart: demo backends (one `halb backend` per upstream server of "
                    "the configuration, loopback only) and `halb nginx` in front of them, a live "
                    "summary (requests/s, each backend's share and health); Ctrl-C stops all.")
    p.add_argument("-p", "--prefix", default="examples/quickstart/",
                   help="the nginx prefix (default: examples/quickstart/)")
    p.add_argument("-c", "--conf", default="nginx.conf",
                   help="the configuration file, relative to the prefix (default: nginx.conf)")
    p.add_argument("--interval", type=float, default=1.0, help="summary period in seconds")
    return p


def main(argv: list[str]) -> int:
    from halb.config import nginx as nginx_config
    from halb.lab import quickstart

    a = parser().parse_args(argv)
    prefix = os.path.abspath(a.prefix)
    conf = a.conf if os.path.isabs(a.conf) else os.path.join(prefix, a.conf)
    if not os.path.exists(conf):
        sys.stderr.write(f"halb up: {conf}: no such configuration file\n")
        return 1
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    try:
        config = nginx_config.load(conf, prefix).config
    except ConfigError as e:
        sys.stderr.write(f"halb up: [{e.level}] {e}\n")
        return 1
    try:
        return quickstart.run(conf, prefix, config, sys.stdout, interval=a.interval)
    except quickstart.PlanError as e:
        sys.stderr.write(f"halb up: {e}\n")
        return 1
