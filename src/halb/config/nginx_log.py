"""The directives of nginx's log module (log_format, access_log, open_log_file_cache), the core's
error_log, and stub_status: one handler each, registered in config/nginx.py's table (PURE).

Checks and messages are those of ngx_http_log_module.c / ngx_log.c / ngx_http_stub_status_module.c:
a buffer is a property of the file, so two buffered access_log lines naming one file must agree
("already defined with conflicting parameters"); a path with variables cannot be buffered; a
format is looked up case-insensitively; `access_log off` anywhere in a block turns off every
access_log of that block.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Any

from halb.config.errors import ConfigError, Pos
from halb.config.lexer import Statement
from halb.config.model import AccessLog, ErrorLog, LogFormat
from halb.config.nginx import (
    ANY_HTTP,
    HTTP,
    LIF,
    LOC,
    MAIN,
    NOARGS,
    ONEMORE,
    SRV,
    TAKE1,
    TAKE1234,
    TWOMORE,
    Block,
    Builder,
    directive,
)
from halb.config.values import parse_size, parse_time

LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")
_DEBUG_LEVELS = ("debug_core", "debug_alloc", "debug_mutex", "debug_event", "debug_http",
                 "debug_mail", "debug_stream")
GZIP_BUFFER = 64 * 1024  # nginx's buffer for `gzip` without buffer=

FACILITIES = ("kern", "user", "mail", "daemon", "auth", "intern", "lpr", "news", "uucp",
              "clock", "authpriv", "ftp", "ntp", "audit", "alert", "cron", "local0", "local1",
              "local2", "local3", "local4", "local5", "local6", "local7")
SEVERITIES = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")


@dataclass(frozen=True, slots=True)
class Syslog:
    """`syslog:server=...[,facility=][,severity=][,tag=][,nohostname]` (ngx_syslog.c)."""

    host: str  # an address, or "unix:" + a path
    port: int = 514
    facility: int = 23  # local7
    severity: int = 6  # info (error_log: the line's level)
    tag: str = "nginx"
    nohostname: bool = False


def parse_syslog(spec: str, pos: Pos | None = None) -> Syslog:
    """ngx_syslog_parse_args, with its messages. halb resolves no host names while reading the
    configuration: an address, localhost or a unix: socket."""
    found: dict[str, Any] = {}
    for item in spec[len("syslog:"):].split(","):
        if item.startswith("server="):
            if "server" in found:
                raise ConfigError('duplicate syslog "server"', pos)
            found["server"] = _syslog_server(item[7:], pos)
        elif item.startswith(("facility=", "severity=")):
            key, value = item.split("=", 1)
            if key in found:
                raise ConfigError(f'duplicate syslog "{key}"', pos)
            names = FACILITIES if key == "facility" else SEVERITIES
            if value not in names:
                raise ConfigError(f'unknown syslog {key} "{value}"', pos)
            found[key] = names.index(value)
        elif item.startswith("tag="):
            if "tag" in found:
                raise ConfigError('duplicate syslog "tag"', pos)
            tag = item[4:]
            if len(tag) > 32:
                raise ConfigError("syslog tag length exceeds 32", pos)
            if not re.fullmatch(r"[A-Za-z0-9_]*", tag):
                raise ConfigError('syslog "tag" only allows alphanumeric characters and '
                                  "underscore", pos)
            found["tag"] = tag
        elif item == "nohostname":
            found["nohostname"] = True
        else:
            raise ConfigError(f'unknown syslog parameter "{item}"', pos)
    if "server" not in found:
        raise ConfigError("no syslog server specified", pos)
    host, port = found.pop("server")
    return Syslog(host, port, **found)


def _syslog_server(url: str, pos: Pos | None) -> tuple[str, int]:
    if url.startswith("unix:"):
        if len(url) == 5:
            raise ConfigError(f'no path in the unix domain socket in syslog server "{url}"',
                              pos)
        return url, 0
    host, port = url, 514
    m = re.fullmatch(r"\[([^\]]*)\](?::(.*))?|([^:]*)(?::(.*))?", url)
    if m:
        host = m.group(1) if m.group(1) is not None else m.group(3)
        text = m.group(2) if m.group(1) is not None else m.group(4)
        if text is not None:
            if not text.isdigit() or not 1 <= int(text) <= 65535:
                raise ConfigError(f'invalid port in syslog server "{url}"', pos)
            port = int(text)
    if not host:
        raise ConfigError(f'no host in syslog server "{url}"', pos)
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f'host not found in syslog server "{url}"', pos) from None
    return host, port


@directive("error_log", MAIN | ANY_HTTP, ONEMORE)
def _error_log(b: Builder, blk: Block, st: Statement) -> None:
    path = st.args[0].value
    level = ""
    for a in st.args[1:]:  # nginx's ngx_log_set_levels: one level, or debug_* ones
        if a.value in LEVELS:
            if level:
                raise ConfigError(f'duplicate log level "{a.value}"', st.end)
            level = a.value
        elif a.value in _DEBUG_LEVELS and level in ("", "debug_"):
            level = "debug_"
        else:
            raise ConfigError(f'invalid log level "{a.value}"', st.end)
    level = {"": "error", "debug_": "debug"}.get(level, level)
    if path.startswith("syslog:"):
        parse_syslog(path, st.end)
    elif path != "stderr":
        path = b.path(path)
    blk.settings.setdefault("error_log", []).append(ErrorLog(path, level))


@directive("log_format", HTTP, TWOMORE)
def _log_format(b: Builder, blk: Block, st: Statement) -> None:
    name = st.args[0].value
    if name in b.log_formats:
        raise ConfigError(f'duplicate "log_format" name "{name}"', st.end)
    parts = st.values[1:]
    escape = "default"
    if parts and parts[0].startswith("escape="):
        escape = parts[0][7:]
        if escape not in ("default", "json", "none"):
            raise ConfigError(f'unknown log format escaping "{escape}"', st.end)
        parts = parts[1:]
    for part in parts:
        _check_log_variables(part, st)
    b.log_formats[name] = LogFormat(name, b.template("".join(parts), st.end), escape)


_NAME = re.compile(r"[A-Za-z0-9_]*")


def _check_log_variables(part: str, st: Statement) -> None:
    """ngx_http_log_compile's own reading of "$name" / "${name}" in one log_format argument."""
    i = 0
    while (i := part.find("$", i)) >= 0:
        rest, i = part[i:], i + 1
        bracket = part[i:i + 1] == "{"
        i += bracket
        if i >= len(part):
            raise ConfigError(f'invalid parameter "{rest}"', st.end)
        m = _NAME.match(part, i)
        assert m is not None
        i = m.end()
        if bracket:
            if part[i:i + 1] != "}":
                raise ConfigError(f'the closing bracket in "{m.group()}" variable is missing',
                                  st.end)
            i += 1
        if not m.group():
            raise ConfigError(f'invalid parameter "{rest}"', st.end)


