# ruff: noqa: RUF002 - the seeds are quoted in their own script (fullwidth commas)
"""The seeds' keepalived.conf files, run as they are, elect and fail over as the seeds' test
lists say: "1. 关掉备机，功能完全不受影响。 2. 关掉主机，虚拟IP漂移到备机，备机开始工作。" (seed 000;
seed 002 4-14: "关闭LVS master节点，然后再启动主节点LVS。期间访问...无影响").

Each seed pair (tests/unit/config/keepalived_seeds/, addresses already mapped from 192.168.x.y
to 198.18.x.y) runs on a LAN of its own: the seed's subnet, the seed's interface name (ens33,
eno16777736), node addresses as the seed's host names suggest (keep_136 -> .136, LVS_152 ->
.152, mcast_src_ip .224.206). Where a seed gives only one side (001's two files, each a
single node), the other side is that file with `state` and `priority` swapped to the peer's
role. The vrrp_script paths (/etc/keepalived/check_nginx*.sh) are mapped to a script that
succeeds: nginx is running, as in the seeds' setups. Every seed pair runs twice: halb on both
nodes, and halb with keepalived 2.2.7 on the other node (the direction alternates by seed).

The life cycle, the VIPs' holders sampled every 50 ms:
  election   each VIP on the node whose instance is MASTER by configuration;
  master off the seed's MASTER host is switched off (SIGKILL, cable pulled): every VIP on the
             other node within Master_Down_Interval + slack;
  return     the host boots again and its daemon starts: the VIPs it is MASTER for come back
             (every seed config preempts), the others never move;
  backup off the other host is switched off: the first keeps its VIPs without a gap and takes
             the rest.
Never two online nodes holding a VIP longer than one advert interval.

All pairs run at once (one thread and one LAN each, ~30 s in all instead of minutes); each
pair is then reported by its own test.
"""

from __future__ import annotations

import ipaddress
import os
import pathlib
import re
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from vrrp_lab import STARTING, TIMINGS, Cluster, mdi

from halb.config.keepalived import load_text
from halb.testing.netns import Lan

SEEDS = pathlib.Path(__file__).resolve().parents[2] / "unit" / "config" / "keepalived_seeds"
SLACK = 1.5  # all pairs run at once on two shared cores


def _swap(state: str, priority: int, src: str | None = None) -> Callable[[str], str]:
    """The peer of a one-sided seed: the same file with the other role."""

    def edit(text: str) -> str:
        text = re.sub(r"(?m)^(\s*state\s+)\S+", rf"\g<1>{state}", text)
        text = re.sub(r"(?m)^(\s*priority\s+)\d+", rf"\g<1>{priority}", text)
        if src is not None:
            text = re.sub(r"(?m)^(\s*mcast_src_ip\s+)\S+", rf"\g<1>{src}", text)
        return text

    return edit


@dataclass(frozen=True)
class Seed:
    name: str
    files: tuple[str, str]  # n1 (the seed's MASTER side), n2
    subnet: str
    addresses: tuple[str, str]
    client: str
    ifname: str
    owners: dict[str, str]  # VIP -> the node holding it while both run
    edit2: Callable[[str], str] | None = None  # derive n2's file from files[1]


PAIRS = [
    Seed("002-3-4+3-7", ("002_3-4_master.conf", "002_3-7_backup.conf"), "198.18.156.0/24",
         ("198.18.156.136", "198.18.156.135"), "198.18.156.10", "ens33",
         {"198.18.156.161": "n1"}),
    Seed("002-3-4+3-9-track-script", ("002_3-4_master.conf", "002_3-9_track_script.conf"),
         "198.18.156.0/24", ("198.18.156.136", "198.18.156.135"), "198.18.156.10", "ens33",
         {"198.18.156.161": "n1"}),
    Seed("002-3-13-dual-master", ("002_3-13_dual_136.conf", "002_3-13_dual_135.conf"),
         "198.18.156.0/24", ("198.18.156.136", "198.18.156.135"), "198.18.156.10", "ens33",
         {"198.18.156.161": "n1", "198.18.156.162": "n2"}),
    Seed("002-4-13+4-14-lvs", ("002_4-13_lvs_master.conf", "002_4-14_lvs_backup.conf"),
         "198.18.156.0/24", ("198.18.156.136", "198.18.156.152"), "198.18.156.10", "ens33",
         {"198.18.156.150": "n1"}),
    Seed("003-lvs", ("003_lvs_master.conf", "003_lvs_backup.conf"), "198.18.11.0/24",
         ("198.18.11.101", "198.18.11.102"), "198.18.11.10", "eno16777736",
         {"198.18.11.200": "n1"}),
    Seed("001-heredoc", ("001_heredoc.conf", "001_heredoc.conf"), "198.18.31.0/24",
         ("198.18.31.101", "198.18.31.102"), "198.18.31.10", "ens33",
         {"198.18.31.240": "n1"}, _swap("BACKUP", 100)),
    Seed("001-sections-strict", ("001_sections.conf", "001_sections.conf"), "198.18.224.0/24",
         ("198.18.224.205", "198.18.224.206"), "198.18.224.10", "ens33",
         {"198.18.224.208": "n1"}, None),
]
# 001_sections.conf is the BACKUP (mcast_src_ip .206): n1 is derived from it as the MASTER
EDIT1: dict[str, Callable[[str], str]] = {
    "001-sections-strict": _swap("MASTER", 101, "198.18.224.205")}


