"""Access logs and stub_status, side by side with nginx: same config, same requests, the log
lines compared line by line (times as "T"), and stub_status's text and counter arithmetic.

The formats cover what nginx users put in log_format: the combined line, every common variable
with default escaping (quotes, backslashes, control bytes and UTF-8 in a header, an empty
header vs a missing one, arguments, cookies, $remote_user, pipelining and $connection_requests,
a 400), the same values with escape=json and escape=none, buffered and flushed files, access_log
per server and location (a level with its own list drops its parent's, `off`, `if=`), and
$connections_* in a line. The time variables are checked for their shape.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import pytest
from harness import Case, Pair, ServerProcess, compare, exchange, ids, req

pytestmark = pytest.mark.peer

ALL = ("$remote_addr|$remote_user|$request|$status|$body_bytes_sent|$sent_http_content_length|"
       "$request_length|"
       "$http_user_agent|$http_x_test|$http_referer|$sent_http_content_type|$args|$arg_q|"
       "$cookie_c|$is_args|$request_uri|$uri|$connection_requests|$pipe|$server_protocol|"
       "$request_method|$host|$http_host|$content_length|$sent_http_x_missing|$upstream_addr|"
       "$server_port")

CONFIG = r"""
    log_format all '%ALL%';
    log_format js escape=json '{"r":"$request","ua":"$http_user_agent","x":"$http_x_test",'
                              '"a":"$args","u":"$remote_user","s":$status}';
    log_format raw escape=none '$request|$http_user_agent|$http_x_test|$args';
    log_format times '$request|$msec|$request_time|$time_local|$time_iso8601';
    log_format conns '$request|$connections_active|$connections_reading|'
                     '$connections_writing|$connections_waiting';
    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        root %WWW%;
        access_log %PREFIX%/combined.log;
        access_log %PREFIX%/all.log all;
        access_log %PREFIX%/js.log js buffer=4k flush=200ms;
        access_log %PREFIX%/raw.log raw buffer=64k;
        access_log %PREFIX%/times.log times;
        location /status { stub_status; access_log %PREFIX%/conns.log conns; }
        location /quiet/ { access_log off; }
        location /own/ { access_log %PREFIX%/own.log all; }
        location /cond/ { access_log %PREFIX%/cond.log all if=$arg_log; }
        location /errs/ { error_log %PREFIX%/loc-error.log; }
    }
