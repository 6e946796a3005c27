"""The output filters' directives: gzip (ngx_http_gzip_filter_module and the gzip_* settings of
the http core), add_header and expires (ngx_http_headers_filter_module) (PURE).

The handlers store into the block's settings (they merge like every other setting: a level that
sets one replaces its parent's, and `add_header` is one list, so a level with its own
add_header drops all of its parent's, as nginx's merge does). `filters_for()` turns a
location's merged settings into one frozen `Filters` value, or None when the location has no
output filter at all: the hot path then tests a single attribute (LocConf.filters) and pays
nothing more. l7/filters/ reads these values.

Messages are `nginx -t`'s (checked against nginx 1.22).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from halb.config.errors import ConfigError
from halb.config.lexer import Statement
from halb.config.nginx import (
    ANY_HTTP,
    FLAG,
    LIF,
    ONEMORE,
    TAKE1,
    TAKE2,
    TAKE12,
    TAKE23,
    Block,
    Builder,
    directive,
)
from halb.config.template import Template
from halb.config.values import parse_flag, parse_size, parse_time

# gzip_proxied values (ngx_http_gzip_proxied_mask)
PROXIED = ("off", "expired", "no-cache", "no-store", "private", "no_last_modified", "no_etag",
           "auth", "any")

# expires kinds (ngx_http_expires_t)
EPOCH, MAX, ACCESS, MODIFIED, DAILY, OFF = "epoch", "max", "access", "modified", "daily", "off"


@dataclass(frozen=True, slots=True)
class AddHeader:
    """One `add_header NAME VALUE [always]`."""

    name: str
    value: Template
    always: bool
    low: str  # the name in lower case (ETag, Last-Modified and Cache-Control are special)


@dataclass(frozen=True, slots=True)
class Expires:
    """`expires [modified] time|@time|-time|epoch|max|off`; `value` when it has variables
    (parsed per request, a bad value then sets nothing)."""

    kind: str  # epoch max access modified daily off
    seconds: int = 0
    value: Template | None = None


@dataclass(frozen=True, slots=True)
class Gzip:
    """A location's gzip settings (gzip on)."""

    types: frozenset[str] | None  # lower-case MIME types; None: "*" (any)
    min_length: int = 20
    level: int = 1
    vary: bool = False
    proxied: frozenset[str] = frozenset({"off"})
    disable: tuple[re.Pattern[str], ...] = ()
    disable_msie6: bool = False
    http_version: int = 11  # 10 or 11
    wbits: int = 15
    memlevel: int = 8


@dataclass(frozen=True, slots=True)
class Filters:
    """What the output filters of one location do (l7/filters/)."""

    headers: tuple[AddHeader, ...] = ()
    expires: Expires | None = None
    gzip: Gzip | None = None


def parse_expires(text: str, modified: bool) -> tuple[str, int] | str:
    """ngx_http_parse_expires: (kind, seconds), or the error text."""
    if not modified and text in ("epoch", "max", "off"):
        return text, 0
    kind = MODIFIED if modified else ACCESS
    minus = False
    if text.startswith("@"):
        if modified:
            return 'daily time cannot be used with "modified" parameter'
        kind = DAILY
        text = text[1:]
    elif text.startswith("+"):
        text = text[1:]
    elif text.startswith("-"):
        text = text[1:]
        minus = True
    secs = parse_time(text, allow_ms=False)
    if secs is None:
        return "invalid value"
    n = int(secs)
    if kind == DAILY and n > 24 * 60 * 60:
        return "daily time value must be less than 24 hours"
    return kind, -n if minus else n


# -- directives ------------------------------------------------------------------------------

_GZIP = ANY_HTTP | LIF


@directive("gzip", _GZIP, FLAG)
def _gzip(b: Builder, blk: Block, st: Statement) -> None:
    b.set(blk, st, "gzip", parse_flag(st.args[0].value))


@directive("gzip_vary", ANY_HTTP, FLAG)
def _gzip_vary(b: Builder, blk: Block, st: Statement) -> None:
    b.set(blk, st, "gzip_vary", parse_flag(st.args[0].value))


@directive("gzip_types", ANY_HTTP, ONEMORE)
def _gzip_types(b: Builder, blk: Block, st: Statement) -> None:
    """ngx_http_types_slot: text/html is always in; "*" means any type; a later gzip_types of
    the same level adds to the list."""
    types: set[str] | None = blk.settings.get("gzip_types", {"text/html"})
    for a in st.values:
        if a == "*":
            types = None
            continue
        if types is None:
            continue
        low = a.lower()
        if low in types:
            b.warn(f'duplicate MIME type "{low}"', st.end)
            continue
        types.add(low)
    blk.settings["gzip_types"] = types


def _size_setting(b: Builder, blk: Block, st: Statement, key: str) -> int:
    v = parse_size(st.args[0].value)
    if v is None:
        raise b.err(st, "invalid value")
    b.set(blk, st, key, v)
    return v


@directive("gzip_min_length", ANY_HTTP, TAKE1)
def _gzip_min_length(b: Builder, blk: Block, st: Statement) -> None:
    _size_setting(b, blk, st, "gzip_min_length")


@directive("gzip_comp_level", ANY_HTTP, TAKE1)
def _gzip_comp_level(b: Builder, blk: Block, st: Statement) -> None:
    v = st.args[0].value
    b.once(blk, st)
    if not v.isdigit():
        raise b.err(st, "invalid number")
    if not 1 <= int(v) <= 9:
        raise ConfigError("value must be between 1 and 9", st.end)
    blk.settings["gzip_comp_level"] = int(v)


