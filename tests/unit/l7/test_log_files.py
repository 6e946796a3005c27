"""Access log files: nginx's buffers (one write per buffer, flush= timer, gzip members, reopen
and exit flushes), unbuffered lines batched per loop iteration, if=, variable paths and
open_log_file_cache, and the lines themselves (missing vs empty, latin-1 header bytes)."""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from log_request import req

from halb.config.model import AccessLog, LogFormat
from halb.config.template import compile_template
from halb.l7.log import AccessLogs, ErrorLogger, LogFile, format_line, gzip_member


class FakeLoop:
    """call_soon / call_later recorded, run by hand."""

    def __init__(self) -> None:
        self.soon: list[Callable[[], Any]] = []
        self.later: list[tuple[float, Timer]] = []

    def call_soon(self, cb: Callable[[], Any]) -> None:
        self.soon.append(cb)

    def call_later(self, delay: float, cb: Callable[[], Any]) -> Timer:
        t = Timer(cb)
        self.later.append((delay, t))
        return t

    def run_soon(self) -> None:
        todo, self.soon = self.soon, []
        for cb in todo:
            cb()


class Timer:
    def __init__(self, cb: Callable[[], Any]) -> None:
        self.cb = cb
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        if not self.cancelled:
            self.cb()


def fmt(text: str, mode: str = "default") -> LogFormat:
    return LogFormat("t", compile_template(text), mode)


def log(path: str, text: str = "$request_uri", **kw: Any) -> AccessLog:
    return AccessLog(compile_template(path), fmt(text), **kw)


# -- lines -----------------------------------------------------------------------------------


def test_found_but_empty_is_empty_and_missing_is_dash() -> None:
    # nginx: "X-Test:" (empty) logs nothing, a header not sent logs "-"; $is_args is "" without
    # arguments, $args is not found ("-")
    r = req(x_test="")
    assert format_line(fmt("[$http_x_test][$http_x_none][$is_args][$args]"), r) == \
        b"[][-][][-]\n"
    assert format_line(fmt("[$http_x_none][$args]", "json"), r) == b"[][]\n"
    assert format_line(fmt("[$http_x_none][$args]", "none"), r) == b"[][]\n"


def test_header_bytes_are_logged_as_received_and_the_uri_as_utf8() -> None:
    ua = "caf\u00e9 \u2615".encode().decode("latin-1")  # how halb holds header values
    r = req("/caf\u00e9?q=\u00fc", user_agent=ua)
    assert format_line(fmt("$http_user_agent $request_uri", "none"), r) == \
        "caf\u00e9 \u2615 /caf\u00e9?q=\u00fc\n".encode()
    assert format_line(fmt("$http_user_agent|$arg_q"), r) == \
        b"caf\\xC3\\xA9 \\xE2\\x98\\x95|\\xC3\\xBC\n"


def test_json_escapes_controls_but_keeps_del_and_utf8() -> None:
    r = req(user_agent='a"\\\x01\x7f' + "\u00e9".encode().decode("latin-1"))
    assert format_line(fmt("$http_user_agent", "json"), r) == \
        b'a\\"\\\\\\u0001\x7f\xc3\xa9\n'


# -- buffers ---------------------------------------------------------------------------------


def test_unbuffered_lines_of_one_iteration_are_one_write(tmp_path: Path) -> None:
    loop = FakeLoop()
    f = LogFile(str(tmp_path / "a.log"), loop)
    for i in range(5):
        f.write(b"line %d\n" % i)
    assert f.writes == 0 and len(loop.soon) == 1  # one call_soon per iteration, not per line
    loop.run_soon()
    assert f.writes == 1
    assert (tmp_path / "a.log").read_bytes().count(b"\n") == 5
    f.write(b"next\n")
    loop.run_soon()
    assert f.writes == 2
    f.close()


def test_buffer_is_written_once_when_full(tmp_path: Path) -> None:
    loop = FakeLoop()
    f = LogFile(str(tmp_path / "b.log"), loop)
    f.configure(100, None, None)
    line = b"x" * 29 + b"\n"  # 30 bytes: three fit, the fourth flushes them
    for _ in range(3):
        f.write(line)
    assert f.writes == 0 and not loop.later  # no flush= : no timer
    f.write(line)
    assert f.writes == 1
    assert (tmp_path / "b.log").read_bytes() == line * 3
    f.write(b"y" * 150 + b"\n")  # larger than the buffer: the buffer, then the line itself
    assert f.writes == 3
    f.close()  # exit: what is buffered is written
    assert (tmp_path / "b.log").read_bytes() == line * 4 + b"y" * 150 + b"\n"