def _format(b: Builder, name: str) -> LogFormat | None:
    """ngx_http_log_set_log finds a format with ngx_strcasecmp."""
    fmt = b.log_formats.get(name)
    if fmt is None:
        low = name.lower()
        fmt = next((f for n, f in b.log_formats.items() if n.lower() == low), None)
    return fmt


def _buffers(b: Builder) -> dict[str, tuple[int, float | None, int | None]]:
    """The buffer each buffered log file got from its first buffered access_log."""
    found: dict[str, tuple[int, float | None, int | None]] | None = \
        b.__dict__.get("log_buffers")
    if found is None:
        found = b.__dict__["log_buffers"] = {}
    return found


@directive("access_log", ANY_HTTP | LIF, ONEMORE)
def _access_log(b: Builder, blk: Block, st: Statement) -> None:
    if "access_log" not in blk.seen:
        blk.seen["access_log"] = st
        blk.settings["access_log"] = []
    logs: list[AccessLog] = blk.settings["access_log"]
    path = st.args[0].value
    if path == "off":
        if len(st.args) > 1:
            raise ConfigError('invalid parameter "' + st.args[1].value + '"', st.end)
        blk.settings["access_log"] = []
        blk.seen["access_log:off"] = st
        return
    syslog = path.startswith("syslog:")
    if syslog:  # (nginx reads the peer before the format and the options)
        parse_syslog(path, st.end)
    fmt_name = st.args[1].value if len(st.args) > 1 else "combined"
    fmt = _format(b, fmt_name)
    if fmt is None:
        raise ConfigError(f'unknown log format "{fmt_name}"', st.end)
    opts: dict[str, Any] = {}
    for a in st.args[2:]:
        v = a.value
        if v.startswith("buffer="):
            size = parse_size(v[7:])
            if not size:
                raise ConfigError(f'invalid buffer size "{v[7:]}"', st.end)
            opts["buffer"] = size
        elif v.startswith("flush="):
            t = parse_time(v[6:])
            if not t:
                raise ConfigError(f'invalid flush time "{v[6:]}"', st.end)
            opts["flush"] = t
        elif v == "gzip" or v.startswith("gzip="):
            level = int(v[5:]) if v.startswith("gzip=") and v[5:].isdigit() else 1
            if v != "gzip" and not (v[5:].isdigit() and 1 <= level <= 9):
                raise ConfigError(f'invalid compression level "{v[5:]}"', st.end)
            opts["gzip"] = level
            opts.setdefault("buffer", GZIP_BUFFER)
        elif v.startswith("if="):
            opts["condition"] = b.template(v[3:], st.end)
        else:
            raise ConfigError(f'invalid parameter "{v}"', st.end)
    if opts.get("flush") and not opts.get("buffer"):
        raise ConfigError(f'no buffer is defined for access_log "{path}"', st.end)
    if not syslog:  # ngx_conf_open_file / ngx_conf_full_name: also with variables, and
        # "stderr" is a file of that name here (only error_log knows stderr)
        path = b.path(path) if path != "stderr" else os.path.join(b.prefix, "stderr")
    if opts.get("buffer"):
        if "$" in path:
            raise ConfigError("buffered logs cannot have variables in name", st.end)
        if syslog:
            raise ConfigError("logs to syslog cannot be buffered", st.end)
        params = (opts["buffer"], opts.get("flush"), opts.get("gzip"))
        known = _buffers(b).setdefault(path, params)
        if known != params:
            raise ConfigError(f'access_log "{st.args[0].value}" already defined with '
                              "conflicting parameters", st.end)
    log = AccessLog(b.template(path, st.end), fmt, **opts)
    if "access_log:off" not in blk.seen:
        logs.append(log)


