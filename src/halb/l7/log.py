"""Access and error logs in nginx's formats (ngx_http_log_module, ngx_log.c).

Access log lines come from a log_format template (combined by default) with nginx's escaping:
`default` writes `"`, `\\`, bytes below 32 and above 126 as \\xXX and a value that is not found
as "-"; `json` escapes as JSON strings and writes nothing for a missing value; `none` copies.
Values keep the bytes they came with (header values are latin-1 text in halb, the request line
and URI are UTF-8 with surrogate escapes).

Writing follows nginx's buffers. A file (shared by every access_log naming it) with buffer=
collects lines and is written once per buffer: when the next line does not fit, when its
flush= timer (armed by the first line of an empty buffer) fires, on reopen (USR1) and at exit;
with gzip each such write is one gzip member. A file without buffer= gets each line as nginx
does, except that the lines of one event-loop iteration go out in one write (one call_soon per
iteration, not per line). Writes use O_APPEND: workers sharing a file never split a line. A
path with variables is opened and closed for each line, unless open_log_file_cache keeps it.

Error log lines read as nginx's:
`2026/11/21 05:08:08 [error] 1234#1234: *5 open() "/x" failed (2: No such file or directory),
client: 127.0.0.1, server: localhost, request: "GET /x HTTP/1.1", host: "localhost"`.
"""

from __future__ import annotations

import os
import re
import sys
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from halb.config.errors import ConfigError
from halb.config.model import AccessLog, ErrorLog, Location, LocConf, LogFormat, NginxConfig
from halb.config.template import Var
from halb.l7.response import DATES
from halb.l7.variables import _PREFIXED, VARIABLES, Getter, expand, get

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


# A value needs the slow path when it has a character to escape or one that is not ASCII (its
# bytes depend on where it came from): `default` escapes controls, '"', '\\', DEL and every
# byte above 126; `json` controls, '"' and '\\'; `none` nothing.
_SLOW = {"default": re.compile(r'[\x00-\x1f"\\\x7f-\U0010ffff]'),
         "json": re.compile(r'[\x00-\x1f"\\\x80-\U0010ffff]'),
         "none": re.compile(r"[\x80-\U0010ffff]")}

# Variables whose text is latin-1 decoded bytes (header values); the others are UTF-8 with
# surrogate escapes (request line, URI, arguments).
_LATIN1 = frozenset({"host", "remote_user", "content_type", "content_length", "request_method"})
_LATIN1_PREFIXES = ("http_", "sent_http_", "upstream_http_", "cookie_")

_Part = tuple[str | None, str, "Getter | None", bool]  # (variable name | None, text, get, latin1)
_COMPILED: dict[int, tuple[LogFormat, list[_Part]]] = {}


def _compile(fmt: LogFormat) -> list[_Part]:
    hit = _COMPILED.get(id(fmt))
    if hit is not None and hit[0] is fmt:
        return hit[1]
    parts: list[_Part] = []
    for p in fmt.template.parts:
        if isinstance(p, Var):
            latin1 = p.name in _LATIN1 or p.name.startswith(_LATIN1_PREFIXES)
            parts.append((p.name, "", _getter(p.name), latin1))
        else:
            parts.append((None, p, None, False))
    _COMPILED[id(fmt)] = (fmt, parts)
    return parts


def _getter(name: str) -> Getter | None:
    """The variable's function, resolved once per format: a family member ($http_*, $arg_*,
    ...) gets its own, which defers to variables.get only when the request has named captures
    (they come first there)."""
    fn = VARIABLES.get(name)
    if fn is not None:
        return fn
    for prefix, family in _PREFIXED:
        if name.startswith(prefix):
            suffix = name[len(prefix):]
            if prefix == "http_" and suffix not in ("cookie", "x_forwarded_for"):
                header = suffix.replace("_", "-")
                return lambda r: get(r, name) if r.named_captures else r.headers.get(header)
            return lambda r: get(r, name) if r.named_captures else family(r, suffix)
    return None


# Variables read straight from the request in a compiled line (the same expressions as their
# functions in l7/variables.py, which a test compares); used only while VARIABLES still holds
# the function they stand for.
_INLINE_EXPRS = (
    ("remote_addr", "r.conn.remote_addr"), ("request", "r.request_line"),
    ("request_uri", "r.target"), ("uri", "r.uri"), ("args", "r.args"),
    ("request_method", "r.method"), ("time_local", "_DATES.time_local"),
    ("time_iso8601", "_DATES.time_iso8601"), ("body_bytes_sent", "str(r.body_bytes_sent)"),
    ("bytes_sent", "str(r.bytes_sent)"), ("request_length", "str(r.request_length)"))
