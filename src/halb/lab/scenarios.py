"""The lab's fault scenarios (issue 8 item 4), each with the seeds' expectation as checks.

A scenario is a steady load (halb.lab.load) through one or two virtual addresses, timed steps
that break and repair the cluster (stop a director, SIGKILL a host, stop nginx, kill a
backend...), and checks over what the clients saw (halb.lab.analysis). Steps are functions of
the Cluster; a step may wait for what it expects (e.g. TCP_CHECK removing a node), and its
label goes on the timeline when it is done. Checks return (what, passed, detail).

The seeds' expectations: 关掉备机, 功能完全不受影响 (backup off: no effect at all); 关掉主机, 虚拟IP
漂移到备机 (master off: the VIP moves to the backup), 主机启动, 主机自动上位 (master back: it takes
over again); 关掉主机nginx, 主机监控到无nginx后, 自动切换 (nginx off on the master: it notices and
switches); 关闭一台Nginx服务器…期间访问无影响, 故障移除 / 故障恢复自动添加 (one nginx server off:
access unaffected, removed on failure, added back on recovery); nginx's passive health hides a
dead backend; ip_hash keeps a client on one backend; dual master: each node backs the other.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from halb.lab import analysis as A
from halb.lab import plan

if TYPE_CHECKING:
    from halb.lab.cluster import Cluster

Check = tuple[str, bool, str]
LVS = f"{plan.VIP}:{plan.PORT}"
VI_1 = f"{plan.VIP1}:{plan.PORT}"
VI_2 = f"{plan.VIP2}:{plan.PORT}"
NGX1 = f"{plan.host('ngx1').addr}:{plan.PORT}"


@dataclass
class Run:
    """What a scenario produced (the input of its checks)."""

    records: list[dict[str, Any]]
    samples: list[tuple[float, dict[str, list[str]]]]
    events: list[tuple[float, str]]  # (monotonic time, label)
    t0: float
    t_end: float
    figures: A.Figures
    rate: float = 40.0

    def event(self, prefix: str) -> float | None:
        return next((t for t, label in self.events if label.startswith(prefix)), None)

    def after(self, t: float | None) -> list[dict[str, Any]]:
        return [r for r in self.records if t is not None and r["t"] >= t]


@dataclass
class Step:
    at: float  # seconds after the load started
    label: str
    action: Callable[[Cluster], object]
    wait: bool = False  # a wait for an outcome: its event is when it was reached


@dataclass
class Scenario:
    name: str
    title: str
    seed: str
    expect: str
    duration: float
    steps: list[Step]
    checks: Callable[[Run], list[Check]]
    targets: tuple[str, ...] = (LVS,)
    path: str = "/"
    rate: float = 40.0
    sources: tuple[str, ...] = plan.CLIENTS
    notes: list[str] = field(default_factory=list)


def _check(what: str, passed: bool, detail: object = "") -> Check:
    return what, bool(passed), str(detail)


def _none_lost(run: Run) -> Check:
    return _check("no request lost (every request got an answer or an error)",
                  run.figures.lost == 0, f"{run.figures.lost} lost")


def _gap(run: Run, bound: float) -> Check:
    f = run.figures
    return _check(f"longest time without a successful response under {bound:g} s",
                  f.longest_gap < bound, f"{f.longest_gap:.2f} s from t={f.gap_at:.1f} s")


def _failed_at_most(run: Run, bound: int) -> Check:
    f = run.figures
    return _check(f"at most {bound} failed requests", f.failed <= bound,
                  f"{f.failed} failed {f.errors}")


# -- steps --------------------------------------------------------------------------------------


def stop_host(host: str, sig: int = signal.SIGTERM) -> Callable[[Cluster], object]:
    """Stop a host's services (keepalived first, as `service keepalived stop`)."""
    def act(c: Cluster) -> None:
        for role in sorted(c.roles(host), key=lambda r: "keepalived" not in r):
            c.stop(role, sig)
    return act


def start_host(host: str) -> Callable[[Cluster], object]:
    def act(c: Cluster) -> None:
        for role in sorted(c.roles(host), key=lambda r: "keepalived" in r):
            c.start(role)
    return act


