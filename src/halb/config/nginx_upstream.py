"""`upstream` blocks and the proxy module's directives (PURE), with nginx's wording.

`upstream NAME { server ADDR [weight= max_conns= max_fails= fail_timeout= slow_start= backup
down]; ... keepalive N; hash KEY [consistent]; ip_hash; least_conn; random [two [least_conn]];
least_time header|last_byte [inflight]; zone NAME [SIZE]; }` (nginx Plus's health_check and match:
config/nginx_health.py) and `proxy_pass`, `proxy_set_header`, timeouts, `proxy_next_upstream*`,
buffering and header switches. Names resolve through RESOLVER, which the runtime installs (this
module stays free of sockets); without one, only IP literals and "localhost" resolve, which is
what tests use.
"""

from __future__ import annotations

import ipaddress
import mmap
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from halb.config.errors import ConfigError
from halb.config.lexer import Statement
from halb.config.model import ProxyPass, Upstream, UpstreamServer
from halb.config.nginx import (
    HTTP,
    LIF,
    LOC,
    NOARGS,
    ONEMORE,
    SRV,
    TAKE1,
    TAKE2,
    TAKE12,
    TAKE123,
    UPS,
    Block,
    Builder,
    directive,
)
from halb.config.nginx_slots import flag_slot, num_slot, size_slot, time_slot
from halb.config.template import static_template
from halb.config.values import parse_size, parse_time

ANY_LOC = HTTP | SRV | LOC

# host -> addresses; installed by the runtime (socket.getaddrinfo), absent in pure tests
RESOLVER: Callable[[str], list[str]] | None = None


def resolve(host: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    if RESOLVER is not None:
        return RESOLVER(host)
    if host == "localhost":
        return ["127.0.0.1"]
    return []


def split_host_port(text: str, default_port: int) -> tuple[str, int | None, bool]:
    """("host", port or None when invalid, port_given) for "host[:port]" / "[v6][:port]"."""
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1:]
        if not rest:
            return host, default_port, False
        port_s = rest[1:] if rest.startswith(":") else "x"
    elif text.count(":") == 1:
        host, port_s = text.split(":")
    else:
        return text, default_port, False
    if not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
        return host, None, True
    return host, int(port_s), True


def _addresses(b: Builder, st: Statement, text: str, default_port: int = 80
               ) -> tuple[tuple[str, int], ...]:
    if text.startswith("unix:"):
        if len(text) == 5:
            raise ConfigError(f'no path in the unix domain socket in upstream "{text}"',
                              st.end)
        return ((text, 0),)
    host, port, _ = split_host_port(text, default_port)
    if port is None:
        raise ConfigError(f'invalid port in upstream "{text}"', st.end)
    addrs = resolve(host)
    if not addrs:
        raise ConfigError(f'host not found in upstream "{text}"', st.end)
    return tuple((a, port) for a in addrs)


# -- upstream {} ----------------------------------------------------------------------------


@directive("upstream", HTTP, TAKE1, block=True)
def _upstream(b: Builder, blk: Block, st: Statement) -> None:
    name = st.args[0].value
    ups: dict[str, Block] = b.__dict__.setdefault("upstream_blocks", {})
    if name in ups:
        raise ConfigError(f'duplicate upstream "{name}"', st.end)
    ub = Block(UPS, blk, name=name, pos=st.end)
    ub.settings["servers"] = []
    ups[name] = ub
    assert st.block is not None
    b.run(st.block, ub)
    if not ub.settings["servers"]:
        raise ConfigError("no servers are inside upstream", st.end)


_NO_BACKUP = ("ip_hash", "hash", "random")


@directive("server", UPS, ONEMORE)
def _ups_server(b: Builder, blk: Block, st: Statement) -> None:
    opts: dict[str, Any] = {}
    for a in st.args[1:]:
        v = a.value
        key, eq, val = v.partition("=")
        bad = ConfigError(f'invalid parameter "{v}"', st.end)
        if key == "weight" and eq:
            if not val.isdigit() or int(val) == 0:
                raise bad
            opts["weight"] = int(val)
        elif key in ("max_fails", "max_conns") and eq:
            if not val.isdigit():
                raise bad
            opts[key] = int(val)
        elif key == "fail_timeout" and eq:
            t = parse_time(val, allow_ms=False)
            if t is None:
                raise bad
            opts["fail_timeout"] = t
        elif key == "slow_start" and eq:  # nginx Plus
            if blk.settings.get("method") in _NO_BACKUP:
                raise ConfigError(f'balancing method does not support parameter "{v}"',
                                  st.end)
            t = parse_time(val, allow_ms=False)
            if t is None:
                raise bad
            opts["slow_start"] = t
        elif v == "backup":
            method = blk.settings.get("method")
            if method in _NO_BACKUP:
                raise ConfigError('balancing method does not support parameter "backup"',
                                  st.end)
            opts["backup"] = True
        elif v == "down":
            opts["down"] = True
        else:
            raise bad
    name = st.args[0].value
    addrs = _addresses(b, st, name)
    blk.settings["servers"].append(UpstreamServer(name, addrs, pos=st.end, **opts))


