"""Balancing through the proxy, side by side: the same requests, one after the other, to nginx
and halb proxying to the same backends must be answered by the same backends in the same order,
with the same $upstream_addr / $upstream_status in the access log (which also shows the peers
that refused connections).

Round robin with weights, backup servers used only when the primaries are down, max_fails /
fail_timeout passive health against a backend that refuses connections, "no live upstreams"
(502 without trying anything), single-server groups that are never marked down, `down` servers,
and the hash / ip_hash / least_conn methods."""

from __future__ import annotations

import time

import pytest
from harness import Case, Pair, access_lines, compare, req, same_access_logs

pytestmark = pytest.mark.peer

BACKENDS = ["b1", "b2", "b3"]
DOWN = ("d1", "d2")

CONFIG = r"""
    default_type text/plain;
    proxy_bind %ADDR%;
    log_format up '$request_uri|$status|$upstream_addr|$upstream_status|'
                  '$upstream_response_time|$upstream_connect_time|$upstream_header_time';
    upstream rr { server %B_b1% weight=3; server %B_b2%; server %B_b3%; }
    upstream rr-even { server %B_b1%; server %B_b2%; }
    upstream withdown { server %B_b1%; server %B_b2% down; server %B_b3%; }
    upstream backup { server %B_b1%; server %B_b2% backup; }
    upstream backup-used { server %B_d1%; server %B_b2% backup; server %B_b3% backup; }
    upstream fails { server %B_d1% max_fails=2 fail_timeout=1s; server %B_b1%; }
    upstream fails0 { server %B_d1% max_fails=0; server %B_b1%; }
    upstream dead { server %B_d1%; server %B_d2%; }
    upstream dead-recover { server %B_d1% fail_timeout=1s; server %B_d2% fail_timeout=1s; }
    upstream single { server %B_d1% max_fails=1 fail_timeout=30s; }
    upstream single-ok { server %B_b1% max_fails=1; }
    upstream weighted-fail { server %B_d1% weight=5; server %B_b1%; server %B_b2%; }
    upstream hashed { hash $arg_k; server %B_b1%; server %B_b2%; server %B_b3%; }
    upstream hashed-c { hash $arg_k consistent; server %B_b1%; server %B_b2%; server %B_b3%; }
    upstream iphash { ip_hash; server %B_b1%; server %B_b2%; server %B_b3%; }
    upstream lconn { least_conn; server %B_b1%; server %B_b2%; server %B_b3%; }
    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        access_log %PREFIX%/up.log up;
        location ~ ^/(?<group>[a-z0-9-]+)/ {
            proxy_pass http://$group;
        }
    }
"""


def run(pair: Pair, group: str, n: int, tag: str, path: str = "name",
        pause: float = 0.0) -> list[str]:
    """n requests, one after the other; both must answer alike. Returns nginx's backends."""
    seen = []
    for i in range(n):
        case = Case(f"{tag}-{i}", req(f"/{group}/{path}?m={tag}-{i}&k={i % 5}"))
        got = compare(pair, case)
        last = got["nginx"].last
        seen.append((last.header("x-backend") if last else None) or "-")
        if pause:
            time.sleep(pause)
    return seen


def same_logs(pair: Pair, tag: str, n: int) -> list[str]:
    """nginx's log lines of a scenario (halb's are compared at the end, in one wait)."""
    return access_lines(pair["nginx"], f"m={tag}-", "up.log", want=n)


def test_round_robin_weights(pair: Pair) -> None:
    assert run(pair, "rr", 10, "rr") == ["b1", "b2", "b1", "b3", "b1"] * 2
    same_logs(pair, "rr", 10)


def test_round_robin_even(pair: Pair) -> None:
    assert run(pair, "rr-even", 4, "even") == ["b1", "b2", "b1", "b2"]


def test_down_server_skipped(pair: Pair) -> None:
    assert "b2" not in run(pair, "withdown", 4, "down")


def test_backup_unused_while_primary_up(pair: Pair) -> None:
    assert run(pair, "backup", 3, "bk") == ["b1"] * 3


def test_backup_used_when_primary_refuses(pair: Pair) -> None:
    run(pair, "backup-used", 4, "bku")
    logs = same_logs(pair, "bku", 4)
    assert "," in logs[0]  # the primary was tried first


def test_fail_timeout_recovery(pair: Pair) -> None:
    """max_fails=2: d1 is skipped once it failed twice, and tried again after fail_timeout;
    a group whose every peer failed answers 502 without trying ("no live upstreams") until
    fail_timeout has passed. Both scenarios share one wait."""
    run(pair, "fails", 4, "mf")
    run(pair, "fails", 2, "mf2")
    run(pair, "dead-recover", 2, "dr")
    time.sleep(2.1)  # fail_timeout 1s in whole seconds (both count as nginx's ngx_time())
    run(pair, "fails", 3, "mf3")
    run(pair, "dead-recover", 2, "dr2")
    assert same_logs(pair, "dr", 2)[1].split("|")[2] == "dead-recover"
    assert "," in same_logs(pair, "dr2", 2)[0]


def test_max_fails_zero_never_down(pair: Pair) -> None:
    run(pair, "fails0", 4, "mf0")
    logs = same_logs(pair, "mf0", 4)
    assert sum("," in ln for ln in logs) >= 2  # d1 keeps being tried


def test_no_live_upstreams(pair: Pair) -> None:
    run(pair, "dead", 3, "dead")
    logs = same_logs(pair, "dead", 3)
    assert logs[-1].split("|")[2] == "dead"  # nothing tried: the group's name


def test_single_server_never_marked_down(pair: Pair) -> None:
    run(pair, "single", 3, "single")
    logs = same_logs(pair, "single", 3)
    assert all(ln.split("|")[2] != "single" for ln in logs)


def test_single_server_ok(pair: Pair) -> None:
    assert run(pair, "single-ok", 3, "sok") == ["b1"] * 3


def test_weighted_with_failing_peer(pair: Pair) -> None:
    run(pair, "weighted-fail", 8, "wf")
    same_logs(pair, "wf", 8)


def test_hash(pair: Pair) -> None:
    run(pair, "hashed", 10, "hash")


def test_hash_consistent(pair: Pair) -> None:
    run(pair, "hashed-c", 10, "hashc")


def test_ip_hash(pair: Pair) -> None:
    assert len(set(run(pair, "iphash", 4, "iph"))) == 1


def test_least_conn(pair: Pair) -> None:
    run(pair, "lconn", 6, "lc")


def test_zz_access_logs(pair: Pair) -> None:
    """Every request above: the same $upstream_addr / _status / times in both logs (the
    refused attempts show there)."""
    if not same_access_logs(pair, r"[?&]m=([a-z0-9-]+-\d+)&", "up.log"):
        # run apart from them (as xdist's worksteal may): some of them here
        test_round_robin_weights(pair)
        test_backup_used_when_primary_refuses(pair)
        assert same_access_logs(pair, r"[?&]m=([a-z0-9-]+-\d+)&", "up.log")
