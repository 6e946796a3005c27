"""halb.lab.analysis and halb.lab.plan (pure): attribution, figures, gaps, series, configs."""

from __future__ import annotations

from halb.lab import analysis as A
from halb.lab import plan


def rec(t: float, status: object, lat: float = 0.01, **kw: object) -> dict[str, object]:
    return {"t": t, "lat": lat, "status": status, "target": f"{plan.VIP}:80", **kw}


def test_attribute_holder_at_request_start_and_nginx_node() -> None:
    samples = [(0.0, {plan.VIP: ["dir1"]}), (5.0, {plan.VIP: []}), (6.0, {plan.VIP: ["dir2"]})]
    rs = [rec(1.0, 200, peer="198.18.0.11"), rec(5.5, "timeout"), rec(7.0, 200,
                                                                     peer="198.18.0.12")]
    A.attribute(rs, samples)
    assert [r["holder"] for r in rs] == ["dir1", None, "dir2"]
    assert [r["nginx"] for r in rs] == ["ngx1", None, "ngx2"]


def test_figures_count_failures_losses_and_the_longest_gap() -> None:
    rs = [rec(0.0, 200), rec(1.0, 200), rec(2.0, "refused"), rec(3.0, 502), rec(4.5, 200)]
    f = A.figures(rs, scheduled=6, t0=0.0, t_end=6.0)
    assert (f.requests, f.ok, f.failed, f.lost) == (5, 3, 2, 1)
    assert f.errors == {"refused": 1, "502": 1}
    assert abs(f.longest_gap - 3.5) < 1e-9 and abs(f.gap_at - 1.01) < 1e-9


def test_gap_counts_the_start_and_end_of_the_window() -> None:
    assert A.longest_gap([], 0.0, 4.0) == (4.0, 0.0)
    gap, at = A.longest_gap([rec(0.5, 200, lat=0.0)], 0.0, 4.0)
    assert (gap, at) == (3.5, 0.5)


def test_series_bins_by_completion_time() -> None:
    rs = [rec(0.1, 200), rec(0.2, 200), rec(0.7, "timeout", lat=2.0)]
    s = A.series(rs, 0.0, 3.0, step=1.0)
    assert s == [(0.0, 2.0, 0.0), (1.0, 0.0, 0.0), (2.0, 0.0, 1.0)]


def test_transitions_and_holders() -> None:
    samples = [(10.0, {plan.VIP: ["dir1"]}), (11.0, {plan.VIP: ["dir1"]}),
               (12.0, {plan.VIP: []}), (13.0, {plan.VIP: ["dir2"]})]
    assert A.transitions(samples, plan.VIP, 10.0) == [(0.0, "dir1"), (2.0, "-"), (3.0, "dir2")]
    assert A.held_by(samples, plan.VIP, since=11.5) == {"-", "dir2"}
    assert A.last_holder(samples, plan.VIP) == "dir2"


def test_sticky_groups_backends_per_client() -> None:
    rs = [rec(0, 200, src="a", backend="web1"), rec(1, 200, src="a", backend="web1"),
          rec(2, 200, src="b", backend="web2"), rec(3, 500, src="b", backend="web3")]
    assert A.sticky(rs) == {"a": {"web1"}, "b": {"web2"}}


def test_plan_configs_follow_the_seeds() -> None:
    d1, d2 = plan.director_conf("dir1"), plan.director_conf("dir2")
    assert "state MASTER" in d1 and "priority 100" in d1 and "router_id LVS_136" in d1
    assert "state BACKUP" in d2 and "priority 50" in d2
    for conf in (d1, d2):
        assert f"virtual_server {plan.VIP} 80" in conf and "lb_kind DR" in conf
        assert conf.count("TCP_CHECK") == 2 and "persistence_timeout 5" in conf
    assert "virtual_server" not in plan.director_vrrp("dir1")
    k1 = plan.nginx_keepalived_conf("ngx1", "/x/check.sh")
    assert 'script "/x/check.sh"' in k1 and k1.count("track_script") == 1
    assert plan.VIP1 in k1 and plan.VIP2 in k1
    n = plan.nginx_conf("ngx1")
    assert n.count("server 198.18.0.2") == 6 and "ip_hash;" in n
    script = plan.check_nginx_script("/x/start-nginx.sh", "/x/ka.pid")
    assert "/x/start-nginx.sh" in script and "kill `cat /x/ka.pid`" in script
    start = plan.start_nginx_script(["/usr/sbin/nginx", "-g", "daemon on;"], "/x/broken")
    assert "exec /usr/sbin/nginx -g 'daemon on;'" in start and "/x/broken" in start
    assert plan.node_of("198.18.0.11:4321") == "ngx1" and plan.node_of("10.0.0.1") is None
