"""Strings with variables, as nginx's complex values (PURE).

`"$scheme://$host${uri}x"` compiles to literal and variable parts once, at configuration time,
so that an unknown variable is reported with file:line (`unknown "foo" variable`) and the hot
path only joins strings. `$1`..`$9` are regex captures. Evaluation lives in l7/variables.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from halb.config.errors import ConfigError, Pos

# Variables whose name is fixed, and families named by a prefix (nginx's ngx_http_core_variables
# plus those of the modules halb implements).
KNOWN_VARIABLES = frozenset({
    "args", "arg", "binary_remote_addr", "body_bytes_sent", "bytes_sent", "connection",
    "connection_requests", "connection_time", "content_length", "content_type", "document_root",
    "document_uri", "host", "hostname", "https", "is_args", "msec", "nginx_version", "pid",
    "query_string", "realpath_root", "remote_addr", "remote_port", "remote_user", "request",
    "request_body", "request_filename", "request_id", "request_length", "request_method",
    "request_time", "request_uri", "scheme", "server_addr", "server_name", "server_port",
    "server_protocol", "status", "time_iso8601", "time_local", "uri", "pipe",
    "limit_rate", "tcpinfo_rtt",
    # proxy and upstream (issue: nginx role, part 2)
    "proxy_host", "proxy_port", "proxy_add_x_forwarded_for", "proxy_internal_body_length",
    "proxy_internal_chunked", "upstream_addr", "upstream_status",
    "upstream_response_time", "upstream_connect_time", "upstream_header_time",
    "upstream_response_length", "upstream_bytes_received", "upstream_bytes_sent",
    "upstream_cache_status", "upstream_cache_last_modified", "upstream_cache_etag",
    # other modules
    "invalid_referer", "connections_active", "connections_reading", "connections_writing",
    "connections_waiting", "realip_remote_addr", "realip_remote_port", "gzip_ratio",
    "ssl_protocol", "ssl_cipher", "ssl_server_name", "proxy_protocol_addr",
    "proxy_protocol_port", "proxy_protocol_server_addr", "proxy_protocol_server_port",
    "ssl_session_reused",
})
VARIABLE_PREFIXES = ("http_", "sent_http_", "sent_trailer_", "cookie_", "arg_",
                     "upstream_http_", "upstream_cookie_", "upstream_trailer_")

_NAME = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True, slots=True)
class Var:
    name: str  # "uri", "http_host", or "1".."9" for a capture


@dataclass(frozen=True, slots=True)
class Template:
    raw: str
    parts: tuple[str | Var, ...]
    # computed once (templates are read on the hot path): no variables, and the literal text
    is_static: bool = field(init=False, compare=False)
    static: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_static", all(isinstance(p, str) for p in self.parts))
        object.__setattr__(self, "static",
                           "".join(p for p in self.parts if isinstance(p, str)))

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parts if isinstance(p, Var))

    def __str__(self) -> str:
        return self.raw


def is_known(name: str, extra: frozenset[str] | set[str] = frozenset()) -> bool:
    name = name.lower()
    return (name in KNOWN_VARIABLES or name in extra or name.isdigit()
            or name.startswith(VARIABLE_PREFIXES))


def compile_template(raw: str, pos: Pos | None = None,
                     extra: frozenset[str] | set[str] = frozenset()) -> Template:
    """Split `raw` into literals and variables; raise nginx's errors for bad references."""
    parts: list[str | Var] = []
    lit: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch != "$":
            lit.append(ch)
            i += 1
            continue
        i += 1
        if i < n and raw[i].isdigit():
            name = raw[i]
            i += 1
        elif i + 1 < n and raw[i] == "{":  # nginx's ngx_http_script_compile
            m = _NAME.match(raw, i + 1)
            name = m.group(0) if m else ""
            end = i + 1 + len(name)
            if end >= n or raw[end] != "}":
                raise ConfigError(f'the closing bracket in "{name}" variable is missing', pos)
            if not name:
                raise ConfigError("invalid variable name", pos)
            i = end + 1
        else:
            m = _NAME.match(raw, i)
            if not m:  # "$" at the end, "${" at the end, "$-"
                raise ConfigError("invalid variable name", pos)
            name = m.group(0)
            i = m.end()
        if not is_known(name, extra):
            raise ConfigError(f'unknown "{name}" variable', pos)
        if lit:
            parts.append("".join(lit))
            lit = []
        parts.append(Var(name.lower() if not name.isdigit() else name))
    if lit or not parts:
        parts.append("".join(lit))
    return Template(raw, tuple(parts))


def static_template(value: str) -> Template:
    return Template(value, (value,))