_INLINE: dict[str, tuple[Getter | None, str]] = {
    name: (VARIABLES.get(name), expr) for name, expr in _INLINE_EXPRS}
_LINES: dict[int, tuple[LogFormat, Callable[[Request], bytes], bool]] = {}


def _plain_header(name: str) -> str | None:
    """The header a $http_NAME variable reads where _getter gives it its own function."""
    if name in VARIABLES or not name.startswith("http_") or \
            name[5:] in ("cookie", "x_forwarded_for"):
        return None
    return name[5:].replace("_", "-")


# What a line may hold to be the same for the express lane's requests of one client, head,
# answer, route and keep-alive decision within a second (l7/express.py sets r.log_memo to
# those; the access log then formats such a line once): no times finer than a second, no
# counters, nothing of the upstream attempt but its answer's headers.
_STABLE = frozenset({
    "remote_addr", "remote_user", "time_local", "time_iso8601", "request", "status",
    "body_bytes_sent", "bytes_sent", "request_uri", "uri", "document_uri", "args",
    "query_string", "is_args", "request_method", "server_protocol", "host", "server_name",
    "scheme", "proxy_host", "proxy_port", "request_length", "content_type", "content_length"})
_STABLE_PREFIXES = ("http_", "sent_http_", "upstream_http_", "cookie_", "arg_")


def _compiled(fmt: LogFormat) -> tuple[LogFormat, Callable[[Request], bytes], bool]:
    """The format's line function (line_writer) and whether it is stable, made once."""
    hit = _LINES.get(id(fmt))
    if hit is None or hit[0] is not fmt:
        names = [p.name for p in fmt.template.parts if isinstance(p, Var)]
        ok = all(n in _STABLE or n.startswith(_STABLE_PREFIXES) for n in names)
        hit = _LINES[id(fmt)] = (fmt, line_writer(fmt), ok)
    return hit


def stable(fmt: LogFormat) -> bool:
    return _compiled(fmt)[2]


def format_line(fmt: LogFormat, r: Request) -> bytes:
    """One log line (the format is compiled once: line_writer)."""
    return _compiled(fmt)[1](r)


def line_writer(fmt: LogFormat) -> Callable[[Request], bytes]:
    """The format compiled into one function of the request: the values are read into a tuple,
    checked with one regex search, and put into the literal text with one `%` (a value with a
    character to escape, or not ASCII, sends the line through the careful path)."""
    parts = _compile(fmt)
    mode = fmt.escape
    missing = "-" if mode == "default" else ""
    names: dict[str, Any] = {"_DATES": DATES, "_get": get, "_search": _SLOW[mode].search,
                             "_careful": lambda values: _careful(parts, values, mode, missing),
                             "_missing": missing}
    template: list[str] = []
    exprs: list[str] = []
    for i, (name, text, getter, _latin1) in enumerate(parts):
        if name is None:
            template.append(text.replace("%", "%%"))
            continue
        template.append("%s")
        inline = _INLINE.get(name)
        header = _plain_header(name)
        if inline is not None and inline[0] is not None and VARIABLES.get(name) is inline[0]:
            exprs.append(inline[1])
        elif header is not None:  # _getter's $http_NAME, without the call
            exprs.append(f"(_get(r, {name!r}) if r.named_captures else "
                         f"r.headers.get({header!r}))")
        else:
            names[f"_g{i}"] = getter if getter is not None else \
                (lambda r, name=name: get(r, name))
            exprs.append(f"_g{i}(r)")
    names["_template"] = "".join(template) + "\n"
    if not exprs:
        text = (names["_template"] % ()).encode("utf-8", "surrogateescape")
        return lambda r: text
    body = []
    for i, expr in enumerate(exprs):  # (a value that is never None is not tested)
        body.append(f"    v{i} = {expr}\n")
        if expr.startswith(("_g", "(_get")) or expr == "r.args":
            body.append(f"    if v{i} is None:\n        v{i} = _missing\n")
    values = ", ".join(f"v{i}" for i in range(len(exprs)))
    source = (
        "def line(r):\n" + "".join(body) +
        f"    values = ({values},)\n"
        "    if _search(''.join(values)) is None:\n"
        "        return (_template % values).encode('utf-8', 'surrogateescape')\n"
        "    return (_template % _careful(values)).encode('utf-8', 'surrogateescape')\n")
    exec(compile(source, f"<log_format {fmt.name}>", "exec"), names)
    line: Callable[[Request], bytes] = names["line"]
    return line


