"""nginx.conf → NginxConfig: the directive table and the builder (PURE).

A directive is registered once with the contexts it may appear in, its argument count (nginx's
NGX_CONF_TAKE* flags), and a handler that stores into the block being built. Errors read as
`nginx -t` prints them, positioned where nginx positions them (the line of the `;` or `{` that
ended the directive):

    unknown directive "foo" in /etc/nginx/nginx.conf:3
    "listen" directive is not allowed here in /etc/nginx/nginx.conf:7
    invalid number of arguments in "root" directive in /etc/nginx/nginx.conf:9

Settings merge down http → server → location → nested location the way nginx merges them: a
level that sets a directive replaces the inherited value, list-valued directives (index,
error_page, access_log) are inherited only by levels that have none of their own, and the rewrite
module's statements (rewrite, return, set, if, break) and try_files are not inherited. The handlers themselves live in
config/nginx_directives.py; this module owns the mechanics.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from halb.config import lexer
from halb.config.errors import COMMAND_LINE, ConfigError, Pos
from halb.config.lexer import Statement, Token
from halb.config.model import (
    COMBINED,
    LOC_FIELDS,
    AccessLog,
    Http,
    Listen,
    Location,
    LocConf,
    LogFormat,
    NginxConfig,
    Server,
    ServerName,
)
from halb.config.template import compile_template, is_known

# Contexts (nginx's NGX_MAIN_CONF, NGX_HTTP_*_CONF ...).
MAIN = 1
EVENTS = 2
HTTP = 4
SRV = 8
LOC = 16
LIF = 32  # "if" inside a location
SIF = 64  # "if" inside a server
UPS = 128  # upstream
TYPES = 256  # inside "types { }"
ANY_HTTP = HTTP | SRV | LOC
ANY = MAIN | EVENTS | ANY_HTTP | LIF | SIF | UPS

# Argument counts (nginx's NGX_CONF_NOARGS / TAKE1..7 / 1MORE / 2MORE / FLAG).
NOARGS = 1 << 0
TAKE1 = 1 << 1
TAKE2 = 1 << 2
TAKE3 = 1 << 3
TAKE4 = 1 << 4
TAKE5 = 1 << 5
TAKE6 = 1 << 6
TAKE7 = 1 << 7
TAKE12 = TAKE1 | TAKE2
TAKE13 = TAKE1 | TAKE3
TAKE23 = TAKE2 | TAKE3
TAKE123 = TAKE1 | TAKE2 | TAKE3
TAKE1234 = TAKE123 | TAKE4
ONEMORE = 1 << 10
TWOMORE = 1 << 11
FLAG = 1 << 12
ANYARGS = 1 << 13

Handler = Callable[["Builder", "Block", Statement], None]


@dataclass(frozen=True, slots=True)
class Directive:
    name: str
    contexts: int
    nargs: int
    handler: Handler
    block: bool = False
    # a location using this directive gets nginx's auto_redirect (301 for "/dir" → "/dir/")
    auto_redirect: bool = False


DIRECTIVES: dict[str, Directive] = {}
# A name that several modules define for different contexts (nginx keeps one table per module:
# `keepalive_timeout` of the http core and of the upstream keepalive module): the entry in
# DIRECTIVES is the first registered; the others are found here by context.
ALTERNATIVES: dict[str, list[Directive]] = {}


def directive(name: str, contexts: int, nargs: int, *, block: bool = False,
              auto_redirect: bool = False) -> Callable[[Handler], Handler]:
    """Register a handler for a directive (used by the modules that own directives)."""

    def register(fn: Handler) -> Handler:
        d = Directive(name, contexts, nargs, fn, block, auto_redirect)
        if name in DIRECTIVES and DIRECTIVES[name].contexts & ~contexts == DIRECTIVES[name].contexts:
            ALTERNATIVES.setdefault(name, []).append(d)  # disjoint contexts: a second module
        else:
            DIRECTIVES[name] = d
        return fn

    return register


@dataclass(eq=False)
class Block:
    """A context being built: main, events, http, server, location, ..."""

    ctx: int
    parent: Block | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    seen: dict[str, Statement] = field(default_factory=dict)
    # server
    listens: list[Listen] = field(default_factory=list)
    names: list[ServerName] = field(default_factory=list)
    has_server_name: bool = False
    # server and location: nested locations
    locations: list[Block] = field(default_factory=list)
    # location
    modifier: str = ""
    name: str = ""
    regex: Any = None
    auto_redirect: bool = False
    pos: Pos | None = None
    # http: servers
    servers: list[Block] = field(default_factory=list)

    def server(self) -> Block | None:
        b: Block | None = self
        while b is not None and b.ctx != SRV:
            b = b.parent
        return b

    def http(self) -> Block | None:
        b: Block | None = self
        while b is not None and b.ctx != HTTP:
            b = b.parent
        return b


def _args_ok(nargs: int, n: int) -> bool:
    if nargs & ANYARGS:
        return True
    if nargs & FLAG:
        return n == 1
    if nargs & ONEMORE and n >= 1:
        return True
    if nargs & TWOMORE and n >= 2:
        return True
    if n == 0:
        return bool(nargs & NOARGS)
    return n <= 7 and bool(nargs & (1 << n))


class Builder:
    """Walks parsed statements through the directive table into Blocks, then freezes them."""

    def __init__(self, conf_file: str, prefix: str, is_root: bool = False) -> None:
        self.conf_file = conf_file
        self.prefix = prefix
        self.is_root = is_root
        self.main = Block(MAIN)
        self.http_block: Block | None = None
        # where the http block's "}" is: nginx's merge-time checks report that line
        self.http_close: Pos | None = None
        self.log_formats: dict[str, LogFormat] = {
            "combined": LogFormat("combined", compile_template(COMBINED)),
        }
        self.variables: set[str] = set()  # declared by `set` and friends (later issues)
        self.warnings: list[ConfigError] = []
        # Variables used so far, checked when the http block ends (_Used below).
        self.used_variables: dict[str, None] = {}
        # The http block's listen addresses: (addr, port) -> {"servers": [Block, ...],
        # "set": an option that belongs to the socket was given, "default": has default_server}.
        self.listen_addrs: dict[tuple[str, int], dict[str, Any]] = {}

    # -- walking ------------------------------------------------------------------------------

    def run(self, statements: list[Statement], block: Block) -> None:
        for st in statements:
            self.statement(st, block)

    def statement(self, st: Statement, block: Block) -> None:
        if isinstance(st, lexer.ErrorStatement):  # a syntax error after the directives before it
            assert st.error is not None
            raise st.error
        name = st.name.value
        d = DIRECTIVES.get(name)
        if block.ctx == TYPES:
            if st.block is not None:  # types { } reads its own lines (cf->handler)
                raise ConfigError('unexpected "{"', st.end)
            d = DIRECTIVES["\0type"]
        if d is None:
            raise ConfigError(f'unknown directive "{name}"', st.end)
        if not d.contexts & block.ctx:
            d = next((a for a in ALTERNATIVES.get(name, ()) if a.contexts & block.ctx), d)
        if not d.contexts & block.ctx:
            raise ConfigError(f'"{name}" directive is not allowed here', st.end)
        if d.block and st.block is None:
            raise ConfigError(f'directive "{name}" has no opening "{{"', st.end)
        if not d.block and st.block is not None:
            raise ConfigError(f'directive "{name}" is not terminated by ";"', st.end)
        if not _args_ok(d.nargs, len(st.args)):
            raise ConfigError(f'invalid number of arguments in "{name}" directive', st.end)
        if d.nargs & FLAG and st.args[0].value.lower() not in ("on", "off"):
            raise ConfigError(
                f'invalid value "{st.args[0].value}" in "{name}" directive, '
                'it must be "on" or "off"', st.end)
        d.handler(self, block, st)
        if d.auto_redirect and block.ctx == LOC:
            block.auto_redirect = True

    # -- helpers for handlers -----------------------------------------------------------------

    def err(self, st: Statement, message: str) -> ConfigError:
        """nginx's `"name" directive <message>` form."""
        return ConfigError(f'"{st.name.value}" directive {message}', st.end)

    def once(self, block: Block, st: Statement, key: str | None = None) -> None:
        """Refuse a second occurrence of a directive in one block ("is duplicate")."""
        key = key or st.name.value
        if key in block.seen:
            raise self.err(st, "is duplicate")
        block.seen[key] = st

    def set(self, block: Block, st: Statement, key: str, value: Any) -> None:
        self.once(block, st, key)
        block.settings[key] = value

    def template(self, tok: Token | str, pos: Pos) -> Any:
        raw = tok.value if isinstance(tok, Token) else tok
        return compile_template(raw, pos, _Used(self.used_variables))

    def path(self, value: str) -> str:
        """A path relative to the prefix, as nginx resolves file names (ngx_conf_full_name)."""
        if os.path.isabs(value) or value == "stderr":
            return value
        return os.path.join(self.prefix, value)

    def warn(self, message: str, pos: Pos | None) -> None:
        self.warnings.append(ConfigError(message, pos, level="warn"))

    # -- the end of the http block ---------------------------------------------------------

    def end_http(self, hb: Block) -> None:
        """What nginx checks once the http block is parsed (ngx_http_block), in its order:
        upstreams (ngx_http_upstream_init_main_conf), duplicate locations, unknown variables,
        then server names per listen address."""
        from halb.config.nginx_upstream import resolve_proxy_targets

        resolve_proxy_targets(self)
        from halb.config.nginx_cache import check_zones

        check_zones(self, hb)
        from halb.config.nginx_ssl import check_ssl

        check_ssl(self, hb)
        for sb in hb.servers:
            _check_locations(sb)
        for name in self.used_variables:
            if not is_known(name, self.variables):
                raise ConfigError(f'unknown "{name}" variable')  # nginx names no file:line
        addrs: dict[tuple[str, int], list[Block]] = {
            key: list(a["servers"]) for key, a in self.listen_addrs.items()}
        implicit = ("*", 80 if self.is_root else 8000)
        for sb in hb.servers:
            if not sb.listens:
                addrs.setdefault(implicit, []).append(sb)
        ports = list(dict.fromkeys(port for _, port in addrs))
        order = sorted(addrs, key=lambda k: (ports.index(k[1]), k[0] in ("*", "::"),
                                             not self.listen_addrs.get(k, {}).get("set")))
        for key in order:
            servers = addrs[key]
            default = next((sb for sb in servers if any(
                ls.default_server for ls in sb.listens if ls.key == key)), servers[0])
            captures = any(n.regex is not None and n.regex.groups for n in default.names)
            if len(servers) < 2 and not captures:
                continue
            for sb in servers:
                for sn in sb.names:
                    if sn.kind != "regex" and not _wildcard_ok(sn.raw.lower()):
                        text = next((str(ls) for ls in sb.listens if ls.key == key),
                                    str(Listen(*key)))
                        raise ConfigError(
                            f'invalid server name or wildcard "{sn.raw.lower()}" on {text}')

    # -- freezing -----------------------------------------------------------------------------

    def freeze(self, files: list[str]) -> NginxConfig:
        if "events" not in self.main.seen:  # nginx's ngx_event_init_conf, no file:line
            raise ConfigError('no "events" section in configuration')
        s = self.main.settings
        http = self._freeze_http(self.http_block) if self.http_block else None
        kwargs = {k: v for k, v in s.items() if k in NginxConfig.__dataclass_fields__}
        if "error_log" in kwargs:
            kwargs["error_log"] = tuple(kwargs["error_log"])
        return NginxConfig(conf_file=self.conf_file, prefix=self.prefix, files=tuple(files),
                           http=http, **kwargs)

    def _freeze_http(self, hb: Block) -> Http:
        http_settings = dict(hb.settings)
        if "access_log" not in http_settings:  # nginx's default: logs/access.log combined
            path = compile_template(self.path("logs/access.log"))
            http_settings["access_log"] = [AccessLog(path, self.log_formats["combined"])]
        servers: list[Server] = []
        for i, sb in enumerate(hb.servers):
            servers.append(self._freeze_server(sb, http_settings, i))
        from halb.config.nginx_upstream import freeze_upstreams

        return Http(tuple(servers), _loc_conf(http_settings),
                    MappingProxyType(dict(self.log_formats)),
                    MappingProxyType(freeze_upstreams(self)))

    def _freeze_server(self, sb: Block, inherited: dict[str, Any], index: int) -> Server:
        eff = _merge(inherited, sb.settings, top=True)
        listens = sb.listens or [Listen("*", 80 if self.is_root else 8000, pos=sb.pos)]
        names = sb.names if sb.has_server_name else [ServerName("exact", "", None, "")]
        locs = tuple(self._freeze_location(lb, eff) for lb in sb.locations if lb.modifier != "@")
        named: dict[str, Location] = {}
        for lb in sb.locations:  # of two named locations with one name, the first is used
            if lb.modifier == "@" and lb.name not in named:
                named[lb.name] = self._freeze_location(lb, eff)
        return Server(tuple(listens), tuple(names), locs, _loc_conf(eff),
                      MappingProxyType(named), sb.pos, index)

    def _freeze_location(self, lb: Block, inherited: dict[str, Any]) -> Location:
        eff = _merge(inherited, lb.settings)
        children = tuple(self._freeze_location(c, eff) for c in lb.locations)
        return Location(lb.modifier, lb.name, _loc_conf(eff), lb.regex, children,
                        lb.auto_redirect and lb.name.endswith("/"), lb.pos)


