"""health.nginx_check: nginx Plus's health_check decisions (fake clock, no I/O) and the check
response's reading and judging (match blocks)."""

from __future__ import annotations

import re

import pytest

from halb.config.nginx_health import (
    BODY_LIMIT,
    BodyTest,
    HeaderTest,
    HealthCheck,
    Match,
    StatusTest,
)
from halb.health.nginx_check import CHECKING, DOWN, UP, GroupHealth, ResponseReader, verdict

T0 = 500.0


def hc(**kw: object) -> HealthCheck:
    return HealthCheck("u", **kw)  # type: ignore[arg-type]


def run(g: GroupHealth, results: dict[int, bool], now: float) -> list[tuple[int, bool, bool]]:
    """Start what is due and feed a result per server; the transitions."""
    out = []
    for check, peer in g.due(now):
        t = g.result(check, peer, results.get(peer, True), now)
        if t is not None:
            out.append((t.peer, t.healthy, t.recovered))
    return out


# -- the state machine ----------------------------------------------------------------------


def test_fails_and_passes_count_consecutive_results() -> None:
    g = GroupHealth([hc(fails=2, passes=3, interval=5.0)], [True, True], [False, False], T0,
                    lambda: 0.5)
    assert run(g, {0: False}, T0) == []  # one failure of two
    assert g.state(0, 0) == UP
    assert run(g, {0: True}, T0 + 5) == []  # a pass resets the count
    assert run(g, {0: False}, T0 + 10) == []
    assert run(g, {0: False}, T0 + 15) == [(0, False, False)]
    assert g.state(0, 0) == DOWN
    assert run(g, {0: True}, T0 + 20) == []
    assert run(g, {0: False}, T0 + 25) == []  # a failure resets the passes
    assert run(g, {0: True}, T0 + 30) == []
    assert run(g, {0: True}, T0 + 35) == []
    assert run(g, {0: True}, T0 + 40) == [(0, True, True)]  # back from down: slow_start
    assert g.healthy == [True, True]


def test_interval_is_counted_from_the_end_of_a_check_and_jitter_is_random() -> None:
    draws = iter([0.0, 0.0, 0.5, 1.0])
    g = GroupHealth([hc(interval=5.0, jitter=2.0)], [True, True], [False, False], T0,
                    lambda: next(draws))
    assert g.due(T0) == [(0, 0), (0, 1)]
    assert g.due(T0 + 100) == []  # one probe per server at a time
    assert g.next_deadline() is None  # both running
    g.result(0, 0, True, T0 + 1)
    g.result(0, 1, True, T0 + 2)
    assert g.next_deadline() == pytest.approx(T0 + 1 + 5 + 1.0)
    assert g.due(T0 + 6.9) == []
    assert g.due(T0 + 7.0) == [(0, 0)]
    assert g.due(T0 + 8.9) == []
    assert g.due(T0 + 9.0) == [(0, 1)]


def test_mandatory_servers_leave_checking_on_their_first_result() -> None:
    g = GroupHealth([hc(mandatory=True, fails=3, passes=3)], [False, False], [False, False],
                    T0, lambda: 0.0)
    assert g.state(0, 0) == CHECKING
    got = run(g, {0: True, 1: False}, T0)
    # healthy, but not "recovering": no slow start; and checking -> unhealthy is a change too
    assert got == [(0, True, False), (1, False, False)]
    assert g.state(0, 1) == DOWN and g.healthy == [True, False]
    g.due(T0 + 5)
    assert g.result(0, 1, False, T0 + 5) is None  # still down: nothing new


def test_every_check_must_pass_and_down_servers_are_not_checked() -> None:
    g = GroupHealth([hc(uri="/a"), hc(uri="/b")], [True, True, True], [False, False, True],
                    T0, lambda: 0.0)
    started = g.due(T0)
    assert sorted(started) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert g.result(0, 0, True, T0) is None
    t = g.result(1, 0, False, T0)
    assert t is not None and not t.healthy  # one failing check is enough
    assert g.result(0, 1, True, T0) is None and g.result(1, 1, True, T0) is None
    assert g.healthy == [False, True, True]
    g.due(T0 + 5)
    assert g.result(1, 0, True, T0 + 5) is not None and g.healthy[0]


# -- the response ---------------------------------------------------------------------------


def read(*parts: bytes, eof: bool = True) -> ResponseReader:
    r = ResponseReader()
    done = False
    for p in parts:
        done = r.feed(p)
    if eof and not done:
        r.eof()
    return r


