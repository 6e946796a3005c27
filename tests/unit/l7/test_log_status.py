"""stub_status: the shared counter block (slots, retirement of exited workers), nginx's exact
text, and the log module's directives as nginx -t reads them (contexts, buffers, inheritance)."""

from __future__ import annotations

import os

import pytest

from halb.config.errors import ConfigError
from halb.config.nginx import load_text
from halb.l7.stub_status import (
    ACCEPTED,
    ACTIVE,
    HANDLED,
    REQUESTS,
    WAITING,
    WRITING,
    StatusZone,
    render,
)


def test_render_is_nginx_text_byte_for_byte() -> None:
    t = [7, 7, 12, 3, 0, 1, 2]
    assert render(t) == (b"Active connections: 3 \nserver accepts handled requests\n"
                         b" 7 7 12 \nReading: 0 Writing: 1 Waiting: 2 \n")


def test_slots_sum_and_a_retired_worker_keeps_its_totals_only() -> None:
    z = StatusZone(slots=4)
    a, b = z.allocate(101), z.allocate(102)
    assert (a, b) == (1, 2)
    sa, sb = z.slot(a), z.slot(b)
    for s, n in ((sa, 3), (sb, 5)):
        s[ACCEPTED] += n
        s[HANDLED] += n
        s[REQUESTS] += 2 * n
        s[ACTIVE] += 1
        s[WAITING] += 1
    t = z.totals()
    assert (t[ACCEPTED], t[REQUESTS], t[ACTIVE], t[WAITING]) == (8, 16, 2, 2)
    z.retire(101)  # the worker died: its connections are gone, its counts stay
    t = z.totals()
    assert (t[ACCEPTED], t[HANDLED], t[REQUESTS], t[ACTIVE], t[WAITING]) == (8, 8, 16, 1, 1)
    assert z.allocate(103) == a  # the slot is reused, empty
    assert list(z.slot(a)) == [0] * 8
    z.retire(999)  # unknown pid: nothing happens
    z.close()


def test_slots_are_shared_with_a_forked_child() -> None:
    z = StatusZone(slots=2)
    slot = z.allocate()
    pid = os.fork()
    if pid == 0:  # the "worker": counts into its slot and exits
        s = z.slot(slot)
        s[ACCEPTED] += 4
        s[WRITING] += 1
        os._exit(0)
    z.assign(pid, slot)
    os.waitpid(pid, 0)
    assert z.totals()[ACCEPTED] == 4 and z.totals()[WRITING] == 1
    z.retire(pid)
    assert z.totals()[ACCEPTED] == 4 and z.totals()[WRITING] == 0
    z.close()


def test_more_workers_than_slots_share_the_base_slot() -> None:
    z = StatusZone(slots=1)
    assert z.allocate(1) == 1 and z.allocate(2) == 0
    z.close()


# -- configuration ---------------------------------------------------------------------------

EV = "events {}\n"


def http(body: str) -> object:
    return load_text(EV + "http {\n" + body + "\n}\n", prefix="/p/")


def test_stub_status_in_server_and_location_not_inherited() -> None:
    cfg = http("server { location /s { stub_status; location /s/in { } }\n"
               " location /old { stub_status on; } location / { } }")
    srv = cfg.http.servers[0]  # type: ignore[attr-defined]
    s, old, root = srv.locations
    assert s.conf.extra.get("stub_status") and old.conf.extra.get("stub_status")
    assert not s.children[0].conf.extra.get("stub_status")
    assert not root.conf.extra.get("stub_status")


@pytest.mark.parametrize(("text", "message"), [
    ("stub_status;", '"stub_status" directive is not allowed here in /tmp/nginx.conf:3'),
    ("server { stub_status a b; }",
     'invalid number of arguments in "stub_status" directive in /tmp/nginx.conf:3'),
    ("access_log logs/$host.log combined buffer=4k;",
     "buffered logs cannot have variables in name in /tmp/nginx.conf:3"),
    ("access_log logs/a.log combined buffer=4k;\naccess_log logs/a.log combined buffer=8k;",
     'access_log "logs/a.log" already defined with conflicting parameters in '
     "/tmp/nginx.conf:4"),
    ("access_log logs/a.log combined buffer=0;", 'invalid buffer size "0" in /tmp/nginx.conf:3'),
    ("access_log logs/a.log combined buffer=1k flush=0;",
     'invalid flush time "0" in /tmp/nginx.conf:3'),
    ("open_log_file_cache inactive=1m;",
     '"open_log_file_cache" must have "max" parameter in /tmp/nginx.conf:3'),
    ("open_log_file_cache max=x;",
     'invalid "open_log_file_cache" parameter "max=x" in /tmp/nginx.conf:3'),
    ("open_log_file_cache max=1;\nopen_log_file_cache off;",
     '"open_log_file_cache" directive is duplicate in /tmp/nginx.conf:4'),
])
def test_log_directive_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        http(text)
    assert str(e.value) == message


def test_same_buffer_twice_is_one_file_and_formats_are_case_insensitive() -> None:
    cfg = http("log_format Main '$uri';\n"
               "access_log logs/a.log main buffer=4k flush=1s;\n"
               "server { access_log logs/a.log MAIN buffer=4k flush=1s; access_log $host.log;\n"
               " open_log_file_cache max=10 inactive=20s min_uses=2 valid=1m; }")
    srv = cfg.http.servers[0]  # type: ignore[attr-defined]
    a, v = srv.conf.access_log
    assert a.path.static == "/p/logs/a.log" and (a.buffer, a.flush) == (4096, 1.0)
    assert v.path.raw == "/p/$host.log"  # a path with variables is relative to the prefix too
    assert srv.conf.extra["open_log_file_cache"] == (10, 20.0)


def test_access_log_stderr_is_a_file_in_the_prefix() -> None:
    cfg = http("access_log stderr;")
    (log,) = cfg.http.conf.access_log  # type: ignore[attr-defined]
    assert log.path.static == "/p/stderr"  # as nginx: only error_log writes to stderr


def test_a_log_file_that_cannot_be_opened_fails_the_test_like_nginx(
        tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from halb.cli.nginx import main

    base = Path(str(tmp_path))
    (base / "logs").mkdir()
    conf = base / "nginx.conf"
    conf.write_text(f"pid {base}/logs/nginx.pid;\nerror_log {base}/logs/error.log;\nevents {{}}\n"
                    f"http {{ access_log {base}/nodir/a.log; access_log {base}/logs/ok.log;\n"
                    f" server {{ listen 127.0.0.1:1; access_log syslog:server=127.0.0.1; }} }}\n")
    assert main(["-t", "-p", f"{base}/", "-c", str(conf)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [  # as nginx -t: the syntax is ok, then the file fails
        f"halb: the configuration file {conf} syntax is ok",
        f'halb: [emerg] open() "{base}/nodir/a.log" failed (2: No such file or directory)',
        f"halb: configuration file {conf} test failed"]
    (base / "nodir").mkdir()
    assert main(["-t", "-p", f"{base}/", "-c", str(conf)]) == 0
    assert (base / "nodir" / "a.log").exists() and (base / "logs" / "ok.log").exists()