def wait_lvs(present: bool, server: str = NGX1, timeout: float = 15.0
             ) -> Callable[[Cluster], object]:
    """Wait until both directors' tables have (or lack) `server`."""
    from halb.lab.cluster import wait_for

    def act(c: Cluster) -> None:
        wait_for(lambda: all((server in c.lvs(d.name)) == present for d in plan.DIRECTORS),
                 timeout, step=0.25, why=f"{server} {'added' if present else 'removed'}")
    return act


def wait_holder(vip: str, host: str, timeout: float = 20.0) -> Callable[[Cluster], object]:
    """Wait until `host` alone holds `vip` (the run goes on past its load if need be: a
    master's return is judged by whether it happens, not by the clock)."""
    from halb.lab.cluster import wait_for

    def act(c: Cluster) -> None:
        wait_for(lambda: c.holders(vip) == [host], timeout, step=0.05,
                 why=f"{vip} back on {host}")
    return act


def _back(run: Run, vip: str, host: str) -> Check:
    t_back = run.event(f"{host} holds")
    return _check(f"{vip} is back on {host} after it returned", t_back is not None,
                  A.transitions(run.samples, vip, run.t0))


# -- the scenarios ------------------------------------------------------------------------------


def backup_stop(at: float = 2.0, back: float = 5.0, duration: float = 8.0) -> Scenario:
    def checks(run: Run) -> list[Check]:
        f = run.figures
        held = A.held_by(run.samples, plan.VIP)
        return [_check("no failed request (功能完全不受影响)", f.failed == 0, f.errors),
                _none_lost(run),
                _check("the VIP never left dir1", held == {"dir1"}, sorted(held))]
    return Scenario("backup_stop", "stop the backup director", "seed 000 测试 1",
                    "关掉备机, 功能完全不受影响 — backup off: no effect at all", duration,
                    [Step(at, "stop dir2 (backup)", stop_host("dir2")),
                     Step(back, "start dir2", start_host("dir2"))], checks)


def _failover_checks(run: Run, fault: str, back: str, gap: float, failed: int) -> list[Check]:
    t_fault, t_back = run.event(fault), run.event(back)
    moved = A.held_by(run.samples, plan.VIP, since=t_fault or 0, until=t_back or 0)
    served = {r.get("holder") for r in run.records
              if A.ok(r["status"]) and t_fault and t_back and t_fault < r["t"] < t_back}
    return [_check("the VIP moved to dir2 (虚拟IP漂移到备机)", "dir2" in moved, sorted(moved)),
            _check("dir2 served requests while dir1 was away", "dir2" in served, sorted(
                str(s) for s in served)),
            _back(run, plan.VIP, "dir1"),
            _none_lost(run), _gap(run, gap), _failed_at_most(run, failed)]


def master_stop(at: float = 3.0, back: float = 7.0, duration: float = 14.0) -> Scenario:
    def checks(run: Run) -> list[Check]:  # keepalived's priority 0 advert: a moment's gap
        return _failover_checks(run, "stop dir1", "start dir1", 3.0, int(run.rate * 1.0))
    return Scenario("master_stop", "stop the master director (service keepalived stop)",
                    "seed 000 测试 2, seed 002 4-14 测试一, seed 003 §6",
                    "关掉主机, 虚拟IP漂移到备机; 主机启动, 主机自动上位 — the VIP moves to the "
                    "backup and back when the master returns", duration,
                    [Step(at, "stop dir1 (master)", stop_host("dir1")),
                     Step(back, "start dir1", start_host("dir1")),
                     Step(back, "dir1 holds the VIP again (主机自动上位)",
                          wait_holder(plan.VIP, "dir1"), wait=True)], checks)


def master_kill(at: float = 3.0, back: float = 9.0, duration: float = 17.0) -> Scenario:
    def checks(run: Run) -> list[Check]:
        # the backup waits 3 adverts + skew (3.6 s) before it takes over
        return _failover_checks(run, "SIGKILL dir1", "dir1 boots", 6.0, int(run.rate * 5.0))
    return Scenario("master_kill", "SIGKILL the master director (the host dies)",
                    "seed 000 停止 (kill -9) / 测试 2",
                    "kill -9 + cable pulled: the backup takes the VIP after 3 missed adverts; "
                    "the master takes it back when it boots", duration,
                    [Step(at, "SIGKILL dir1 (host off)", lambda c: c.crash("dir1")),
                     Step(back, "dir1 boots", lambda c: c.revive("dir1")),
                     Step(back, "dir1 holds the VIP again", wait_holder(plan.VIP, "dir1"),
                          wait=True)], checks)