class _Used(set[str]):
    """The `extra` names of compile_template: accepts every variable and remembers it, so that
    unknown ones are reported when the http block ends, as nginx does
    (ngx_http_variables_init_vars), and a `set` later in the file declares one used earlier."""

    def __init__(self, used: dict[str, None]) -> None:
        super().__init__()
        self.used = used

    def __contains__(self, name: object) -> bool:
        self.used.setdefault(str(name).lower(), None)
        return True


def _check_locations(blk: Block) -> None:
    """nginx's ngx_http_init_static_location_trees: prefix and exact locations, sorted, nested
    ones first; two of one kind with one name are a "duplicate location" (the later one)."""
    static = sorted((lb for lb in blk.locations if lb.regex is None and lb.modifier != "@"),
                    key=lambda lb: (lb.name, lb.modifier != "="))
    for lb in static:
        _check_locations(lb)
    for a, b in itertools.pairwise(static):
        if a.name == b.name and (a.modifier == "=") == (b.modifier == "="):
            raise ConfigError(f'duplicate location "{b.name}"', b.pos)


def _wildcard_ok(name: str) -> bool:
    """nginx's ngx_hash_add_key(NGX_HASH_WILDCARD_KEY): "*.example.com", ".example.com",
    "www.example.*" or a name without "*"; never two "*", "..", or a NUL."""
    if name.count("*") > 1 or ".." in name or "\0" in name:
        return False
    if len(name) > 1 and name[0] == ".":
        return True
    if len(name) > 2 and (name.startswith("*.") or name.endswith(".*")):
        return True
    return "*" not in name