def _careful(parts: list[_Part], values: tuple[str, ...], mode: str,
             missing: str) -> tuple[str, ...]:
    """The values escaped one by one, each in the encoding its text came with."""
    slow = _SLOW[mode]
    out = []
    it = iter(values)
    for name, _text, _getter, latin1 in parts:
        if name is None:
            continue
        v = next(it)
        if slow.search(v) is None:
            out.append(v)
        else:
            raw = v.encode("latin-1", "replace") if latin1 else \
                v.encode("utf-8", "surrogateescape")
            out.append(escape(raw, mode).decode("utf-8", "surrogateescape"))
    return tuple(out)


def gzip_member(data: bytes, level: int) -> bytes:
    """ngx_http_log_gzip: one gzip member, with nginx's window and memory for small inputs."""
    wbits, memlevel = 15, 8
    while len(data) < (1 << (wbits - 1)) - 262:
        wbits -= 1
        memlevel -= 1
    z = zlib.compressobj(level, zlib.DEFLATED, wbits + 16, max(1, memlevel))
    return z.compress(data) + z.flush()


class Scheduler(Protocol):
    """What a log file needs from the event loop (asyncio's call_soon / call_later)."""

    def call_soon(self, callback: Callable[[], Any]) -> Any: ...

    def call_later(self, delay: float, callback: Callable[[], Any]) -> Any: ...


Report = Callable[[str, str], None]  # (level, message) into the error log


def _nothing(level: str, message: str) -> None:
    pass


def _open(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)


class LogFile:
    """One open log file (nginx's ngx_open_file_t) and its buffer."""

    def __init__(self, path: str, sched: Scheduler | None = None,
                 report: Report = _nothing) -> None:
        self.path = path
        self.sched = sched
        self.report = report
        self.size = 0  # buffer= (0: unbuffered)
        self.flush_after: float | None = None  # flush=
        self.gzip: int | None = None
        self.buf: list[bytes] = []
        self.used = 0
        self.timer: Any = None
        self.soon = False  # unbuffered lines wait for the end of this loop iteration
        self.failed_at = -60.0
        self.writes = 0  # write() calls made (tests and benchmarks count them)
        self.fd = -1
        self.open()

    def configure(self, size: int, flush: float | None, gzip: int | None) -> None:
        self.size, self.flush_after, self.gzip = size, flush, gzip

    def open(self) -> None:
        self.fd = 2 if self.path == "stderr" else _open(self.path)

    def write(self, line: bytes) -> None:
        size = self.size
        if not size:
            if self.sched is None:
                self._write(line)
                return
            self.buf.append(line)
            if not self.soon:
                self.soon = True
                self.sched.call_soon(self._end_of_iteration)
            return
        n = len(line)
        if n > size - self.used:
            self.flush()
        if n <= size - self.used:
            if not self.buf and self.flush_after and self.sched is not None:
                self.timer = self.sched.call_later(self.flush_after, self.flush)
            self.buf.append(line)
            self.used += n
            return
        self._write(line)  # larger than the whole buffer: written as it is

    def _end_of_iteration(self) -> None:
        self.soon = False
        self.flush()

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.buf:
            data = b"".join(self.buf) if len(self.buf) > 1 else self.buf[0]
            self.buf.clear()
            self.used = 0
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self.gzip:
            data = gzip_member(data, self.gzip)
        self.writes += 1
        try:
            n = os.write(self.fd, data)
            while n < len(data):  # a short write to a regular file: the rest, then done
                data = data[n:]
                n = os.write(self.fd, data)
        except OSError as e:
            now = time.monotonic()
            if now - self.failed_at > 59:  # nginx reports a failing log once a minute
                self.failed_at = now
                self.report("alert", f'write() to "{self.path}" failed ({e.errno}: '
                            f"{e.strerror})")

    def reopen(self) -> None:
        """USR1: what is buffered goes to the old file, then the path is opened again."""
        self.flush()
        if self.fd > 2:
            old = self.fd
            try:
                self.open()
            except OSError as e:
                self.fd = old
                self.report("emerg", f'open() "{self.path}" failed ({e.errno}: {e.strerror})')
                return
            os.close(old)

    def close(self) -> None:
        self.flush()
        if self.fd > 2:
            os.close(self.fd)
        self.fd = -1