def test_flush_timer_starts_with_the_first_line(tmp_path: Path) -> None:
    loop = FakeLoop()
    f = LogFile(str(tmp_path / "c.log"), loop)
    f.configure(4096, 2.0, None)
    f.write(b"one\n")
    f.write(b"two\n")
    assert [d for d, _ in loop.later] == [2.0]  # armed once, by the first line
    loop.later[0][1].fire()
    assert f.writes == 1 and (tmp_path / "c.log").read_bytes() == b"one\ntwo\n"
    f.write(b"three\n")
    assert len(loop.later) == 2
    f.flush()
    assert loop.later[1][1].cancelled
    f.close()


def test_gzip_buffers_are_gzip_members(tmp_path: Path) -> None:
    f = LogFile(str(tmp_path / "d.log.gz"), FakeLoop())
    f.configure(64, None, 9)
    lines = [b"line number %d\n" % i for i in range(10)]
    for ln in lines:
        f.write(ln)
    f.close()
    assert f.writes > 1
    assert gzip.decompress((tmp_path / "d.log.gz").read_bytes()) == b"".join(lines)
    assert gzip.decompress(gzip_member(b"abc" * 10_000, 1)) == b"abc" * 10_000


def test_reopen_flushes_into_the_old_file_then_follows_the_path(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    f = LogFile(str(path), FakeLoop())
    f.configure(4096, None, None)
    f.write(b"before\n")
    os.rename(path, tmp_path / "access.old.log")  # the seeds' cut_my_log.sh
    f.write(b"still buffered\n")
    f.reopen()
    f.write(b"after\n")
    f.close()
    assert (tmp_path / "access.old.log").read_bytes() == b"before\nstill buffered\n"
    assert path.read_bytes() == b"after\n"


def test_a_failing_write_is_reported_once_a_minute(tmp_path: Path) -> None:
    said: list[tuple[str, str]] = []
    f = LogFile(str(tmp_path / "e.log"), None, lambda lvl, msg: said.append((lvl, msg)))
    os.close(f.fd)
    f.fd = os.open(os.devnull, os.O_RDONLY)  # writes fail with EBADF
    f.write(b"x\n")
    f.write(b"y\n")
    assert len(said) == 1 and said[0][0] == "alert" and "write() to" in said[0][1]
    os.close(f.fd)
    f.fd = -1


# -- access_log lists ------------------------------------------------------------------------


def test_if_condition_empty_or_zero_skips(tmp_path: Path) -> None:
    logs = AccessLogs(None)
    a = log(str(tmp_path / "if.log"), condition=compile_template("$arg_log"))
    logs.prepare((a,))
    for target in ("/x?log=1", "/x?log=0", "/x", "/x?log=yes"):
        logs.log((a,), req(target))
    logs.close()
    assert (tmp_path / "if.log").read_text().split() == ["/x?log=1", "/x?log=yes"]


def test_files_are_shared_and_get_the_buffer_of_their_buffered_log(tmp_path: Path) -> None:
    logs = AccessLogs(FakeLoop())
    plain = log(str(tmp_path / "s.log"))
    buffered = log(str(tmp_path / "s.log"), "B $request_uri", buffer=1024)
    logs.prepare((plain, buffered))
    assert len(logs.files) == 1
    logs.log((plain, buffered), req("/one"))
    f = logs.files[str(tmp_path / "s.log")]
    assert f.size == 1024 and f.writes == 0
    logs.close()
    assert (tmp_path / "s.log").read_text() == "/one\nB /one\n"


def test_variable_paths_open_per_line_or_through_the_cache(tmp_path: Path) -> None:
    logs = AccessLogs(None)
    a = log(str(tmp_path) + "/$host.log")
    for host in ("a", "b", "a"):
        r = req(host=host)
        r.host = host
        logs.log((a,), r)
    assert (tmp_path / "a.log").read_text() == "/a\n/a\n"
    assert not logs.caches
    from types import MappingProxyType

    from halb.config.model import LocConf

    r = req()
    r.host = "c"
    r.conf = LocConf(extra=MappingProxyType({"open_log_file_cache": (1, 10.0)}))
    logs.log((a,), r)
    r.host = "d"
    logs.log((a,), r)
    (cache,) = logs.caches.values()
    assert list(cache.fds) == [str(tmp_path / "d.log")]  # max=1: "c" was closed
    logs.close()
    assert (tmp_path / "c.log").read_text() == (tmp_path / "d.log").read_text() == "/a\n"


@pytest.mark.parametrize("host", ["../escape", "x/../../y", "a\0b"])
def test_variable_paths_cannot_climb_out(tmp_path: Path, host: str) -> None:
    said: list[str] = []
    logs = AccessLogs(None, lambda lvl, msg: said.append(msg))
    a = log(str(tmp_path / "logs") + "/$host/x.log")
    r = req()
    r.host = host
    logs.log((a,), r)
    assert said and "not allowed" in said[0]
    assert not (tmp_path / "escape").exists()


# -- error log -------------------------------------------------------------------------------


def test_error_log_levels_filter_per_file(tmp_path: Path) -> None:
    from halb.config.model import ErrorLog

    info, crit = tmp_path / "info.log", tmp_path / "crit.log"
    el = ErrorLogger((ErrorLog(str(info), "info"), ErrorLog(str(crit), "crit")))
    assert el.enabled("info") and not el.enabled("debug")
    el.log("debug", "not written")
    el.log("info", "client closed keepalive connection", 3)
    el.log("crit", "disk is full", None, ", client: 127.0.0.1")
    el.close()
    lines = info.read_text().splitlines()
    assert len(lines) == 2 and "not written" not in info.read_text()
    import re

    assert re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[info\] (\d+)#\1: \*3 client closed "
                        r"keepalive connection", lines[0])
    pid = os.getpid()
    assert crit.read_text().endswith(f"[crit] {pid}#{pid}: disk is full, client: 127.0.0.1\n")