def impls(index: int) -> list[tuple[str, str]]:
    return [("halb", "halb"), ("halb", "keepalived") if index % 2 == 0 else
            ("keepalived", "halb")]


CASES = [(seed, pair) for i, seed in enumerate(PAIRS) for pair in impls(i)]


def case_id(seed: Seed, pair: tuple[str, str]) -> str:
    return f"{seed.name}[{pair[0]}+{pair[1]}]"


@dataclass
class Outcome:
    error: str | None = None
    steps: list[str] = field(default_factory=list)


class SeedRun:
    """One seed pair with one pairing of implementations, on its own LAN."""

    def __init__(self, seed: Seed, pair: tuple[str, str], index: int, tmp: pathlib.Path,
                 keepalived: str | None) -> None:
        self.seed, self.pair = seed, pair
        self.tmp = tmp
        self.keepalived = keepalived
        self.prefix = f"hs{os.getpid() % 1000}x{index}"
        self.outcome = Outcome()
        self.samples: list[tuple[float, dict[str, tuple[str, ...]]]] = []
        self._stop = threading.Event()

    # -- the configuration --------------------------------------------------------------------

    def conf(self, node: str) -> str:
        i = 0 if node == "n1" else 1
        text = (SEEDS / self.seed.files[i]).read_text()
        edit = EDIT1.get(self.seed.name) if node == "n1" else self.seed.edit2
        if edit is not None:
            text = edit(text)
        ok = self.tmp / "nginx_running.sh"
        return re.sub(r'(script\s+)"[^"]*"', rf'\g<1>"{ok}"', text)

    def settings(self, node: str) -> dict[str, tuple[int, float]]:
        """VIP -> (priority, advert_int) of the node's instance holding it (halb's parser)."""
        cfg = load_text(self.conf(node), str(self.tmp / f"{node}.check.conf"),
                        config_id="seed").config
        return {str(v.ip): (i.priority + sum(max(0, t.weight) for t in i.track_scripts),
                            i.advert_int) for i in cfg.vrrp_instances for v in i.vips}

    # -- observing ----------------------------------------------------------------------------

    def holders(self, lan: Lan) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {v: [] for v in self.seed.owners}
        for n in lan.nodes:
            if not n.online:
                continue
            present = {str(a) for a in lan.addresses(n)}
            for vip in out:
                if vip in present:
                    out[vip].append(n.name)
        return {v: tuple(h) for v, h in out.items()}

    def wait(self, lan: Lan, want: dict[str, str], timeout: float, what: str,
             since: float | None = None) -> float:
        start = time.monotonic() if since is None else since
        end = time.monotonic() + timeout
        while True:
            now = self.holders(lan)
            if all(now[v] == (n,) for v, n in want.items()):
                took = time.monotonic() - start
                self.outcome.steps.append(f"{what}: {took * 1000:.0f} ms")
                return took
            if time.monotonic() > end:
                raise AssertionError(f"{what}: holders {now}, want {want} (after "
                                     f"{timeout:.1f}s)")
            time.sleep(0.02)

    def steady(self, lan: Lan, want: dict[str, str], seconds: float, what: str) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = self.holders(lan)
            for vip, node in want.items():
                assert now[vip] == (node,), f"{what}: {vip} held by {now[vip]}, not {node}"
            time.sleep(0.05)
        self.outcome.steps.append(f"{what}: steady for {seconds:.1f}s")

    def _sampler(self, lan: Lan) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.holders(lan)))
            self._stop.wait(0.05)

    def overlap(self, vip: str) -> float:
        longest, since = 0.0, None
        for t, h in self.samples:
            if len(h[vip]) > 1:
                since = t if since is None else since
                longest = max(longest, t - since)
            else:
                since = None
        return longest

    # -- the life cycle -----------------------------------------------------------------------

    def run(self) -> None:
        try:
            with Lan(2, self.seed.subnet, self.seed.ifname, self.prefix,
                     self.seed.addresses, self.seed.client) as lan:
                cluster = Cluster(lan, self.tmp)
                cluster.keepalived = self.keepalived
                sampler = threading.Thread(target=self._sampler, args=(lan,), daemon=True)
                sampler.start()
                try:
                    self.cycle(lan, cluster)
                finally:
                    self._stop.set()
                    sampler.join(2)
                    self.logs = {n: cluster.log(n) for n in ("n1", "n2")}
                    cluster.close()
        except Exception as e:
            tails = "".join(f"\n== {n}\n{log[-2500:]}" for n, log in
                            getattr(self, "logs", {}).items())
            self.outcome.error = (f"{type(e).__name__}: {e}\nsteps: {self.outcome.steps}"
                                  f"{tails}\n{traceback.format_exc(limit=3)}")

    def cycle(self, lan: Lan, cluster: Cluster) -> None:
        s = self.seed
        ok = self.tmp / "nginx_running.sh"
        ok.write_text("#!/bin/sh\nexit 0\n")
        ok.chmod(0o755)
        prio = {n: self.settings(n) for n in ("n1", "n2")}
        confs = {n: self.conf(n) for n in ("n1", "n2")}
        impl = dict(zip(("n1", "n2"), self.pair, strict=True))

        def mdi_of(node: str, vips: list[str]) -> float:
            return max(mdi(2, *prio[node][v]) for v in vips)

        for node in ("n1", "n2"):
            cluster.start(node, impl[node], confs[node])
        for node in ("n1", "n2"):
            cluster.wait_ready(node, STARTING)
        vips = list(s.owners)
        self.wait(lan, s.owners, max(mdi_of(n, vips) for n in ("n1", "n2")) + SLACK,
                  "election")

        # the MASTER host is switched off: everything on n2
        t = cluster.crash("n1")
        bound = mdi_of("n2", vips) + SLACK
        took = self.wait(lan, dict.fromkeys(vips, "n2"), bound + 2, "master off", since=t)
        TIMINGS.append((f"seed {case_id(s, self.pair)}: master off -> VIPs on the backup",
                        took, bound))
        assert took <= bound, f"master off: {took:.2f}s > {bound:.2f}s"
        mine = [v for v, n in s.owners.items() if n == "n1"]
        theirs = [v for v, n in s.owners.items() if n == "n2"]

        # it comes back: its VIPs return (preemption), the others stay
        lan.revive("n1")
        offset = len(cluster.log("n1"))
        cluster.start("n1", impl["n1"], confs["n1"])
        started = cluster.wait_ready("n1", STARTING, offset)
        bound = mdi_of("n1", mine) + SLACK
        took = self.wait(lan, s.owners, bound + 2, "master back", since=started)
        TIMINGS.append((f"seed {case_id(s, self.pair)}: master back -> preempts", took, bound))
        assert took <= bound, f"master back: {took:.2f}s > {bound:.2f}s"
        for vip in theirs:
            assert all(h[vip] == ("n2",) for ts, h in self.samples if ts >= t), (
                f"{vip} (n2's) moved while n1 was off or returning")

        # the backup host is switched off: n1 keeps its VIPs and takes the rest
        t = cluster.crash("n2")
        if theirs:
            self.wait(lan, dict.fromkeys(vips, "n1"), mdi_of("n1", theirs) + SLACK + 2,
                      "backup off", since=t)
        else:
            self.steady(lan, s.owners, 1.0, "backup off")
        for vip in mine:
            assert all(h[vip] == ("n1",) for ts, h in self.samples if ts >= t), (
                f"{vip} left n1 when the backup went off")
        for vip in vips:
            adv = max(p[vip][1] for p in prio.values())
            assert self.overlap(vip) <= adv, f"{vip}: two holders for {self.overlap(vip):.2f}s"