# Directives that a level does not hand down to the levels below it ("rewrite": the rewrite
# module's statements, config/nginx_rewrite.py).
_NOT_INHERITED = frozenset({"rewrite", "try_files", "internal", "proxy_pass",
                            "proxy_cache_purge", "stub_status"})

# Hooks that turn a module's build-time state into its frozen form, run on a copy of a level's
# merged settings before it becomes a LocConf: key present -> fn(settings) edits the copy
# (the rewrite module's scripts and their `if` locations, the referer module's checks).
FREEZERS: dict[str, Callable[[dict[str, Any]], None]] = {}


def _merge(parent: dict[str, Any], own: dict[str, Any], top: bool = False) -> dict[str, Any]:
    out = {k: v for k, v in parent.items() if k not in _NOT_INHERITED}
    if top:  # the server's own return / try_files are for the server level only
        out = dict(parent)
    out.update(own)
    return out


def _loc_conf(settings: dict[str, Any]) -> LocConf:
    if any(key in settings for key in FREEZERS):
        settings = dict(settings)
        for key, fn in FREEZERS.items():
            if key in settings:
                fn(settings)
    fields = {k: v for k, v in settings.items() if k in LOC_FIELDS}
    extra = {k: v for k, v in settings.items() if k not in LOC_FIELDS}
    for key in ("error_pages", "types"):
        if key in fields and not isinstance(fields[key], MappingProxyType):
            fields[key] = MappingProxyType(dict(fields[key]))
    for key in ("index", "access_log", "try_files", "error_log", "rewrite"):
        if key in fields and isinstance(fields[key], list):
            fields[key] = tuple(fields[key])
    from halb.config.nginx_filters import filters_for

    return LocConf(extra=MappingProxyType(extra), filters=filters_for(extra), **fields)