def _method(b: Builder, blk: Block, st: Statement, method: str, **params: Any) -> None:
    if "method" in blk.settings:
        b.warn("load balancing method redefined", st.end)
    blk.settings["method"] = method
    blk.settings["params"] = params


@directive("ip_hash", UPS, NOARGS)
def _ip_hash(b: Builder, blk: Block, st: Statement) -> None:
    _method(b, blk, st, "ip_hash")


@directive("least_conn", UPS, NOARGS)
def _least_conn(b: Builder, blk: Block, st: Statement) -> None:
    _method(b, blk, st, "least_conn")


@directive("hash", UPS, TAKE12)
def _hash(b: Builder, blk: Block, st: Statement) -> None:
    consistent = False
    if len(st.args) == 2:
        if st.args[1].value != "consistent":
            raise ConfigError(f'invalid parameter "{st.args[1].value}"', st.end)
        consistent = True
    _method(b, blk, st, "hash", consistent=consistent)
    blk.settings["key"] = b.template(st.args[0], st.end)


@directive("random", UPS, NOARGS | TAKE12)
def _random(b: Builder, blk: Block, st: Statement) -> None:
    vals = st.values
    two = False
    if vals:
        if vals[0] != "two":
            raise ConfigError(f'invalid parameter "{vals[0]}"', st.end)
        two = True
        if len(vals) == 2 and vals[1] != "least_conn":
            raise ConfigError(f'invalid parameter "{vals[1]}"', st.end)
    _method(b, blk, st, "random", two=two)


@directive("least_time", UPS, TAKE12)
def _least_time(b: Builder, blk: Block, st: Statement) -> None:
    vals = st.values
    if vals[0] not in ("header", "last_byte"):
        raise ConfigError(f'invalid parameter "{vals[0]}"', st.end)
    if len(vals) == 2 and vals[1] != "inflight":
        raise ConfigError(f'invalid parameter "{vals[1]}"', st.end)
    _method(b, blk, st, "least_time", measure=vals[0], inflight=len(vals) == 2)


@directive("keepalive", UPS, TAKE1)
def _keepalive(b: Builder, blk: Block, st: Statement) -> None:
    v = st.args[0].value
    if not v.isdigit() or int(v) == 0:
        raise ConfigError(f'invalid value "{v}" in "keepalive" directive', st.end)
    b.set(blk, st, "keepalive", int(v))


@directive("keepalive_requests", UPS, TAKE1)
def _ups_keepalive_requests(b: Builder, blk: Block, st: Statement) -> None:
    if not st.args[0].value.isdigit():
        raise b.err(st, "invalid number")
    b.set(blk, st, "keepalive_requests", int(st.args[0].value))


time_slot("keepalive_time", UPS)
time_slot("keepalive_timeout", UPS)


# nginx's smallest zone: 8 pages (ngx_http_upstream_zone)
ZONE_MIN = 8 * mmap.PAGESIZE


@directive("zone", UPS, TAKE12)
def _zone(b: Builder, blk: Block, st: Statement) -> None:
    """`zone NAME [SIZE]` (ngx_http_upstream_zone + ngx_shared_memory_add): a repeated zone
    line is no error (the last one names the group's zone), several upstreams may name one
    zone, and a zone never given a size fails when the configuration is complete."""
    name = st.args[0].value
    if not name:
        raise ConfigError(f'invalid zone name "{name}"', st.end)
    size = 0
    if len(st.args) == 2:
        parsed = parse_size(st.args[1].value)
        if parsed is None:
            raise ConfigError(f'invalid zone size "{st.args[1].value}"', st.end)
        if parsed < ZONE_MIN:
            raise ConfigError(f'zone "{name}" is too small', st.end)
        size = parsed
    zones: dict[str, int] = b.__dict__.setdefault("upstream_zones", {})
    declared = zones.get(name, 0)
    if size and declared and size != declared:
        raise ConfigError(f'the size {size} of shared memory zone "{name}" conflicts with '
                          f'already declared size {declared}', st.end)
    zones[name] = size or declared
    blk.settings["zone"] = name


