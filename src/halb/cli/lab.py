"""`halb lab`: the seeds' cluster in network namespaces (root) — arguments only; the lab is
halb.lab (cluster, scenarios, runner, report).

    halb lab up [--peers]            build the topology and start every role
    halb lab status                  processes, VIP holders, LVS tables, one GET
    halb lab run SCENARIO|all [--peers | --both] [--keep]
                                     run scenarios under load (brings a lab up when none is,
                                     and down again unless --keep); exit 1 if a check failed
    halb lab report                  write the HTML report of the results
    halb lab down                    remove everything the lab made (also after a crash)
    halb lab list                    the scenarios

--peers: real keepalived (VRRP) and nginx in place of halb's; the L4 director stays halb's.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

from halb.lab import topology

DEFAULT_RESULTS = "lab-results"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="halb lab", description=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default=os.environ.get("HALB_LAB_DIR", topology.DEFAULT_DIR),
                   help="where the lab keeps its state, configs and logs (default %(default)s)")
    p.add_argument("--prefix", default=None, help="namespace name prefix (default hlab-)")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build the lab and start every role")
    up.add_argument("--peers", action="store_true", help="real keepalived and nginx")
    sub.add_parser("down", help="remove everything the lab made")
    sub.add_parser("status", help="what runs, who holds the VIPs")
    sub.add_parser("list", help="the scenarios")
    run = sub.add_parser("run", help="run scenarios under load")
    run.add_argument("scenario", nargs="+", help="a scenario name, or all")
    which = run.add_mutually_exclusive_group()
    which.add_argument("--peers", action="store_true", help="real keepalived and nginx")
    which.add_argument("--both", action="store_true", help="halb, then the peers")
    run.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    run.add_argument("--results", default=DEFAULT_RESULTS, help="default %(default)s")
    run.add_argument("--report", action="store_true", help="write the report afterwards")
    rep = sub.add_parser("report", help="write the HTML report")
    rep.add_argument("--results", default=DEFAULT_RESULTS, help="default %(default)s")
    rep.add_argument("--out", default=None, help="default RESULTS/report.html")
    return p


def main(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    from halb.lab import scenarios

    if a.cmd == "list":
        for name, make in scenarios.SCENARIOS.items():
            sc = make()
            sys.stdout.write(f"{name:<16} {sc.title}  [{sc.seed}]\n")
        return 0
    if a.cmd == "report":
        from halb.lab.report import write_report

        results = pathlib.Path(a.results)
        out = pathlib.Path(a.out) if a.out else results / "report.html"
        write_report(results, out)
        sys.stdout.write(f"report: {out}\n")
        return 0
    if os.geteuid() != 0:
        sys.stderr.write("halb lab: needs root (network namespaces, nftables)\n")
        return 1
    from halb.lab.cluster import Cluster

    cluster = Cluster(a.dir, prefix=a.prefix)
    if a.cmd == "down":
        removed = cluster.down()
        sys.stdout.write(f"removed {len(removed)} things\n" + "".join(
            f"  {r}\n" for r in removed))
        return 0
    if a.cmd == "status":
        sys.stdout.write(cluster.status())
        return 0
    try:
        if a.cmd == "up":
            cluster.up("peers" if a.peers else "halb")
            sys.stdout.write(cluster.status())
            return 0
        return _run(a, cluster)
    except (TimeoutError, RuntimeError) as e:  # the lab is down again (up / run clean up)
        sys.stderr.write(f"halb lab: {e}\n")
        return 1


def _run(a: argparse.Namespace, cluster: object) -> int:
    from halb.lab import runner, scenarios
    from halb.lab.cluster import Cluster

    assert isinstance(cluster, Cluster)
    names = list(scenarios.SCENARIOS) if "all" in a.scenario else a.scenario
    unknown = [n for n in names if n not in scenarios.SCENARIOS]
    if unknown:
        sys.stderr.write(f"halb lab: unknown scenario {', '.join(unknown)} "
                         f"(one of {', '.join(scenarios.SCENARIOS)} or all)\n")
        return 2
    modes = ["halb", "peers"] if a.both else ["peers" if a.peers else "halb"]
    if cluster.is_up() and (len(modes) > 1 or cluster.mode != modes[0]):
        sys.stderr.write(f"halb lab: a lab is up in {cluster.mode} mode; `halb lab down` "
                         "first, or run without --peers/--both to use it\n")
        return 1
    results = pathlib.Path(a.results)
    failed = 0
    for mode in modes:
        ours = not cluster.is_up()
        if ours:
            sys.stderr.write(f"[{mode}] lab up...\n")
            cluster.up(mode)
        try:
            leaving = ours and not (a.keep and mode == modes[-1])
            for i, name in enumerate(names):
                result = runner.run(cluster, scenarios.SCENARIOS[name](), results,
                                    restore_after=not (leaving and i == len(names) - 1))
                failed += not result["passed"]
        finally:
            if leaving:
                cluster.down()
                sys.stderr.write(f"[{mode}] lab down\n")
    if a.report:
        from halb.lab.report import write_report

        write_report(results, results / "report.html")
        sys.stdout.write(f"report: {results / 'report.html'}\n")
    sys.stdout.write(f"{failed} scenario(s) failed\n" if failed else "all scenarios passed\n")
    return 1 if failed else 0