@directive("open_log_file_cache", ANY_HTTP, TAKE1234)
def _open_log_file_cache(b: Builder, blk: Block, st: Statement) -> None:
    """open_log_file_cache max=N [inactive=time] [min_uses=N] [valid=time] | off: the fds of
    access logs whose path has variables are kept open (max, inactive); otherwise each line
    opens and closes its file, as in nginx."""
    if "open_log_file_cache" in blk.seen:
        raise b.err(st, "is duplicate")
    blk.seen["open_log_file_cache"] = st
    cache: dict[str, Any] = {"max": 0, "inactive": 10.0, "min_uses": 1, "valid": 60.0}
    off = False
    for a in st.args:
        v = a.value
        key, eq, value = v.partition("=")
        ok = True
        if eq and key in ("max", "min_uses"):
            ok = value.isdigit()
            if ok:
                cache[key] = int(value)
        elif eq and key in ("inactive", "valid"):
            t = parse_time(value, allow_ms=False)
            ok = t is not None
            if ok:
                cache[key] = t
        elif v == "off":
            off = True
        else:
            ok = False
        if not ok:
            raise ConfigError(f'invalid "open_log_file_cache" parameter "{v}"', st.end)
    if off:
        blk.settings["open_log_file_cache"] = None
        return
    if not cache["max"]:
        raise ConfigError('"open_log_file_cache" must have "max" parameter', st.end)
    blk.settings["open_log_file_cache"] = (cache["max"], cache["inactive"])


@directive("stub_status", SRV | LOC, NOARGS | TAKE1)
def _stub_status(b: Builder, blk: Block, st: Statement) -> None:
    """ngx_http_set_stub_status: the location's content handler (any argument is ignored,
    "stub_status on;" of the older syntax included); not inherited by nested locations."""
    blk.settings["stub_status"] = True