class _FdCache:
    """open_log_file_cache: up to `max` fds of variable-named logs, closed after `inactive`."""

    def __init__(self, size: int, inactive: float) -> None:
        self.size = size
        self.inactive = inactive
        self.fds: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def fd(self, path: str, now: float) -> int:
        hit = self.fds.pop(path, None)
        fd = hit[0] if hit is not None else _open(path)
        self.fds[path] = (fd, now)
        while len(self.fds) > self.size or \
                next(iter(self.fds.values()))[1] < now - self.inactive:
            _, (old, _) = self.fds.popitem(last=False)
            os.close(old)
        return fd

    def close(self) -> None:
        for fd, _ in self.fds.values():
            os.close(fd)
        self.fds.clear()


def _unsafe(path: str) -> bool:
    """A name built from request data must not leave the directory nginx users expect."""
    return "\0" in path or "/../" in path or path.endswith("/..")


class AccessLogs:
    """Every access log file of a worker. Static paths are opened at start (before the worker
    drops privileges); paths with variables at each line, or through open_log_file_cache;
    `syslog:` targets are peers (l7/log_syslog.py) that take the same calls as a file."""

    def __init__(self, sched: Scheduler | None = None, report: Report = _nothing) -> None:
        self.sched = sched
        self.report = report
        self.files: dict[str, Any] = {}  # path -> LogFile | SyslogPeer
        self.caches: dict[tuple[int, float], _FdCache] = {}
        # lines of the express lane's requests (r.log_memo): (format, memo, client, second)
        self.lines: dict[tuple[int, Any, str, int], bytes] = {}
        # id(logs) -> (logs, ((file, format), ...) or None): log_memo's targets
        self.plans: dict[int, tuple[tuple[AccessLog, ...], tuple[Any, ...] | None]] = {}

    def prepare(self, logs: tuple[AccessLog, ...]) -> None:
        for log in logs:
            if log.path.is_static:
                f = self._file(log.path.static)
                if log.buffer:
                    f.configure(log.buffer, log.flush, log.gzip)

    def _file(self, path: str) -> Any:
        f = self.files.get(path)
        if f is None:
            if path.startswith("syslog:"):
                from halb.l7.log_syslog import SyslogPeer

                f = SyslogPeer(path, self.report)
            else:
                f = LogFile(path, self.sched, self.report)
            self.files[path] = f
        return f

    def log_memo(self, logs: tuple[AccessLog, ...], r: Request) -> None:
        """log() for a request of the express lane (with its r.log_memo), in fewer steps when
        every log is a stable format to a static path without if= (else as log())."""
        plan = self.plans.get(id(logs))
        if plan is None or plan[0] is not logs:
            plan = self._plan(logs)
        targets = plan[1]
        if targets is None:
            self.log(logs, r)
            return
        for f, fmt in targets:
            f.write(self._memo_line(fmt, r))

    def _memo_line(self, fmt: LogFormat, r: Request) -> bytes:
        """A stable format's line for a request with r.log_memo: formatted once per client,
        memo and second. (The format by identity: its dataclass hash walks the template.)"""
        key = (id(fmt), r.log_memo, r.conn.remote_addr, DATES.second)
        line = self.lines.get(key)
        if line is None:
            line = format_line(fmt, r)
            if len(self.lines) >= 4096:
                self.lines.clear()
            self.lines[key] = line
        return line

    def _plan(self, logs: tuple[AccessLog, ...]) -> tuple[tuple[AccessLog, ...],
                                                          tuple[Any, ...] | None]:
        targets: list[tuple[Any, LogFormat]] | None = []
        for log in logs:
            if log.condition is not None or not log.path.is_static or not stable(log.format):
                targets = None
                break
            try:
                f = self.files.get(log.path.static) or self._file(log.path.static)
            except OSError:
                targets = None  # (log() reports it, for each line)
                break
            targets.append((f, log.format))
        plan = (logs, tuple(targets) if targets is not None else None)
        if len(self.plans) >= 256:
            self.plans.clear()
        self.plans[id(logs)] = plan
        return plan

    def log(self, logs: tuple[AccessLog, ...], r: Request) -> None:
        for log in logs:
            if log.condition is not None:
                v = expand(log.condition, r)
                if not v or v == "0":
                    continue
            if log.path.is_static:
                try:
                    f = self.files.get(log.path.static) or self._file(log.path.static)
                except OSError as e:
                    self.report("crit", f'open() "{log.path.static}" failed ({e.errno}: '
                                f"{e.strerror})")
                    continue
                if r.log_memo is not None and stable(log.format):
                    f.write(self._memo_line(log.format, r))
                else:
                    f.write(format_line(log.format, r))
            else:
                self._write_named(expand(log.path, r), format_line(log.format, r), r)

    def _write_named(self, path: str, line: bytes, r: Request) -> None:
        if _unsafe(path):
            self.report("error", f'access log name "{path}" is not allowed')
            return
        conf = r.conf
        spec = conf.extra.get("open_log_file_cache") if conf is not None else None
        try:
            if spec:
                cache = self.caches.get(spec)
                if cache is None:
                    cache = self.caches[spec] = _FdCache(*spec)
                os.write(cache.fd(path, time.monotonic()), line)
                return
            fd = _open(path)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as e:
            self.report("crit", f'open() "{path}" failed ({e.errno}: {e.strerror})')

    def flush(self) -> None:
        for f in self.files.values():
            f.flush()

    def reopen(self) -> None:
        for f in self.files.values():
            f.reopen()
        for cache in self.caches.values():
            cache.close()

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files.clear()
        for cache in self.caches.values():
            cache.close()