# -- entry points ----------------------------------------------------------------------------


@dataclass
class Loaded:
    config: NginxConfig
    warnings: list[ConfigError]


def load(conf_file: str, prefix: str | None = None, *, global_directives: str = "",
         is_root: bool | None = None, reader: lexer.Reader | None = None) -> Loaded:
    """Read, parse and build an nginx configuration the way `nginx -c conf_file` does."""
    # Handlers register themselves on import.
    from halb.config import (  # noqa: F401
        nginx_cache,
        nginx_directives,
        nginx_filters,
        nginx_health,
        nginx_log,
        nginx_rewrite,
        nginx_ssl,
        nginx_upstream,
    )

    conf_file = os.path.abspath(conf_file)
    prefix = os.path.abspath(prefix) + os.sep if prefix else os.path.dirname(conf_file) + os.sep
    if is_root is None:
        is_root = os.geteuid() == 0
    conf_prefix = os.path.dirname(conf_file)
    kwargs: dict[str, Any] = {"include_base": conf_prefix}
    if reader is not None:
        kwargs["reader"] = reader
    builder = Builder(conf_file, prefix, is_root)
    if global_directives:
        g = lexer.parse_text(global_directives, COMMAND_LINE.file, lexer.NGINX,
                             defer_errors=True, **kwargs)
        builder.run(g.statements, builder.main)
    parsed = lexer.parse_file(conf_file, lexer.NGINX, defer_errors=True, **kwargs)
    builder.run(parsed.statements, builder.main)
    return Loaded(builder.freeze(parsed.files), builder.warnings)


def load_text(text: str, filename: str = "/tmp/nginx.conf", prefix: str = "/tmp/",
              is_root: bool = False, files: dict[str, str] | None = None) -> NginxConfig:
    """Build from text (tests): `files` maps other paths to their contents for include."""
    table = dict(files or {})
    table[filename] = text

    def reader(path: str) -> str:
        if path in table:
            return table[path]
        raise FileNotFoundError(2, "No such file or directory", path)

    return load(filename, prefix, is_root=is_root, reader=reader).config