def test_response_with_content_length_ends_without_eof() -> None:
    r = ResponseReader()
    assert not r.feed(b"HTTP/1.1 200 OK\r\nContent-")
    assert not r.feed(b"Length: 5\r\nX-A: 1\r\n\r\nab")
    assert r.feed(b"cdeEXTRA")
    assert (r.status, bytes(r.body), r.headers) == (200, b"abcde",
                                                    [("Content-Length", "5"), ("X-A", "1")])


def test_chunked_body_is_decoded_across_reads() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"
    for cut in range(1, len(raw)):
        r = ResponseReader()
        done = r.feed(raw[:cut]) or r.feed(raw[cut:])
        assert done and not r.error and bytes(r.body) == b"hello world", cut


def test_body_until_close_is_kept_to_256k() -> None:
    r = ResponseReader()
    r.feed(b"HTTP/1.0 200 OK\r\n\r\n")
    assert not r.feed(b"x" * (BODY_LIMIT - 1))
    assert r.feed(b"yy")  # enough: the rest is never examined
    assert len(r.body) == BODY_LIMIT


@pytest.mark.parametrize("raw,why", [
    (b"", "upstream closed connection without a response"),
    (b"HTTP/1.1 200 OK\r\nX: y", "upstream prematurely closed connection"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", "upstream sent no valid HTTP/1.0 header"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "upstream sent no valid HTTP/1.0 header"),
    (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "upstream sent invalid header"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
     "upstream sent invalid chunked response"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000, "upstream sent too big header"),
])
def test_broken_responses_fail_the_check(raw: bytes, why: str) -> None:
    r = read(raw)
    assert r.finished
    assert verdict(hc(), r) == (False, why)


@pytest.mark.parametrize("status,ok", [(200, True), (302, True), (399, True), (199, False),
                                       (404, False), (500, False)])
def test_default_is_2xx_or_3xx(status: int, ok: bool) -> None:
    r = read(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % status)
    assert verdict(hc(), r)[0] is ok


# -- match ----------------------------------------------------------------------------------


def m(**kw: object) -> Match:
    return Match("m", **kw)  # type: ignore[arg-type]


def test_status_tests() -> None:
    ok = StatusTest(False, ((200, 200), (204, 204)))
    assert ok(200) and ok(204) and not ok(201)
    not_redirect = StatusTest(True, ((301, 303), (307, 307)))
    assert not_redirect(200) and not not_redirect(302) and not not_redirect(307)
    match = m(status=(StatusTest(False, ((200, 399),)), StatusTest(True, ((302, 302),))))
    assert match(200, [], b"") and not match(302, [], b"") and not match(500, [], b"")


def test_header_tests() -> None:
    hs = [("Content-Type", "text/html"), ("X-Foo", "abc123"), ("X-Foo", "zzz")]
    assert HeaderTest("content-type", "=", "text/html")(hs)
    assert not HeaderTest("content-type", "=", "text/plain")(hs)
    assert HeaderTest("content-type", "!=", "text/plain")(hs)
    assert not HeaderTest("x-missing", "!=", "v")(hs)  # "contains ... with a value other"
    assert HeaderTest("x-foo", "~", "", re.compile(r"\d+"))(hs)
    assert HeaderTest("x-foo", "!~", "", re.compile(r"\d+"))(hs)  # zzz does not match
    assert HeaderTest("host", "!")(hs) and not HeaderTest("x-foo", "!")(hs)
    assert HeaderTest("x-foo", "")(hs) and not HeaderTest("host", "")(hs)


def test_body_tests_and_all_must_pass() -> None:
    welcome = m(status=(StatusTest(False, ((200, 200),)),),
                headers=(HeaderTest("content-type", "=", "text/html"),),
                body=(BodyTest(False, re.compile("Welcome to nginx!")),))
    hs = [("Content-Type", "text/html")]
    assert welcome(200, hs, b"<h1>Welcome to nginx!</h1>")
    assert not welcome(200, hs, b"<h1>Welcome</h1>")
    assert not welcome(200, [("Content-Type", "text/plain")], b"Welcome to nginx!")
    assert not welcome(201, hs, b"Welcome to nginx!")
    maint = m(body=(BodyTest(True, re.compile("maintenance mode")),))
    assert maint(500, [], b"ok") and not maint(200, [], b"in maintenance mode")
    beyond = b"x" * BODY_LIMIT + b"maintenance mode"
    assert maint(200, [], beyond)  # only the first 256k are examined
    r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert verdict(hc(match=m(body=(BodyTest(False, re.compile("no")),))), r) == \
        (False, 'response does not match "m"')