def _break_nginx(c: Cluster) -> None:
    (c.path("ngx1") / "broken").write_text("the scenario broke nginx here\n")
    c.stop("ngx1.nginx")


def _repair_nginx(c: Cluster) -> None:
    (c.path("ngx1") / "broken").unlink(missing_ok=True)
    c.start("ngx1.nginx")
    c.start("ngx1.keepalived")


def nginx_check(at: float = 3.0, back: float = 11.0, duration: float = 19.0) -> Scenario:
    def checks(run: Run) -> list[Check]:
        t_fault, t_back = run.event("stop nginx"), run.event("repair")
        moved = A.held_by(run.samples, plan.VIP1, since=t_fault or 0, until=t_back or 0)
        t_moved = next((t for t, held in run.samples if t_fault and t >= t_fault
                        and held.get(plan.VIP1) == ["ngx2"]), None)
        tail = [r for r in run.records if t_moved and t_back and t_moved + 1.0 < r["t"] < t_back]
        return [_check("VI_1 moved to ngx2 once the check script gave up (自动切换)",
                       "ngx2" in moved, sorted(moved)),
                _check("requests succeed again before the repair",
                       bool(tail) and all(A.ok(r["status"]) for r in tail),
                       f"{sum(1 for r in tail if not A.ok(r['status']))} failed of {len(tail)}"),
                _back(run, plan.VIP1, "ngx1"),
                _none_lost(run), _gap(run, 10.0)]
    return Scenario("nginx_check", "stop nginx on the master node (check_nginx vrrp_script)",
                    "seed 000 测试 3, seed 001, seed 002 3-9",
                    "关掉主机nginx, 主机监控到无nginx后, 自动切换 — the script cannot restart "
                    "nginx, stops keepalived, and the backup takes the VIP", duration,
                    [Step(at, "stop nginx on ngx1 (it cannot start again)", _break_nginx),
                     Step(back, "repair ngx1 (nginx and keepalived started)", _repair_nginx),
                     Step(back, "ngx1 holds VI_1 again (priority 100+10)",
                          wait_holder(plan.VIP1, "ngx1"), wait=True)],
                    checks, targets=(VI_1,),
                    notes=["chapter 3's VIP 198.18.0.101 on the nginx nodes"])


def nginx_node_stop(at: float = 3.0, back: float = 11.0, duration: float = 17.0) -> Scenario:
    def checks(run: Run) -> list[Check]:
        t_gone, t_back = run.event("TCP_CHECK removed"), run.event("TCP_CHECK re-added")
        t_stop, t_start = run.event("stop ngx1"), run.event("start ngx1")
        settled = [r for r in run.records if t_gone and t_gone + 0.5 < r["t"] < (
            t_start or float("inf"))]
        after = {str(r.get("nginx")) for r in run.after(t_back) if A.ok(r["status"])}
        return [_check("TCP_CHECK removed ngx1 from both directors (故障移除)", t_gone is not None,
                       f"{(t_gone or 0) - (t_stop or 0):.1f} s after the stop"),
                _check("no failure once it was removed (期间访问无影响)",
                       all(A.ok(r["status"]) for r in settled),
                       f"{sum(1 for r in settled if not A.ok(r['status']))} of {len(settled)}"),
                _check("ngx1 re-added on return (故障恢复自动添加)", t_back is not None,
                       f"{(t_back or 0) - (t_start or 0):.1f} s after the start"),
                _check("ngx1 serves again after it was re-added", "ngx1" in after,
                       sorted(after)),
                _none_lost(run)]
    return Scenario("nginx_node_stop", "stop one nginx node (TCP_CHECK)",
                    "seed 002 4-14 测试二, seed 003 §4",
                    "关闭一台Nginx服务器…期间访问无影响; 故障移除, 故障恢复自动添加", duration,
                    [Step(at, "stop ngx1", stop_host("ngx1")),
                     Step(at, "TCP_CHECK removed ngx1", wait_lvs(False), wait=True),
                     Step(back, "start ngx1", start_host("ngx1")),
                     Step(back, "TCP_CHECK re-added ngx1", wait_lvs(True), wait=True)],
                    checks)


