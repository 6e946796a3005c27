"""The directives of nginx's proxy cache (ngx_http_proxy_module's proxy_cache_*, the http
upstream's cache zones) and of the third-party ngx_cache_purge module (PURE).

proxy_cache_path makes a cache zone (CachePath) kept in the http block's settings under
"proxy_cache_path" (name → CachePath, so every level sees the same mapping); the per-location
settings are plain `extra` keys merged down like every proxy_* directive. A proxy_cache naming an
unknown zone is refused when the http block ends, as nginx refuses it when it merges.

Messages are nginx's own wording (checked against nginx 1.22 `nginx -t`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from halb.config.errors import ConfigError
from halb.config.lexer import Statement
from halb.config.nginx import (
    HTTP,
    LOC,
    ONEMORE,
    SRV,
    TAKE1,
    TWOMORE,
    Block,
    Builder,
    directive,
)
from halb.config.nginx_slots import flag_slot, time_slot
from halb.config.template import compile_template
from halb.config.values import parse_flag, parse_size, parse_time

ANY_LOC = HTTP | SRV | LOC

DEFAULT_KEY = compile_template("$scheme$proxy_host$request_uri")
MIN_KEYS_ZONE = 8 * 4096  # nginx: two pages for the slab + the tree


@dataclass(frozen=True, slots=True)
class CachePath:
    """One `proxy_cache_path`: where the files live and how the zone is sized."""

    path: str
    name: str
    size: int  # keys_zone size in bytes (about 8k keys per megabyte, as nginx)
    levels: tuple[int, ...] = ()
    inactive: float = 600.0
    max_size: int = 0  # 0: unbounded
    min_free: int = 0
    use_temp_path: bool = True
    manager_files: int = 100
    manager_sleep: float = 0.05
    manager_threshold: float = 0.2
    loader_files: int = 100


USE_STALE = frozenset({"error", "timeout", "invalid_header", "updating", "http_500", "http_502",
                       "http_503", "http_504", "http_403", "http_404", "http_429", "off"})
IGNORE_HEADERS = frozenset({"x-accel-redirect", "x-accel-expires", "x-accel-limit-rate",
                            "x-accel-buffering", "x-accel-charset", "expires", "cache-control",
                            "set-cookie", "vary"})


def _err(msg: str, st: Statement) -> ConfigError:
    return ConfigError(msg, st.end)


@directive("proxy_cache_path", HTTP, TWOMORE)
def _proxy_cache_path(b: Builder, blk: Block, st: Statement) -> None:
    values = st.values
    path = b.path(values[0]).rstrip("/") or "/"
    zones: dict[str, CachePath] = blk.settings.setdefault("proxy_cache_path", {})
    opts: dict[str, Any] = {}
    name = ""
    size = 0
    for v in values[1:]:
        key, eq, val = v.partition("=")
        if not eq:
            raise _err(f'invalid parameter "{v}"', st)
        if key == "levels":
            parts = val.split(":")
            if len(parts) > 3 or not all(p in ("1", "2") for p in parts):
                raise _err(f'invalid "levels" "{v}"', st)
            opts["levels"] = tuple(int(p) for p in parts)
        elif key == "keys_zone":
            name, colon, sz = val.partition(":")
            parsed = parse_size(sz) if colon else None
            if parsed is None:
                raise _err(f'invalid keys zone size "{v}"', st)
            if parsed < MIN_KEYS_ZONE:
                raise _err(f'keys zone "{v}" is too small', st)
            size = parsed
        elif key == "use_temp_path":
            flag = parse_flag(val)
            if flag is None:
                raise _err(f'invalid use_temp_path value "{v}", it must be "on" or "off"', st)
            opts["use_temp_path"] = flag
        elif key in ("inactive", "manager_sleep", "manager_threshold", "loader_sleep",
                     "loader_threshold", "purger_sleep", "purger_threshold"):
            t = parse_time(val, allow_ms=key != "inactive")
            if t is None:
                raise _err(f'invalid {key} value "{v}"', st)
            if key in ("inactive", "manager_sleep", "manager_threshold"):
                opts[key] = t
        elif key in ("max_size", "min_free"):
            n = parse_size(val, allow_g=True)
            if n is None:
                raise _err(f'invalid {key} value "{v}"', st)
            opts[key] = n
        elif key in ("manager_files", "loader_files", "purger_files"):
            if not val.isdigit():
                raise _err(f'invalid {key} value "{v}"', st)
            if key != "purger_files":
                opts[key] = int(val)
        elif key == "purger":
            if parse_flag(val) is None:
                raise _err(f'invalid purger value "{v}", it must be "on" or "off"', st)
        else:
            raise _err(f'invalid parameter "{v}"', st)
    if not name or not size:
        raise _err('"proxy_cache_path" must have "keys_zone" parameter', st)
    if name in zones:
        raise _err(f'duplicate zone "{name}"', st)
    where = b.__dict__.setdefault("cache_paths", {})
    if path in where:
        raise _err(f'the same path name "{path}" used in {where[path]} and in '
                   f"{st.end.file}:{st.end.line}", st)
    where[path] = f"{st.end.file}:{st.end.line}"
    zones[name] = CachePath(path, name, size, **opts)


@directive("proxy_cache", ANY_LOC, TAKE1)
def _proxy_cache(b: Builder, blk: Block, st: Statement) -> None:
    value = st.args[0].value
    if "$" in value:  # the zone is chosen per request (l7/cache.py)
        b.set(blk, st, "proxy_cache", b.template(st.args[0], st.end))
        return
    b.set(blk, st, "proxy_cache", None if value == "off" else value)
    if value != "off":
        b.__dict__.setdefault("cache_uses", []).append((value, st))


def check_zones(b: Builder, hb: Block) -> None:
    """At the end of http: every proxy_cache / proxy_cache_purge names a zone."""
    zones = hb.settings.get("proxy_cache_path", {})
    for name, st in b.__dict__.get("cache_uses", []):
        if name not in zones:  # nginx finds out when it merges: at the "}" of http
            where = getattr(b, "http_close", None) or st.end
            raise ConfigError(f'"proxy_cache" zone "{name}" is unknown', where)


@directive("proxy_cache_key", ANY_LOC, TAKE1)
def _proxy_cache_key(b: Builder, blk: Block, st: Statement) -> None:
    b.set(blk, st, "proxy_cache_key", b.template(st.args[0], st.end))


@directive("proxy_cache_valid", ANY_LOC, ONEMORE)
def _proxy_cache_valid(b: Builder, blk: Block, st: Statement) -> None:
    values = st.values
    t = parse_time(values[-1], allow_ms=False)
    if t is None:
        raise _err(f'invalid time value "{values[-1]}"', st)
    codes: list[int] = []
    for v in values[:-1] or ("200", "301", "302"):
        if v == "any":
            codes.append(0)
            continue
        if not v.isdigit() or not 100 <= int(v) <= 599:
            raise _err(f'invalid status "{v}"', st)
        codes.append(int(v))
    if "proxy_cache_valid" not in blk.seen:
        blk.seen["proxy_cache_valid"] = st
        blk.settings["proxy_cache_valid"] = ()
    blk.settings["proxy_cache_valid"] += tuple((c, int(t)) for c in codes)


def _set_of(name: str, allowed: frozenset[str] | None, lower: bool = False,
            always: frozenset[str] = frozenset()) -> None:
    def handler(b: Builder, blk: Block, st: Statement) -> None:
        out = set(always)
        for v in st.values:
            w = v.lower() if lower else v
            if allowed is not None and w not in allowed:
                raise _err(f'invalid value "{v}"', st)
            out.add(w)
        if "off" in out and name == "proxy_cache_use_stale":
            out = set()
        b.set(blk, st, name, frozenset(out))

    directive(name, ANY_LOC, ONEMORE)(handler)


_set_of("proxy_cache_use_stale", USE_STALE)
_set_of("proxy_cache_methods", frozenset({"GET", "HEAD", "POST"}),
        always=frozenset({"GET", "HEAD"}))
_set_of("proxy_ignore_headers", IGNORE_HEADERS, lower=True)


def _templates(name: str) -> None:
    def handler(b: Builder, blk: Block, st: Statement) -> None:
        if name not in blk.seen:
            blk.seen[name] = st
            blk.settings[name] = ()
        blk.settings[name] += tuple(b.template(a, st.end) for a in st.args)

    directive(name, ANY_LOC, ONEMORE)(handler)


_templates("proxy_cache_bypass")
_templates("proxy_no_cache")


for _n in ("proxy_cache_lock", "proxy_cache_revalidate", "proxy_cache_background_update",
           "proxy_cache_convert_head"):
    flag_slot(_n, ANY_LOC)
time_slot("proxy_cache_lock_timeout", ANY_LOC)
time_slot("proxy_cache_lock_age", ANY_LOC)


@directive("proxy_cache_min_uses", ANY_LOC, TAKE1)
def _proxy_cache_min_uses(b: Builder, blk: Block, st: Statement) -> None:
    v = st.args[0].value
    if not v.isdigit():
        raise b.err(st, "invalid number")
    b.set(blk, st, "proxy_cache_min_uses", int(v))


@directive("proxy_cache_max_range_offset", ANY_LOC, TAKE1)
def _proxy_cache_max_range_offset(b: Builder, blk: Block, st: Statement) -> None:
    if parse_size(st.args[0].value, allow_g=True) is None:
        raise b.err(st, "invalid value")
    b.once(blk, st)  # accepted: halb caches whole responses only (Range is not sent up)


# -- ngx_cache_purge -----------------------------------------------------------------------

@directive("proxy_cache_purge", ANY_LOC, ONEMORE)
def _proxy_cache_purge(b: Builder, blk: Block, st: Statement) -> None:
    """`proxy_cache_purge ZONE KEY` (a location that purges) or `proxy_cache_purge on|off|METHOD
    [from all|ADDR...]` (that method purges in a caching location), as ngx_cache_purge 2.3
    reads them: two arguments are the location form, one or three and more the method form."""
    values = st.values
    if len(values) == 2:
        if blk.ctx != LOC:
            raise b.err(st, "is not allowed here")
        b.set(blk, st, "proxy_cache_purge", (values[0], b.template(st.args[1], st.end)))
        b.__dict__.setdefault("cache_uses", []).append((values[0], st))
        return
    if len(values) > 2 and values[1] != "from":
        raise _err(f'invalid parameter "{values[1]}", expected "from" keyword', st)
    allowed: tuple[Any, ...] | None = None
    if len(values) > 2 and "all" not in values[2:]:
        nets = []
        for v in values[2:]:
            try:
                nets.append(ipaddress.ip_network(v, strict=False))
            except ValueError:
                raise _err(f'invalid parameter "{v}"', st) from None
        allowed = tuple(nets)
    method = values[0]
    if method.lower() == "off":
        b.set(blk, st, "proxy_cache_purge_method", None)
        return
    b.set(blk, st, "proxy_cache_purge_method",
          ("PURGE" if method.lower() == "on" else method, allowed))
