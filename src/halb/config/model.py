"""The configuration model: frozen dataclasses built by the parsers (PURE).

nginx: NginxConfig → Http → Server → Location (nested), each location carrying its fully merged
LocConf (nginx's inheritance http → server → location → nested location is resolved once, at
load time, so the hot path reads plain attributes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from halb.config.errors import Pos
from halb.config.template import Template, static_template

EMPTY_MAP: MappingProxyType[Any, Any] = MappingProxyType({})
_HTML = static_template("html")
_INDEX = (static_template("index.html"),)


def _empty() -> MappingProxyType[Any, Any]:
    return EMPTY_MAP


def _default_types() -> MappingProxyType[str, str]:
    return DEFAULT_TYPES

# nginx's built-in types when no `types` block is configured (ngx_http_core_default_types).
DEFAULT_TYPES = MappingProxyType({"html": "text/html", "gif": "image/gif", "jpg": "image/jpeg"})

COMBINED = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
            '"$http_referer" "$http_user_agent"')


@dataclass(frozen=True, slots=True)
class Listen:
    addr: str  # "*", "127.0.0.1", "::1", or "unix:/path"
    port: int  # 0 for unix sockets
    default_server: bool = False
    reuseport: bool = False
    backlog: int = 511
    bind: bool = False
    ipv6only: bool = True
    pos: Pos | None = None
    ssl: bool = False
    http2: bool = False  # accepted; halb speaks HTTP/1.x (ALPN offers http/1.1 only)
    proxy_protocol: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return (self.addr, self.port)

    @property
    def is_unix(self) -> bool:
        return self.addr.startswith("unix:")

    @property
    def is_wildcard(self) -> bool:
        return self.addr in ("*", "::")

    def __str__(self) -> str:
        if self.is_unix:
            return self.addr
        host = f"[{self.addr}]" if ":" in self.addr else ("0.0.0.0" if self.addr == "*"
                                                           else self.addr)
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerName:
    """One server_name entry. kind: exact | lead (*.x / .x) | trail (x.*) | regex."""

    kind: str
    name: str  # lower-case; for lead wildcards the part after "*", e.g. ".example.org"
    regex: re.Pattern[str] | None = None
    raw: str = ""


@dataclass(frozen=True, slots=True)
class Return:
    code: int
    text: Template | None = None  # body text, or the URL for 301/302/303/307/308


@dataclass(frozen=True, slots=True)
class ErrorPage:
    uri: Template
    code: int | None = None  # "=code" overrides the status; None keeps it
    overwrite: bool = False  # "=" without a code: take the status of the redirect target


@dataclass(frozen=True, slots=True)
class LogFormat:
    name: str
    template: Template
    escape: str = "default"  # default | json | none


@dataclass(frozen=True, slots=True)
class AccessLog:
    path: Template
    format: LogFormat
    buffer: int = 0
    flush: float | None = None
    gzip: int | None = None
    condition: Template | None = None


@dataclass(frozen=True, slots=True)
class ErrorLog:
    path: str  # "stderr", or an absolute file path
    level: str = "error"


@dataclass(frozen=True, slots=True)
class LocConf:
    """Every setting that nginx merges down to locations, with nginx's defaults."""

    root: Template = _HTML
    # None: `root`. Otherwise `alias` (root holds the alias path) given in the location with
    # this name (its prefix is replaced), or "" in a regex location (the alias is the path).
    alias_name: str | None = None
    index: tuple[Template, ...] = _INDEX
    try_files: tuple[Template, ...] | None = None
    # the rewrite module's statements of this level (config/rewrite_model.py's Script)
    rewrite: tuple[Any, ...] | None = None
    error_pages: MappingProxyType[int, ErrorPage] = field(default_factory=_empty)
    autoindex: bool = False
    autoindex_exact_size: bool = True
    autoindex_localtime: bool = False
    autoindex_format: str = "html"
    default_type: str = "text/plain"
    types: MappingProxyType[str, str] = field(default_factory=_default_types)
    internal: bool = False
    sendfile: bool = False
    tcp_nopush: bool = False
    tcp_nodelay: bool = True
    keepalive_timeout: float = 75.0
    keepalive_header: float | None = None
    keepalive_requests: int = 1000
    keepalive_time: float = 3600.0
    client_max_body_size: int = 1024 * 1024
    client_body_timeout: float = 60.0
    client_body_buffer_size: int = 16 * 1024
    send_timeout: float = 60.0
    client_header_timeout: float = 60.0
    client_header_buffer_size: int = 1024
    large_client_header_buffers: tuple[int, int] = (4, 8192)
    access_log: tuple[AccessLog, ...] | None = None  # None: the default; () : off
    log_not_found: bool = True
    log_subrequest: bool = False
    server_tokens: str = "on"
    etag: bool = True
    if_modified_since: str = "exact"
    max_ranges: int | None = None
    absolute_redirect: bool = True
    port_in_redirect: bool = True
    server_name_in_redirect: bool = False
    msie_padding: bool = True
    merge_slashes: bool = True
    ignore_invalid_headers: bool = True
    underscores_in_headers: bool = False
    chunked_transfer_encoding: bool = True
    lingering_close: str = "on"
    lingering_time: float = 30.0
    lingering_timeout: float = 5.0
    reset_timedout_connection: bool = False
    # "" (not set): halb keeps files inside root/alias (stricter than nginx, see l7/static.py);
    # "off" follows every link as nginx does
    disable_symlinks: str = ""  # "" | off | on | if_not_owner
    error_log: tuple[ErrorLog, ...] | None = None
    # Settings added by later roles (proxy, upstream, gzip, headers, ...) live here,
    # keyed by directive name, so that the merge rules stay one mechanism.
    extra: MappingProxyType[str, Any] = field(default_factory=_empty)
    # the output filters (config/nginx_filters.py's Filters; l7/filters/), built from `extra`
    # at load time; None when the location has none (the hot path tests only this)
    filters: Any = None