def test_reopen_that_fails_keeps_the_old_file_and_says_why(tmp_path: Path) -> None:
    said: list[tuple[str, str]] = []
    d = tmp_path / "logs"
    d.mkdir()
    f = LogFile(str(d / "a.log"), None, lambda lvl, msg: said.append((lvl, msg)))
    os.rename(d, tmp_path / "gone")  # the directory went away: open() fails
    f.reopen()
    assert said and said[0][0] == "emerg" and 'open() "' in said[0][1]
    f.write(b"still logged\n")  # into the file that is still open
    f.close()
    assert (tmp_path / "gone" / "a.log").read_bytes() == b"still logged\n"


def test_error_log_reopen_follows_a_moved_file(tmp_path: Path) -> None:
    from halb.config.model import ErrorLog

    path = tmp_path / "error.log"
    el = ErrorLogger((ErrorLog(str(path), "notice"),))
    el.log("notice", "before")
    os.rename(path, tmp_path / "error.old.log")
    el.reopen()
    el.log("notice", "after")
    el.close()
    assert "before" in (tmp_path / "error.old.log").read_text()
    assert "after" in path.read_text() and "before" not in path.read_text()


def test_syslog_datagrams(tmp_path: Path) -> None:
    import socket

    from halb.l7.log_syslog import SyslogPeer, syslog_time

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    try:
        port = rx.getsockname()[1]
        peer = SyslogPeer(f"syslog:server=127.0.0.1:{port},facility=local0,tag=web,nohostname")
        peer.write(b"GET / 200\n")
        peer.send(b"[crit] disk\n", 2)
        assert re.fullmatch(rb"<134>\w{3} [ \d]\d \d\d:\d\d:\d\d web: GET / 200", rx.recv(999))
        assert rx.recv(999).startswith(b"<130>") is True
        peer.close()
    finally:
        rx.close()
    assert syslog_time(0.0)[4:6] in (" 1", "31")  # the day is padded with a space
    said: list[str] = []
    # nothing listens there: the datagram is dropped; a refused send is reported, not raised
    dead = SyslogPeer("syslog:server=unix:" + str(tmp_path / "none"),
                      lambda lvl, msg: said.append(msg))
    dead.write(b"x\n")
    assert said and said[0].startswith("send() to syslog failed")
