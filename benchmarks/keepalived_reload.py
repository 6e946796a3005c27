"""What a SIGHUP reload of the checker costs (no root, no network): the pure part of halb's
keepalived reload — parse the file, diff it, carry the health state over (health/reload.py
reload_state) and compute the director's commands (reload_sync) — for a configuration of
VS virtual servers with RS real servers each, once unchanged and once with a tenth of the real
servers replaced. This is the time the checker's event loop is busy (probes and table events
wait meanwhile); the director's commands then cost what each data plane takes per command.

    .venv/bin/python benchmarks/keepalived_reload.py [--vs 50] [--rs 20] [--rounds 5]

Reports the median of the rounds in milliseconds for each part (parse: config/keepalived*.py;
table: reload_sync; state: reload_state), and the number of director commands (0 for the
unchanged file: nothing is flushed or re-added).
"""

from __future__ import annotations

import argparse
import statistics
import time

from halb.config.keepalived import load_text
from halb.config.keepalived_lvs import virtual_servers
from halb.health.events import HealthChanged
from halb.health.ipvs import IpvsSync
from halb.health.reload import reload_state, reload_sync
from halb.health.state import HealthState


def conf(vss: int, rss: int, shift: int = 0) -> str:
    out = []
    for v in range(vss):
        servers = "".join(
            f" real_server 198.18.{1 + r // 200}.{10 + (r + shift) % 200} 80 {{\n"
            f"  weight 1\n  TCP_CHECK {{\n   connect_timeout 1\n  }}\n }}\n"
            for r in range(rss))
        out.append(f"virtual_server 198.18.0.{v + 1} 80 {{\n protocol TCP\n lb_algo rr\n"
                   f" lb_kind NAT\n delay_loop 5\n{servers}}}\n")
    return "".join(out)


def one(old_text: str, new_text: str) -> tuple[float, float, float, int]:
    """(parse ms, table diff ms, state migration ms, director commands)."""
    old = virtual_servers(load_text(old_text, config_id="b").config)
    state = HealthState(old, lambda: 0.0)
    sync = IpvsSync(old)
    sync.services()
    for a in state.start(0.0):
        if isinstance(a, HealthChanged):
            sync.apply(a)
    t0 = time.perf_counter()
    new = virtual_servers(load_text(new_text, config_id="b").config)
    t1 = time.perf_counter()
    _, cmds = reload_sync(sync, new)
    t2 = time.perf_counter()
    reload_state(state, new, 10.0)
    t3 = time.perf_counter()
    return (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000, len(cmds)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--vs", type=int, default=50)
    p.add_argument("--rs", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    base = conf(a.vs, a.rs)
    changed = conf(a.vs, a.rs, shift=max(1, a.rs // 10))
    print(f"{a.vs} virtual servers x {a.rs} real servers ({a.vs * a.rs} checkers)")
    print(f"  {'':18s} {'parse':>8s} {'table':>8s} {'state':>8s}  (ms, median)")
    for label, text in (("same file", base), ("a tenth replaced", changed)):
        runs = [one(base, text) for _ in range(a.rounds)]
        parse, table, state = (statistics.median(r[i] for r in runs) for i in range(3))
        print(f"  {label:18s} {parse:8.1f} {table:8.1f} {state:8.1f}   {runs[0][3]:5d} "
              "director commands")


if __name__ == "__main__":
    main()