def freeze_upstreams(b: Builder) -> dict[str, Upstream]:
    zones: dict[str, int] = b.__dict__.get("upstream_zones", {})
    for zone, size in zones.items():  # ngx_init_cycle: after the whole file, no file:line
        if not size:
            raise ConfigError(f'zero size shared memory zone "{zone}"')
    out: dict[str, Upstream] = {}
    for name, ub in b.__dict__.get("upstream_blocks", {}).items():
        s = ub.settings
        zone = s.get("zone")
        out[name] = Upstream(
            name, tuple(s["servers"]), s.get("method", "round_robin"), s.get("key"),
            MappingProxyType(dict(s.get("params", {}))), s.get("keepalive", 0),
            s.get("keepalive_requests", 1000), s.get("keepalive_time", 3600.0),
            s.get("keepalive_timeout", 60.0), False, ub.pos, zone,
            zones.get(zone, 0) if zone else 0)
    for key, (addrs, pos) in b.__dict__.get("implicit_upstreams", {}).items():
        if key not in out:
            out[key] = Upstream(key, (UpstreamServer(key, addrs, pos=pos),), implicit=True,
                                pos=pos)
    from halb.config.nginx_health import attach

    return attach(b, out)


# -- proxy_pass -----------------------------------------------------------------------------


@directive("proxy_pass", LOC | LIF, TAKE1, auto_redirect=True)
def _proxy_pass(b: Builder, blk: Block, st: Statement) -> None:
    b.once(blk, st)
    url = st.args[0].value
    lower = url.lower()
    if lower.startswith("http://"):
        scheme, rest = "http", url[7:]
    elif lower.startswith("https://"):
        scheme, rest = "https", url[8:]
    elif "$" in url:
        scheme, rest = "", url
    else:
        raise ConfigError("invalid URL prefix", st.end)
    tpl = b.template(url, st.end)
    in_regex = blk.regex is not None or blk.modifier == "@" or blk.ctx == LIF
    if not tpl.is_static:
        blk.settings["proxy_pass"] = ProxyPass(tpl, scheme or "http", None, "", 80, None, True,
                                               blk.name, in_regex)
        return
    slash = rest.find("/")
    hostport, uri = (rest, None) if slash < 0 else (rest[:slash], rest[slash:])
    if uri is not None and in_regex:
        raise ConfigError('"proxy_pass" cannot have URI part in location given by regular '
                          'expression, or inside named location, or inside "if" statement, '
                          'or inside "limit_except" block', st.end)
    default_port = 443 if scheme == "https" else 80
    if hostport.startswith("unix:"):
        # unix:/path:/uri — the socket path ends at the first ':' after "unix:"
        path, _, tail = rest[5:].partition(":")
        hostport, uri = f"unix:{path}", (tail or None)
        host, port, given = hostport, 0, False
    else:
        host, port_opt, given = split_host_port(hostport, default_port)
        if port_opt is None:
            raise ConfigError(f'invalid port in upstream "{hostport}"', st.end)
        port = port_opt
    pending: list[tuple[str, Statement, str, int, bool]] = b.__dict__.setdefault(
        "proxy_targets", [])
    pending.append((host, st, hostport, port, given))
    shown = hostport if (given and port != default_port) or host.startswith("unix:") else host
    if host.startswith("unix:"):
        shown = "localhost"
    blk.settings["proxy_pass"] = ProxyPass(
        tpl, scheme, hostport if given or host.startswith("unix:") else host, shown, port,
        static_template(uri) if uri is not None else None, False, blk.name, in_regex)


def resolve_proxy_targets(b: Builder) -> None:
    """At the end of http: a proxy_pass host names an upstream block, or becomes an implicit
    upstream of the addresses it resolves to (ngx_http_upstream_add)."""
    blocks: dict[str, Block] = b.__dict__.get("upstream_blocks", {})
    implicit: dict[str, Any] = b.__dict__.setdefault("implicit_upstreams", {})
    for host, st, hostport, port, given in b.__dict__.get("proxy_targets", []):
        if host in blocks:
            if given:
                raise ConfigError(f'upstream "{host}" may not have port {port}', st.end)
            continue
        key = hostport if given or host.startswith("unix:") else host
        if key not in implicit:
            implicit[key] = (_addresses(b, st, hostport, port), st.end)


# -- proxy settings -------------------------------------------------------------------------


@directive("proxy_set_header", ANY_LOC, TAKE2)
def _proxy_set_header(b: Builder, blk: Block, st: Statement) -> None:
    if "proxy_set_header" not in blk.seen:
        blk.seen["proxy_set_header"] = st
        blk.settings["proxy_set_header"] = []
    blk.settings["proxy_set_header"].append(
        (st.args[0].value, b.template(st.args[1], st.end)))