""".replace("%ALL%", ALL)

UA = 'x"y\\z\x01\x7f caf\u00e9'


def _get(path: str, headers: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
         **kw: Any) -> bytes:
    return req(path, headers=[("Connection", "close"), *headers], **kw)


CASES = [
    Case("hostile-user-agent", _get("/a.txt?m=1", headers=[("User-Agent", UA), ("X-Test", ""),
                                                           ("Referer", "http://r/x y")])),
    Case("not-found-cookie-args", _get("/nope?m=2&q=%20v", headers=[("Cookie", "a=1; c=v2")])),
    Case("head", _get("/a.txt?m=3", method="HEAD")),
    Case("post-to-static", _get("/a.txt?m=4", method="POST", body=b"hello")),
    Case("basic-auth", _get("/a.txt?m=5", headers=[("Authorization", "Basic dXNlcjpwYXNz")])),
    Case("pipelined", req("/a.txt?m=6") + req("/range.txt?m=7") + _get("/dir/?m=8")),
    Case("quiet", _get("/quiet/a?m=9")),
    Case("own-list", _get("/own/a?m=10")),
    Case("cond-off", _get("/cond/a?m=11")),
    Case("cond-zero", _get("/cond/a?m=12&log=0")),
    Case("cond-on", _get("/cond/a?m=13&log=1")),
    Case("http10", _get("/a.txt?m=14", version="HTTP/1.0", host=None)),
    Case("duplicate-host", _get("/a.txt?m=15", headers=[("Host", "other")])),
    Case("utf8-uri", _get("/caf\u00e9.txt?m=16&q=\u00fc")),
    Case("escaped-uri", _get("/hello%20world.txt?m=17")),
    Case("host-with-port", _get("/a.txt?m=18", host="LocalHost:99")),
    Case("range", _get("/range.txt?m=19", headers=[("Range", "bytes=2-5")])),
    Case("redirect", _get("/dir?m=20")),
    Case("location-error-log", _get("/errs/none?m=21")),
]

MARK = r"[?&]m=(\d+)"
# a built-in page's length carries the server's name: not compared ($status stays)
_ERR_BODY = re.compile(r"\|([345]\d\d)\|\d+\|\d+\|")
_ERR_COMBINED = re.compile(r'" ([345]\d\d) \d+ "')
_TIMES = re.compile(r"\b\d+\.\d{3}\b|\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]")


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_answers(pair: Pair, case: Case) -> None:
    compare(pair, case)


def _lines(srv: ServerProcess, name: str, want: int = 0, timeout: float = 3.0
           ) -> dict[str, list[str]]:
    """marker -> the lines of a log naming it (times as "T", error page lengths as "B"),
    waiting up to `timeout` for `want` markers (want=0: until two reads agree)."""
    deadline = time.monotonic() + timeout
    last: dict[str, list[str]] | None = None
    while True:
        p = srv.prefix / name
        out: dict[str, list[str]] = {}
        for ln in (p.read_bytes().decode("utf-8", "surrogateescape") if p.exists()
                   else "").splitlines():
            m = re.search(MARK, ln)
            if m:
                ln = _ERR_BODY.sub(r"|\1|B|B|", _TIMES.sub("T", ln))
                ln = _ERR_COMBINED.sub(r'" \1 B "', ln)
                out.setdefault(m.group(1), []).append(ln.replace("127.0.0.3", "127.0.0.2"))
        if (len(out) >= want if want else out == last) or time.monotonic() > deadline:
            return out
        last = out
        time.sleep(0.1)


# Known differences, field by field (the index in ALL's "|"-separated line):
# - m=4: nginx does not count the body of a request it answers without reading (a static 405)
#   in $request_length; halb counts what its parser saw.
# - m=15: a header error before the header ends: halb has the request line and arguments, but
#   not the normalized $uri nginx computed when it read the request line.
DEVIATIONS = {("all.log", "4"): (6,), ("all.log", "15"): (16,)}


def _without(lines: list[str], fields: tuple[int, ...]) -> list[str]:
    out = []
    for ln in lines:
        parts = ln.split("|")
        for i in fields:
            parts[i] = "~"
        out.append("|".join(parts))
    return out


@pytest.mark.parametrize("name", ["all.log", "combined.log", "js.log", "own.log", "cond.log"])
def test_log_lines_match(pair: Pair, name: str) -> None:
    pair.prefetch(CASES)
    if name == "js.log":
        time.sleep(0.5)  # flush=200ms: both servers write the buffer when the timer fires
    want = _lines(pair["nginx"], name)
    got = _lines(pair["halb"], name, len(want))
    assert want, f"nginx wrote no {name}"
    for (log, mark), fields in DEVIATIONS.items():
        if log == name:
            want[mark], got[mark] = _without(want[mark], fields), _without(got[mark], fields)
    assert got == want


def test_inheritance_off_and_if(pair: Pair) -> None:
    """Pin nginx's behaviour the comparison above relies on."""
    pair.prefetch(CASES)
    for srv in (pair["nginx"], pair["halb"]):
        every = _lines(srv, "all.log", 15)
        assert "9" not in every and "10" not in every  # off; a location's own list
        assert set(_lines(srv, "own.log", 1)) == {"10"}
        assert set(_lines(srv, "cond.log", 1)) == {"13"}  # if=: "" and "0" are false
        pipelined = every["6"] + every["7"] + every["8"]
        assert [ln.split("|")[18] for ln in pipelined] == [".", "p", "p"]


def test_error_log_of_the_location(pair: Pair) -> None:
    """error_log in a location: that request's error line goes there (and not to the main
    error log), in nginx's words."""
    pair.prefetch(CASES)
    said = {}
    for srv in (pair["nginx"], pair["halb"]):
        text = (srv.prefix / "loc-error.log").read_text()
        lines = [re.sub(r"^\S+ \S+ (\[\w+\]) \d+#\d+: \*\d+ ", r"\1 ", ln).replace(
            str(srv.prefix.parent), "P").replace(srv.name, "X")
            for ln in text.splitlines() if "m=21" in ln]
        said[srv.name] = lines
        assert "m=21" not in (srv.prefix / "error.log").read_text()
    assert said["halb"] == said["nginx"]
    assert said["nginx"] and "[error] open() " in said["nginx"][0]


def test_buffered_log_reaches_the_file_on_exit(pair: Pair) -> None:
    """raw.log has a 64k buffer and no flush=: nginx writes it when the buffer fills, on
    reopen or at exit; so does halb (checked after the module's servers stop, below)."""
    pair.prefetch(CASES)
    for srv in (pair["nginx"], pair["halb"]):
        p = srv.prefix / "raw.log"
        assert not p.exists() or p.stat().st_size == 0, f"{srv.name} wrote raw.log early"


def test_time_variables_have_nginx_shapes(pair: Pair) -> None:
    pair.prefetch(CASES)
    shape = re.compile(r"\|\d{10}\.\d{3}\|\d+\.\d{3}\|\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d "
                       r"[+-]\d{4}\|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
    for srv in (pair["nginx"], pair["halb"]):
        text = (srv.prefix / "times.log").read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if "m=1 " in ln]
        assert lines and shape.search(lines[0]), (srv.name, lines)