class ErrorLogger:
    """nginx's error log: `YYYY/MM/DD HH:MM:SS [level] pid#tid: *conn message, context`; one
    logger writes a line to every target whose level admits it."""

    def __init__(self, logs: tuple[ErrorLog, ...] = ()) -> None:
        self.targets: list[tuple[int, int]] = []
        self.peers: list[tuple[Any, int]] = []  # syslog: (SyslogPeer, level limit)
        self.logs = logs or (ErrorLog("stderr", "error"),)
        self.open()

    def open(self) -> None:
        self.targets = []
        peers = []
        for log in self.logs:
            if log.path.startswith("syslog:"):
                from halb.l7.log_syslog import SyslogPeer

                peers.append((SyslogPeer(log.path), LEVELS[log.level]))
                continue
            fd = 2 if log.path == "stderr" else _open(log.path)
            self.targets.append((fd, LEVELS[log.level]))
        for peer, _ in self.peers:
            peer.close()
        self.peers = peers
        self.max_level = max(lim for _, lim in (*self.targets, *self.peers))

    def paths(self) -> list[str]:
        return [log.path for log in self.logs
                if log.path != "stderr" and not log.path.startswith("syslog:")]

    def reopen(self) -> None:
        old = [fd for fd, _ in self.targets if fd > 2]
        try:
            self.open()
        except OSError as e:
            self.log("emerg", f'open() "{e.filename}" failed ({e.errno}: {e.strerror})')
            return
        for fd in old:
            os.close(fd)

    def enabled(self, level: str) -> bool:
        return LEVELS[level] <= self.max_level

    def log(self, level: str, message: str, conn: int | None = None,
            context: str = "") -> None:
        n = LEVELS[level]
        if n > self.max_level:
            return
        pid = os.getpid()
        star = f"*{conn} " if conn is not None else ""
        line = (f"{time.strftime('%Y/%m/%d %H:%M:%S')} [{level}] {pid}#{pid}: {star}{message}"
                f"{context}\n").encode("utf-8", "backslashreplace")
        for fd, lim in self.targets:
            if n <= lim:
                try:
                    os.write(fd, line)
                except OSError:
                    pass
        for peer, lim in self.peers:
            if n <= lim:
                peer.send(line, n)

    def close(self) -> None:
        for peer, _ in self.peers:
            peer.close()
        for fd, _ in self.targets:
            if fd > 2:
                os.close(fd)
        self.targets = []


def log_paths(config: NginxConfig) -> list[str]:
    """Every log file a configuration names (static access_log paths, error_log files)."""
    paths = [log.path for log in config.error_log]
    confs: list[LocConf] = []
    http = config.http
    if http is not None:
        confs.append(http.conf)

        def walk(locs: tuple[Location, ...]) -> None:
            for loc in locs:
                confs.append(loc.conf)
                walk(loc.children)

        for srv in http.servers:
            confs.append(srv.conf)
            walk(srv.locations)
            walk(tuple(srv.named_locations.values()))
    for conf in confs:
        paths.extend(log.path.static for log in conf.access_log or () if log.path.is_static)
        paths.extend(log.path for log in conf.error_log or ())
    return [p for p in dict.fromkeys(paths) if p != "stderr" and not p.startswith("syslog:")]


class LogFileError(ConfigError):
    """A log file that cannot be opened (the configuration itself parsed)."""


def open_log_files(config: NginxConfig) -> None:
    """ngx_init_cycle opens every log file before the configuration is used (nginx -t too,
    creating them): a file that cannot be opened is an [emerg], not a worker that dies."""
    for path in log_paths(config):
        try:
            os.close(_open(path))
        except OSError as e:
            raise LogFileError(f'open() "{path}" failed ({e.errno}: {e.strerror})') from None


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