def _list(name: str, key: str | None = None) -> None:
    def handler(b: Builder, blk: Block, st: Statement) -> None:
        k = key or name
        if k not in blk.seen:
            blk.seen[k] = st
            blk.settings[k] = []
        blk.settings[k].append(st.args[0].value.lower())

    directive(name, ANY_LOC, TAKE1)(handler)


_list("proxy_hide_header")
_list("proxy_pass_header")


@directive("proxy_http_version", ANY_LOC, TAKE1)
def _proxy_http_version(b: Builder, blk: Block, st: Statement) -> None:
    v = st.args[0].value
    if v not in ("1.0", "1.1"):
        raise ConfigError(f'invalid value "{v}"', st.end)
    b.set(blk, st, "proxy_http_version", v)


_NEXT = ("error", "timeout", "invalid_header", "http_500", "http_502", "http_503", "http_504",
         "http_403", "http_404", "http_429", "non_idempotent", "off", "denied")


@directive("proxy_next_upstream", ANY_LOC, ONEMORE)
def _proxy_next_upstream(b: Builder, blk: Block, st: Statement) -> None:
    values = st.values
    for v in values:
        if v not in _NEXT:
            raise ConfigError(f'invalid value "{v}"', st.end)
    chosen = frozenset(values)
    if "off" in chosen:
        chosen = frozenset({"off"})
    b.set(blk, st, "proxy_next_upstream", chosen)


for _n in ("proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout",
           "proxy_next_upstream_timeout"):
    time_slot(_n, ANY_LOC)
for _n in ("proxy_buffering", "proxy_request_buffering", "proxy_pass_request_headers",
           "proxy_pass_request_body", "proxy_intercept_errors", "proxy_ignore_client_abort",
           "proxy_socket_keepalive"):
    flag_slot(_n, ANY_LOC)
num_slot("proxy_next_upstream_tries", ANY_LOC)
for _n in ("proxy_buffer_size", "proxy_busy_buffers_size", "proxy_max_temp_file_size",
           "proxy_temp_file_write_size"):
    size_slot(_n, ANY_LOC)


@directive("proxy_buffers", ANY_LOC, TAKE2)
def _proxy_buffers(b: Builder, blk: Block, st: Statement) -> None:
    n, size = st.args[0].value, parse_size(st.args[1].value)
    if not n.isdigit() or size is None:
        raise b.err(st, "invalid value")
    if int(n) < 2:  # nginx says so when it merges, at the end of the http block
        raise ConfigError('there must be at least 2 "proxy_buffers"', st.end)
    b.set(blk, st, "proxy_buffers", (int(n), size))


@directive("proxy_redirect", ANY_LOC, TAKE12)
def _proxy_redirect(b: Builder, blk: Block, st: Statement) -> None:
    vals = st.values
    if "proxy_redirect" not in blk.seen:
        blk.seen["proxy_redirect"] = st
        blk.settings["proxy_redirect"] = []
    rules: list[Any] = blk.settings["proxy_redirect"]
    if len(vals) == 1:
        if vals[0] == "off":
            blk.settings["proxy_redirect"] = ["off"]
        elif vals[0] == "default":
            pp = blk.settings.get("proxy_pass")
            if pp is not None and pp.has_variables:
                raise ConfigError('"proxy_redirect default" cannot be used with "proxy_pass" '
                                  'directive with variables', st.end)
            if pp is None:
                raise ConfigError('"proxy_redirect default" should be placed after the '
                                  '"proxy_pass" directive', st.end)
            rules.append("default")
        else:
            raise ConfigError(f'invalid parameter "{vals[0]}"', st.end)
        return
    rules.append((b.template(vals[0], st.end), b.template(vals[1], st.end)))


@directive("proxy_method", ANY_LOC, TAKE1)
def _proxy_method(b: Builder, blk: Block, st: Statement) -> None:
    b.set(blk, st, "proxy_method", b.template(st.args[0], st.end))


@directive("proxy_bind", ANY_LOC, TAKE12)
def _proxy_bind(b: Builder, blk: Block, st: Statement) -> None:
    vals = st.values
    if vals[0] == "off":
        b.set(blk, st, "proxy_bind", None)
        return
    if len(vals) == 2 and vals[1] != "transparent":
        raise ConfigError(f'invalid parameter "{vals[1]}"', st.end)
    b.set(blk, st, "proxy_bind", b.template(st.args[0], st.end))


@directive("proxy_temp_path", ANY_LOC, TAKE123 | ONEMORE)
def _proxy_temp_path(b: Builder, blk: Block, st: Statement) -> None:
    b.once(blk, st)  # halb buffers in memory; the directive is accepted


__all__ = ["RESOLVER", "freeze_upstreams", "resolve", "resolve_proxy_targets"]
