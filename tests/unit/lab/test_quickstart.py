"""halb up's plan (what the configuration asks it to start) and its summary line (pure)."""

from __future__ import annotations

import pytest

from halb.config.nginx import load_text
from halb.lab.quickstart import Backend, Plan, PlanError, Summary, plan

CONF = """
events {}
http {
    log_format quickstart '$msec $status $request_time $upstream_addr';
    access_log /tmp/q/access.log quickstart;
    upstream a { server 127.0.0.1:9101; server 127.0.0.1:9102 weight=2; }
    upstream b { server 127.0.0.1:9102; server 127.0.0.2:9103 backup; }
    server { listen %LISTEN%; location / { proxy_pass http://a; } }
}
"""


def _plan(listen: str = "127.0.0.1:8080", conf: str = CONF) -> Plan:
    return plan(load_text(conf.replace("%LISTEN%", listen)))


def test_plan_starts_one_backend_per_distinct_upstream_address_in_order() -> None:
    p = _plan()
    assert p.url == "http://127.0.0.1:8080/"
    assert p.backends == (Backend("backend-1", "127.0.0.1", 9101),
                          Backend("backend-2", "127.0.0.1", 9102),
                          Backend("backend-3", "127.0.0.2", 9103))
    assert p.access_log == "/tmp/q/access.log"


def test_plan_wildcard_listen_is_opened_on_loopback() -> None:
    assert _plan("8081").url == "http://127.0.0.1:8081/"


@pytest.mark.parametrize(("listen", "conf", "why"), [
    ("198.18.0.1:80", CONF, "loopback only"),
    ("127.0.0.1:80", CONF.replace("127.0.0.2:9103", "198.18.0.5:9103"), "not a loopback"),
    ("127.0.0.1:80", "events {} http { server { listen %LISTEN%; } }", "no upstream server"),
])
def test_plan_refuses_what_it_must_not_start(listen: str, conf: str, why: str) -> None:
    with pytest.raises(PlanError, match=why):
        _plan(listen, conf)


def test_summary_counts_the_window_and_the_serving_backend() -> None:
    backends = (Backend("backend-1", "127.0.0.1", 1), Backend("backend-2", "127.0.0.1", 2))
    s = Summary("http://x/", backends, window=5.0)
    for i in range(30):
        s.feed(f"{100 + i * 0.1:.3f} 200 0.001 127.0.0.1:{1 + i % 3 // 2}")
    # a retried request counts for the address that answered last
    s.feed("103.000 200 0.002 127.0.0.1:1, 127.0.0.1:2")
    s.feed("103.100 502 0.002 127.0.0.1:1, 127.0.0.1:2")
    s.feed("garbage")
    s.feed("104.0 404 0.000 -")
    line = s.line(now=104.5, health={"backend-1": True, "backend-2": False})
    assert "(ok 31, 5xx 1, total 33)" in line  # the 404 is neither
    # events from 99.5 on: all 33 lines are inside the window
    assert "6.6 req/s" in line
    assert "backend-1  61% up" in line  # 20 of the 30 + none of the retried
    assert "backend-2  36% DOWN" in line  # 10 + 2 retried
    later = s.line(now=110.0, health={})
    assert "0.0 req/s" in later and "total 33" in later