def backend_kill(at: float = 3.0, back: float = 8.0, duration: float = 11.0) -> Scenario:
    def checks(run: Run) -> list[Check]:
        f = run.figures
        t_kill, t_back = run.event("SIGKILL web1"), run.event("start web1")
        during = [r for r in run.records if t_kill and t_back
                  and t_kill + 0.2 < r["t"] < t_back]
        return [_check("no failed GET: passive health and retry hide the dead backend",
                       f.failed == 0, f.errors),
                _check("web1 served nothing while it was dead",
                       not any(r.get("backend") == "web1" for r in during), ""),
                _check("the other backends served", {"web2", "web3"} <= set(f.backends),
                       f.backends),
                _none_lost(run)]
    return Scenario("backend_kill", "kill a backend (nginx passive health, retry)",
                    "seed 002 2-18, seed 004",
                    "nginx removes a dead backend and retries the request on another "
                    "(max_fails / fail_timeout, proxy_next_upstream)", duration,
                    [Step(at, "SIGKILL web1", lambda c: c.stop("web1.backend", signal.SIGKILL)),
                     Step(back, "start web1", lambda c: c.start("web1.backend"))], checks)


def ip_hash(duration: float = 6.0) -> Scenario:
    def checks(run: Run) -> list[Check]:
        per = A.sticky(run.records)
        return [_check("every client stays on one backend",
                       bool(per) and all(len(b) == 1 for b in per.values()),
                       {k: sorted(v) for k, v in per.items()}),
                _check("both nginx nodes served (the same choice on each)",
                       len(run.figures.nginx) == 2, run.figures.nginx),
                _check("no failed request", run.figures.failed == 0, run.figures.errors),
                _none_lost(run)]
    return Scenario("ip_hash", "ip_hash keeps each client on one backend", "seed 002 2-22",
                    "ip_hash: a client's address picks its backend (IPv4: its first three "
                    "octets, so the lab's clients, all in 198.18.0.x, share one)", duration,
                    [], checks, path="/sticky/")


def dual_master(at: float = 3.0, back: float = 8.0, duration: float = 13.0) -> Scenario:
    def checks(run: Run) -> list[Check]:
        t_stop, t_back = run.event("stop keepalived"), run.event("start keepalived")
        moved = A.held_by(run.samples, plan.VIP1, since=(t_stop or 0) + 0.01,
                          until=t_back or 0)
        vi2 = A.held_by(run.samples, plan.VIP2)
        return [_check("VI_1 moved to ngx2 (www.ha.com now on the other node)", "ngx2" in moved,
                       sorted(moved)),
                _check("VI_2 stayed on ngx2", vi2 == {"ngx2"}, sorted(vi2)),
                _back(run, plan.VIP1, "ngx1"),
                _none_lost(run), _gap(run, 3.0), _failed_at_most(run, int(run.rate * 1.0))]
    return Scenario("dual_master", "dual master: two VIPs, each node backs the other",
                    "seed 002 3-13", "关闭136上的keepalived: 192.168.156.161 (VI_1) moves "
                    "to 135, which already holds .162 (VI_2)", duration,
                    [Step(at, "stop keepalived on ngx1", lambda c: c.stop("ngx1.keepalived")),
                     Step(back, "start keepalived on ngx1",
                          lambda c: c.start("ngx1.keepalived")),
                     Step(back, "ngx1 holds VI_1 again", wait_holder(plan.VIP1, "ngx1"),
                          wait=True)],
                    checks, targets=(VI_1, VI_2))


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "backup_stop": backup_stop, "master_stop": master_stop, "master_kill": master_kill,
    "nginx_check": nginx_check, "nginx_node_stop": nginx_node_stop,
    "backend_kill": backend_kill, "ip_hash": ip_hash, "dual_master": dual_master,
}
SMOKE = "master_stop"


def smoke() -> Scenario:
    """The smoke test's failover: master_stop, shorter (the master returns after 2 s; it takes
    it back after keepalived's start and 3 adverts' wait as a backup, ~5 s)."""
    return master_stop(at=2.0, back=4.0, duration=8.0)