@directive("gzip_window", ANY_HTTP, TAKE1)
def _gzip_window(b: Builder, blk: Block, st: Statement) -> None:
    v = _size_setting(b, blk, st, "gzip_window")
    wbits = {512 << i: 9 + i for i in range(7)}.get(v)
    if wbits is None:
        raise b.err(st, "must be 512, 1k, 2k, 4k, 8k, 16k, or 32k")
    blk.settings["gzip_window"] = wbits


@directive("gzip_hash", ANY_HTTP, TAKE1)
def _gzip_hash(b: Builder, blk: Block, st: Statement) -> None:
    v = _size_setting(b, blk, st, "gzip_hash")
    memlevel = {512 << i: 1 + i for i in range(9)}.get(v)
    if memlevel is None:
        raise b.err(st, "must be 512, 1k, 2k, 4k, 8k, 16k, 32k, 64k, or 128k")
    blk.settings["gzip_hash"] = memlevel


@directive("gzip_buffers", ANY_HTTP, TAKE2)
def _gzip_buffers(b: Builder, blk: Block, st: Statement) -> None:
    """ngx_conf_set_bufs_slot: checked, then unused (halb's zlib output is not pooled)."""
    n, size = st.args[0].value, parse_size(st.args[1].value)
    if not n.isdigit() or int(n) == 0 or not size:
        raise b.err(st, "invalid value")
    b.set(blk, st, "gzip_buffers", (int(n), size))


@directive("postpone_gzipping", ANY_HTTP, TAKE1)
def _postpone_gzipping(b: Builder, blk: Block, st: Statement) -> None:
    _size_setting(b, blk, st, "postpone_gzipping")


@directive("gzip_no_buffer", ANY_HTTP, FLAG)
def _gzip_no_buffer(b: Builder, blk: Block, st: Statement) -> None:
    b.set(blk, st, "gzip_no_buffer", parse_flag(st.args[0].value))


@directive("gzip_http_version", ANY_HTTP, TAKE1)
def _gzip_http_version(b: Builder, blk: Block, st: Statement) -> None:
    v = st.args[0].value
    if v not in ("1.0", "1.1"):
        raise ConfigError(f'invalid value "{v}"', st.end)
    b.set(blk, st, "gzip_http_version", 10 if v == "1.0" else 11)


@directive("gzip_proxied", ANY_HTTP, ONEMORE)
def _gzip_proxied(b: Builder, blk: Block, st: Statement) -> None:
    """ngx_conf_set_bitmask_slot: values add up, also over several directives of a level."""
    have: set[str] = blk.settings.setdefault("gzip_proxied", set())
    for v in st.values:
        if v not in PROXIED:
            raise ConfigError(f'invalid value "{v}"', st.end)
        if v in have:
            b.warn(f'duplicate value "{v}"', st.end)
        have.add(v)


@directive("gzip_disable", ANY_HTTP, ONEMORE)
def _gzip_disable(b: Builder, blk: Block, st: Statement) -> None:
    """Case-insensitive regexes on User-Agent; "msie6" and "degradation" are keywords."""
    from halb.config.nginx_slots import pcre_error

    pats: list[re.Pattern[str]] = blk.settings.setdefault("gzip_disable", [])
    for v in st.values:
        if v == "msie6":
            blk.settings["gzip_disable_msie6"] = True
            continue
        if v == "degradation":
            continue
        try:
            pats.append(re.compile(v, re.IGNORECASE))
        except re.error as e:
            raise ConfigError(pcre_error(e, v), st.end) from None


@directive("add_header", ANY_HTTP | LIF, TAKE23)
def _add_header(b: Builder, blk: Block, st: Statement) -> None:
    name = st.args[0].value
    value = b.template(st.args[1], st.end)
    always = False
    if len(st.args) == 3:
        if st.args[2].value != "always":
            raise ConfigError(f'invalid parameter "{st.args[2].value}"', st.end)
        always = True
    headers: list[AddHeader] = blk.settings.setdefault("add_header", [])
    headers.append(AddHeader(name, value, always, name.lower()))


@directive("expires", ANY_HTTP | LIF, TAKE12)
def _expires(b: Builder, blk: Block, st: Statement) -> None:
    b.once(blk, st)
    modified = False
    if len(st.args) == 2:
        if st.args[0].value != "modified":
            raise b.err(st, "invalid value")
        modified = True
    raw = st.args[-1]
    tpl = b.template(raw, st.end)
    if not tpl.is_static:
        blk.settings["expires"] = Expires(MODIFIED if modified else ACCESS, 0, tpl)
        return
    parsed = parse_expires(tpl.static, modified)
    if isinstance(parsed, str):
        raise b.err(st, parsed)
    blk.settings["expires"] = Expires(*parsed)


# -- the merged result -----------------------------------------------------------------------


def filters_for(settings: Mapping[str, Any]) -> Filters | None:
    """A location's output filters from its merged settings; None when it has none."""
    get = settings.get
    headers = tuple(get("add_header") or ())
    expires: Expires | None = get("expires")
    if expires is not None and expires.kind == OFF and expires.value is None:
        expires = None
    gzip = None
    if get("gzip"):
        types = get("gzip_types", {"text/html"})
        gzip = Gzip(
            types=frozenset(types) if types is not None else None,
            min_length=get("gzip_min_length", 20),
            level=get("gzip_comp_level", 1),
            vary=bool(get("gzip_vary", False)),
            proxied=frozenset(get("gzip_proxied") or {"off"}),
            disable=tuple(get("gzip_disable") or ()),
            disable_msie6=bool(get("gzip_disable_msie6", False)),
            http_version=get("gzip_http_version", 11),
            wbits=get("gzip_window", 15),
            memlevel=get("gzip_hash", 8),
        )
    if not headers and expires is None and gzip is None:
        return None
    return Filters(headers, expires, gzip)