# -- stub_status ---------------------------------------------------------------------------

_STATUS = re.compile(r"Active connections: (\d+) \nserver accepts handled requests\n"
                     r" (\d+) (\d+) (\d+) \nReading: (\d+) Writing: (\d+) Waiting: (\d+) \n")


def _status(srv: ServerProcess, port: int) -> tuple[int, ...]:
    ex = exchange(srv.addr, port, Case("status", _get("/status")))
    resp = ex.responses[0]
    assert resp.status == 200 and resp.header("content-type") == "text/plain"
    m = _STATUS.fullmatch(resp.body.decode())
    assert m, resp.body
    active, accepts, handled, requests, reading, writing, waiting = map(int, m.groups())
    return active, accepts, handled, requests, reading, writing, waiting


def _scenario(srv: ServerProcess, port: int) -> tuple[tuple[int, ...], tuple[int, ...], str]:
    """Quiet server → three idle keep-alive connections, one silent connection, one that sent
    half a header → status. Returns the counter deltas, the gauges, and the conns.log line."""
    deadline = time.monotonic() + 5
    before = _status(srv, port)
    while before[0] != 1 and time.monotonic() < deadline:  # earlier connections closing
        time.sleep(0.05)
        before = _status(srv, port)
    socks: list[socket.socket] = []
    try:
        for _ in range(3):
            s = socket.create_connection((srv.addr, port), timeout=3)
            s.sendall(req("/a.txt"))
            data = b""
            while not data.endswith(b"hello from a.txt\n"):
                chunk = s.recv(4096)
                assert chunk
                data += chunk
            socks.append(s)
        socks.append(socket.create_connection((srv.addr, port), timeout=3))
        half = socket.create_connection((srv.addr, port), timeout=3)
        socks.append(half)
        half.sendall(b"GET /a.txt HTTP/1.1\r\nHost: loc")
        # until the server has read the half header and accepted the silent connection (on a
        # loaded machine that may take a moment); each extra look is one more connection
        extra = 0
        after = _status(srv, port)
        while after[4:] != (1, 1, 4) and time.monotonic() < deadline + 5:
            time.sleep(0.1)
            extra += 1
            after = _status(srv, port)
    finally:
        for s in socks:
            s.close()
    deltas = tuple(a - b - extra for a, b in zip(after[1:4], before[1:4], strict=True))
    gauges = (after[0], *after[4:])
    time.sleep(0.2)  # (halb writes an unbuffered line at the end of its loop iteration)
    p = srv.prefix / "conns.log"
    text = p.read_text() if p.exists() else ""
    return deltas, gauges, text.splitlines()[-1] if text else ""


def test_stub_status_counts_like_nginx(pair: Pair) -> None:
    pair.prefetch(CASES)
    results = {name: _scenario(srv, pair.port) for name, srv in pair.servers.items()}
    # accepts, handled, requests since the quiet state: 3 idle + silent + half + the status
    # connection; requests: 3 + the half header + the status request
    assert results["nginx"][0] == (6, 6, 5)
    # active, reading, writing, waiting
    assert results["nginx"][1] == (6, 1, 1, 3 + 1)
    assert results["halb"][:2] == results["nginx"][:2]
    # $connections_*: the last status request saw the same gauges
    # (nginx frees the request, writing - 1, before it logs it)
    assert results["halb"][2] == results["nginx"][2] == "GET /status HTTP/1.1|6|1|0|4"


@pytest.mark.parametrize("case", [
    Case("status-post", _get("/status", method="POST", body=b"x"), {"status": 405}),
    Case("status-head", _get("/status", method="HEAD"), {"status": 200}),
], ids=["post", "head"])
def test_stub_status_methods(pair: Pair, case: Case) -> None:
    got = pair.run(case)
    n, h = got["nginx"].responses[0], got["halb"].responses[0]
    assert (n.status, n.header("content-type")) == (h.status, h.header("content-type"))
    assert n.status == case.expect["status"]
    if case.name == "status-head":
        assert n.body == h.body == b""
        assert n.header("content-length") is not None and h.header("content-length") is not None


def test_zz_buffers_written_at_exit(pair: Pair) -> None:
    """Stop both servers (graceful QUIT): the buffered raw.log is written, and its lines agree."""
    pair.prefetch(CASES)
    for srv in pair.servers.values():
        srv.stop()
    want = _lines(pair["nginx"], "raw.log")
    got = _lines(pair["halb"], "raw.log", len(want))
    assert len(want) >= 15
    assert got == want
