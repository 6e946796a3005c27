"""`halb backend`: the demo backend's command line (arguments only; the server is
halb.lab.backend)."""

from __future__ import annotations

import argparse

from halb.lab.backend import Settings, parse_listen, serve


def _listen(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="halb backend",
        description="A demo HTTP/1.1 backend whose page and X-Backend header name the node "
                    "that answered. /health answers 200, or 503 while --health-file exists or "
                    "after SIGUSR1 (SIGUSR2: healthy again). SIGTERM/SIGINT stop it.")
    p.add_argument("--listen", type=_listen, default=("127.0.0.1", 8081), metavar="ADDR:PORT",
                   help="address and port to listen on (default 127.0.0.1:8081; PORT alone "
                        "means 127.0.0.1:PORT)")
    p.add_argument("--name", default=None, metavar="NODE",
                   help="the node name on the page and in X-Backend (default: ADDR:PORT)")
    p.add_argument("--delay", type=_seconds, default=0.0, metavar="SECONDS",
                   help="hold every answer (not /health) this long")
    p.add_argument("--error-rate", type=_rate, default=0.0, metavar="P",
                   help="answer 500 to this fraction of requests (not /health)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the error-rate draws (default: random)")
    p.add_argument("--health-file", default=None, metavar="PATH",
                   help="/health answers 503 while this file exists")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="do not print the listening line")
    return p


def main(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    host, port = a.listen
    name = a.name or f"{host}:{port}"
    return serve(Settings(host=host, port=port, name=name, delay=a.delay,
                          error_rate=a.error_rate, seed=a.seed, health_file=a.health_file,
                          quiet=a.quiet))