@pytest.fixture(scope="module")
def seed_outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    keepalived = shutil.which("keepalived") or (
        "/usr/sbin/keepalived" if os.access("/usr/sbin/keepalived", os.X_OK) else None)
    runs = []
    for i, (seed, pair) in enumerate(CASES):
        if "keepalived" in pair and keepalived is None:
            continue
        tmp = tmp_path_factory.mktemp(f"seed{i}")
        runs.append((case_id(seed, pair), SeedRun(seed, pair, i, tmp, keepalived)))
    threads = [threading.Thread(target=r.run, daemon=True) for _, r in runs]
    for th in threads:  # staggered: the daemons' starts do not all compete for the CPU
        th.start()
        time.sleep(0.4)
    for th in threads:
        th.join(240)
    yield {name: r.outcome for name, r in runs}


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize(("seed", "pair"), CASES, ids=[case_id(*c) for c in CASES])
def test_seed_pair(root: None, request: pytest.FixtureRequest, seed: Seed,
                   pair: tuple[str, str]) -> None:
    if "keepalived" in pair:
        request.getfixturevalue("keepalived_binary")
    outcome = request.getfixturevalue("seed_outcomes")[case_id(seed, pair)]
    assert outcome.error is None, outcome.error
    assert len(outcome.steps) == 4, outcome.steps


def test_every_seed_vrrp_config_is_in_a_pair() -> None:
    """Every seed file with a vrrp_instance takes part in some pair (the fragment 3-9 has
    none: it is a piece to paste into the others)."""
    used = {f for s in PAIRS for f in s.files}
    with_instances = {p.name for p in SEEDS.glob("*.conf")
                      if load_text(p.read_text(), str(p), config_id="x").config.vrrp_instances}
    assert with_instances == used
    for s in PAIRS:
        for vip in s.owners:
            assert ipaddress.ip_address(vip) in ipaddress.ip_network(s.subnet)