LOC_FIELDS = frozenset(LocConf.__dataclass_fields__) - {"extra", "filters"}


@dataclass(frozen=True, slots=True)
class Location:
    modifier: str  # "" (prefix), "=", "^~", "~", "~*", "@" (named)
    name: str
    conf: LocConf = field(repr=False)
    regex: re.Pattern[str] | None = None
    children: tuple[Location, ...] = ()
    auto_redirect: bool = False  # set by proxy-like handlers for a name ending in "/"
    pos: Pos | None = None

    @property
    def exact(self) -> bool:
        return self.modifier == "="

    @property
    def noregex(self) -> bool:
        return self.modifier == "^~"

    @property
    def named(self) -> bool:
        return self.modifier == "@"

    @property
    def is_regex(self) -> bool:
        return self.modifier in ("~", "~*")

    def __str__(self) -> str:
        return f"{self.modifier} {self.name}".strip()


@dataclass(frozen=True, slots=True)
class Server:
    listens: tuple[Listen, ...]
    names: tuple[ServerName, ...]
    locations: tuple[Location, ...] = field(repr=False)
    conf: LocConf = field(repr=False)  # http + server level, for requests that match no location
    named_locations: MappingProxyType[str, Location] = field(default_factory=_empty)
    pos: Pos | None = None
    index: int = 0  # order in the configuration

    @property
    def server_name(self) -> str:
        """$server_name: the first name given (regex names count as written)."""
        for n in self.names:
            return n.raw
        return ""


@dataclass(frozen=True, slots=True)
class UpstreamServer:
    """One `server` line of an upstream block; `addresses` are what its name resolved to."""

    name: str  # as written: "10.0.0.1:8080", "backend.local", "unix:/tmp/app.sock"
    addresses: tuple[tuple[str, int], ...]  # (host, port); host "unix:/path" with port 0
    weight: int = 1
    max_conns: int = 0
    max_fails: int = 1
    fail_timeout: float = 10.0
    backup: bool = False
    down: bool = False
    slow_start: float = 0.0
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Upstream:
    """An `upstream` block, or the implicit one nginx makes for `proxy_pass http://host:port`."""

    name: str
    servers: tuple[UpstreamServer, ...]
    method: str = "round_robin"  # round_robin ip_hash hash least_conn random least_time
    key: Template | None = None  # `hash KEY`
    params: MappingProxyType[str, Any] = field(default_factory=_empty)
    keepalive: int = 0  # idle connections cached per worker (0: none)
    keepalive_requests: int = 1000
    keepalive_time: float = 3600.0
    keepalive_timeout: float = 60.0
    implicit: bool = False
    pos: Pos | None = None
    # `zone NAME [SIZE]`: peer state shared by all workers (None: per worker, as nginx)
    zone: str | None = None
    zone_size: int = 0  # bytes, as declared (halb sizes its segment for the peers)
    # nginx Plus `health_check`s of the locations proxying to this group
    # (config.nginx_health.HealthCheck; needs a zone)
    health_checks: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class ProxyPass:
    """`proxy_pass URL`, split as nginx splits it (ngx_http_proxy_pass)."""

    url: Template
    scheme: str = "http"  # http | https
    upstream: str | None = None  # the Upstream name; None when the URL has variables
    host: str = ""  # $proxy_host: "name" or "host:port" (no port for 80 / 443)
    port: int = 80  # $proxy_port
    uri: Template | None = None  # the URI part ("/" counts); None when absent
    has_variables: bool = False
    location_name: str = ""  # the prefix the URI part replaces
    location_regex: bool = False


@dataclass(frozen=True, slots=True)
class Http:
    servers: tuple[Server, ...]
    conf: LocConf
    log_formats: MappingProxyType[str, LogFormat] = field(default_factory=_empty)
    upstreams: MappingProxyType[str, Upstream] = field(default_factory=_empty)
    extra: MappingProxyType[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class NginxConfig:
    conf_file: str
    prefix: str
    files: tuple[str, ...] = ()
    daemon: bool = True
    master_process: bool = True
    worker_processes: int = 1
    error_log: tuple[ErrorLog, ...] = ()
    pid: str = "logs/nginx.pid"  # resolved against the prefix
    user: tuple[str, str] | None = None
    worker_connections: int = 512
    multi_accept: bool = False
    events_use: str | None = None
    worker_shutdown_timeout: float | None = None
    worker_rlimit_nofile: int | None = None
    http: Http | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def confs(self) -> Iterator[LocConf]:
        """Every level's settings: the http block's, then each server's followed by its
        locations' (nested ones after their parent) and its named locations'."""
        http = self.http
        if http is None:
            return
        yield http.conf

        def walk(locs: Iterable[Location]) -> Iterator[LocConf]:
            for loc in locs:
                yield loc.conf
                yield from walk(loc.children)

        for srv in http.servers:
            yield srv.conf
            yield from walk(srv.locations)
            yield from walk(srv.named_locations.values())

    def listens(self) -> list[Listen]:
        """Every distinct listen of the http block, in configuration order."""
        seen: dict[tuple[str, int], Listen] = {}
        if self.http:
            for srv in self.http.servers:
                for ls in srv.listens:
                    seen.setdefault(ls.key, ls)
        return list(seen.values())
