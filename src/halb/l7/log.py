"""Access and error logs in nginx's formats.

Access log lines come from a log_format template (combined by default) with nginx's escaping
(`default`: `"`, `\\`, and bytes outside 32..126 as \\xXX; `json`; `none`); a missing value is
"-". Lines are buffered per file and written with O_APPEND (one write per flush, so workers
sharing a file never interleave within a line); the buffer is flushed when full, by a timer,
on reopen (USR1) and at exit. Error log lines read as nginx's:
`2026/11/21 05:08:08 [error] 1234#1234: *5 open() "/x" failed (2: No such file or directory),
client: 127.0.0.1, server: localhost, request: "GET /x HTTP/1.1", host: "localhost"`.
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import TYPE_CHECKING, BinaryIO

from halb.config.model import AccessLog, ErrorLog, LogFormat
from halb.config.template import Var
from halb.l7.variables import VARIABLES, Getter, expand, get

if TYPE_CHECKING:
    from halb.l7.request import Request

LEVELS = {"debug": 7, "info": 6, "notice": 5, "warn": 4, "error": 3, "crit": 2, "alert": 1,
          "emerg": 0}

_DEFAULT_ESC = {b: f"\\x{b:02X}".encode() for b in (*range(0, 32), 34, 92, *range(127, 256))}
_JSON_ESC = {34: b'\\"', 92: b"\\\\", 10: b"\\n", 13: b"\\r", 9: b"\\t", 8: b"\\b", 12: b"\\f"}


def escape(value: bytes, mode: str) -> bytes:
    if mode == "none":
        return value
    table = _DEFAULT_ESC if mode == "default" else _JSON_ESC
    out = bytearray()
    for b in value:
        rep = table.get(b)
        if rep is not None:
            out += rep
        elif mode == "json" and b < 32:
            out += b"\\u%04x" % b
        else:
            out.append(b)
    return bytes(out)


# Characters that need escaping: for `default` controls, '"', '\\', DEL and every non-ASCII
# character (nginx escapes bytes above 126); for `json` controls, '"' and '\\'.
_NEEDS = {"default": re.compile(r'[\x00-\x1f"\\\x7f-\U0010ffff]'),
          "json": re.compile(r'[\x00-\x1f"\\]')}

_Part = tuple[bool, str, "Getter | None"]
_COMPILED: dict[int, tuple[LogFormat, list[_Part]]] = {}


def _compile(fmt: LogFormat) -> list[_Part]:
    hit = _COMPILED.get(id(fmt))
    if hit is not None and hit[0] is fmt:
        return hit[1]
    parts: list[_Part] = []
    for p in fmt.template.parts:
        if isinstance(p, Var):
            parts.append((True, p.name, VARIABLES.get(p.name)))
        else:
            parts.append((False, p, None))
    _COMPILED[id(fmt)] = (fmt, parts)
    return parts


def format_line(fmt: LogFormat, r: Request) -> bytes:
    """One log line: the values are checked for characters to escape with one regex search
    each, and the line is encoded once (values with such characters go byte by byte)."""
    mode = fmt.escape
    needs = _NEEDS.get(mode)
    missing = "" if mode == "json" else "-"
    out: list[str] = []
    for is_var, text, getter in _compile(fmt):
        if not is_var:
            out.append(text)
            continue
        v = getter(r) if getter is not None else get(r, text)
        if not v:
            out.append(missing)
        elif needs is None or needs.search(v) is None:
            out.append(v)
        else:
            raw = escape(v.encode("utf-8", "surrogateescape"), mode)
            out.append(raw.decode("utf-8", "surrogateescape"))
    out.append("\n")
    return "".join(out).encode("utf-8", "surrogateescape")


class LogFile:
    """One open log file, shared by every access_log naming it."""

    def __init__(self, path: str, buffer: int = 0) -> None:
        self.path = path
        self.buffer_size = buffer
        self.buf: list[bytes] = []
        self.buffered = 0
        self.fd = -1
        self.open()

    def open(self) -> None:
        if self.path == "stderr":
            self.fd = 2
            return
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                          0o644)

    def write(self, line: bytes) -> None:
        if self.buffer_size <= 0:
            self._write(line)
            return
        self.buf.append(line)
        self.buffered += len(line)
        if self.buffered >= self.buffer_size:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            data = b"".join(self.buf)
            self.buf.clear()
            self.buffered = 0
            self._write(data)

    def _write(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)
        except OSError:
            pass

    def reopen(self) -> None:
        self.flush()
        if self.fd > 2:
            old = self.fd
            try:
                self.open()
            except OSError:
                return
            os.close(old)

    def close(self) -> None:
        self.flush()
        if self.fd > 2:
            os.close(self.fd)
        self.fd = -1


class AccessLogs:
    """Every access log file of a worker. Static paths are opened at start (before the worker
    drops privileges), paths with variables on first use."""

    # nginx buffers per access_log when buffer= is given; halb buffers by default too, and
    # flushes at least once per second so `tail -f` stays live.
    DEFAULT_BUFFER = 64 * 1024
    DEFAULT_FLUSH = 1.0

    def __init__(self) -> None:
        self.files: dict[str, LogFile] = {}

    def prepare(self, logs: tuple[AccessLog, ...]) -> None:
        for log in logs:
            if log.path.is_static:
                self._file(log.path.static, log.buffer)

    def _file(self, path: str, buffer: int) -> LogFile:
        f = self.files.get(path)
        if f is None:
            f = LogFile(path, buffer or self.DEFAULT_BUFFER)
            self.files[path] = f
        return f

    def log(self, logs: tuple[AccessLog, ...], r: Request) -> None:
        for log in logs:
            if log.condition is not None:
                v = expand(log.condition, r)
                if not v or v == "0":
                    continue
            path = log.path.static if log.path.is_static else expand(log.path, r)
            try:
                f = self._file(path, log.buffer)
            except OSError:
                continue
            f.write(format_line(log.format, r))

    def flush(self) -> None:
        for f in self.files.values():
            f.flush()

    def reopen(self) -> None:
        for f in self.files.values():
            f.reopen()

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files.clear()


class ErrorLogger:
    """nginx's error log: `YYYY/MM/DD HH:MM:SS [level] pid#tid: *conn message, context`."""

    def __init__(self, logs: tuple[ErrorLog, ...] = ()) -> None:
        self.targets: list[tuple[BinaryIO | int, int]] = []
        self.logs = logs or (ErrorLog("stderr", "error"),)
        self.open()

    def open(self) -> None:
        self.targets = []
        for log in self.logs:
            if log.path == "stderr":
                self.targets.append((2, LEVELS[log.level]))
            else:
                fd = os.open(log.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                             0o644)
                self.targets.append((fd, LEVELS[log.level]))

    def reopen(self) -> None:
        old = [fd for fd, _ in self.targets if isinstance(fd, int) and fd > 2]
        try:
            self.open()
        except OSError:
            return
        for fd in old:
            os.close(fd)

    def enabled(self, level: str) -> bool:
        n = LEVELS[level]
        return any(n <= lim for _, lim in self.targets)

    def log(self, level: str, message: str, conn: int | None = None,
            context: str = "") -> None:
        n = LEVELS[level]
        pid = os.getpid()
        star = f"*{conn} " if conn is not None else ""
        line = (f"{time.strftime('%Y/%m/%d %H:%M:%S')} [{level}] {pid}#{pid}: {star}{message}"
                f"{context}\n").encode("utf-8", "backslashreplace")
        for fd, lim in self.targets:
            if n <= lim:
                try:
                    os.write(fd if isinstance(fd, int) else fd.fileno(), line)
                except OSError:
                    pass

    def close(self) -> None:
        for fd, _ in self.targets:
            if isinstance(fd, int) and fd > 2:
                os.close(fd)
        self.targets = []


def request_context(r: Request) -> str:
    """The `, client: ..., server: ..., request: "...", host: "..."` tail nginx appends."""
    parts = [f", client: {r.conn.remote_addr}"]
    parts.append(f", server: {r.server.server_name if r.server else ''}")
    if r.request_line:
        parts.append(f', request: "{r.request_line}"')
    host = r.headers.get("host")
    if host:
        parts.append(f', host: "{host}"')
    return "".join(parts)


def stderr_line(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
