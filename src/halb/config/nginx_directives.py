"""The directives of nginx's core, events, http core, index, autoindex and static modules:
one handler each, registered in config/nginx.py's table (PURE). The log module's directives (and
error_log, stub_status) are in config/nginx_log.py; the generic slot handlers and nginx's regex
compilation, shared with the other directive modules, in config/nginx_slots.py.

Messages are nginx's own wording, so `halb nginx -t` reads like `nginx -t`.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from halb.config.errors import ConfigError
from halb.config.lexer import Statement
from halb.config.model import (
    ErrorPage,
    Listen,
    ServerName,
)
from halb.config.nginx import (
    ANY,
    ANY_HTTP,
    ANYARGS,
    EVENTS,
    FLAG,
    HTTP,
    LIF,
    LOC,
    MAIN,
    NOARGS,
    ONEMORE,
    SRV,
    TAKE1,
    TAKE2,
    TAKE12,
    TWOMORE,
    TYPES,
    Block,
    Builder,
    directive,
)
from halb.config.nginx_slots import (
    accepted,
    compile_regex,
    enum_slot,
    flag_slot,
    num_slot,
    size_slot,
    time_slot,
)
from halb.config.values import parse_size, parse_time

# -- main and events -------------------------------------------------------------------------

flag_slot("daemon", MAIN)
flag_slot("master_process", MAIN)
flag_slot("pcre_jit", MAIN, key="pcre_jit")
time_slot("worker_shutdown_timeout", MAIN)
num_slot("worker_rlimit_nofile", MAIN)
accepted("worker_cpu_affinity", MAIN, ONEMORE)
accepted("worker_priority", MAIN, TAKE1)
accepted("timer_resolution", MAIN, TAKE1)
accepted("lock_file", MAIN, TAKE1)
accepted("working_directory", MAIN, TAKE1)


@directive("worker_processes", MAIN, TAKE1)
def _worker_processes(b: Builder, blk: Block, st: Statement) -> None:
    v = st.args[0].value
    if v == "auto":
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        b.set(blk, st, "worker_processes", n or 1)
    elif v.isdigit():
        b.set(blk, st, "worker_processes", int(v))
    else:
        raise b.err(st, "invalid value")


@directive("pid", MAIN, TAKE1)
def _pid(b: Builder, blk: Block, st: Statement) -> None:
    b.set(blk, st, "pid", b.path(st.args[0].value))


@directive("user", MAIN, TAKE12)
def _user(b: Builder, blk: Block, st: Statement) -> None:
    user = st.args[0].value
    group = st.args[1].value if len(st.args) > 1 else user
    b.set(blk, st, "user", (user, group))
    if not b.is_root:
        b.warn('the "user" directive makes sense only if the master process runs with '
               'super-user privileges, ignored', st.end)
        return
    import grp  # nginx looks both up when it reads the directive (ngx_set_user)
    import pwd

    for lookup, fn, name in (("getpwnam", pwd.getpwnam, user), ("getgrnam", grp.getgrnam, group)):
        try:
            fn(name)
        except KeyError:
            raise ConfigError(f'{lookup}("{name}") failed', st.end) from None


@directive("env", MAIN, TAKE1)
def _env(b: Builder, blk: Block, st: Statement) -> None:
    blk.settings.setdefault("env", []).append(st.args[0].value)


@directive("load_module", MAIN, TAKE1)
def _load_module(b: Builder, blk: Block, st: Statement) -> None:
    if "events" in blk.seen or "http" in blk.seen:  # nginx: after a block used the modules
        raise b.err(st, "is specified too late")
    b.warn(f'dynamic module "{st.args[0].value}" is not loaded: halb builds its modules in',
           st.end)


@directive("events", MAIN, NOARGS, block=True)
def _events(b: Builder, blk: Block, st: Statement) -> None:
    b.once(blk, st)
    assert st.block is not None
    b.run(st.block, Block(EVENTS, blk, settings=blk.settings))


@directive("worker_connections", EVENTS, TAKE1)
def _worker_connections(b: Builder, blk: Block, st: Statement) -> None:
    v = st.args[0].value
    if not v.isdigit():
        raise ConfigError(f'invalid number "{v}"', st.end)
    b.set(blk, st, "worker_connections", int(v))


flag_slot("multi_accept", EVENTS)
accepted("accept_mutex", EVENTS, FLAG)
accepted("accept_mutex_delay", EVENTS, TAKE1)
accepted("worker_aio_requests", EVENTS, TAKE1)


@directive("use", EVENTS, TAKE1)
def _use(b: Builder, blk: Block, st: Statement) -> None:
    v = st.args[0].value
    if v not in ("epoll", "poll", "select"):
        raise ConfigError(f'invalid event type "{v}"', st.end)
    b.set(blk, st, "events_use", v)


# -- http, server, location ------------------------------------------------------------------


@directive("http", MAIN, NOARGS, block=True)
def _http(b: Builder, blk: Block, st: Statement) -> None:
    b.once(blk, st)
    hb = Block(HTTP, blk, pos=st.end)
    b.http_block = hb
    b.http_close = st.close
    assert st.block is not None
    b.run(st.block, hb)
    b.end_http(hb)


@directive("server", HTTP, NOARGS, block=True)
def _server(b: Builder, blk: Block, st: Statement) -> None:
    sb = Block(SRV, blk, pos=st.end)
    blk.servers.append(sb)
    assert st.block is not None
    b.run(st.block, sb)


@directive("location", SRV | LOC, TAKE12, block=True)
def _location(b: Builder, blk: Block, st: Statement) -> None:
    vals = st.values
    if len(vals) == 2:
        mod, name = vals
        if mod not in ("=", "~", "~*", "^~"):
            raise ConfigError(f'invalid location modifier "{mod}"', st.end)
    else:
        name = vals[0]
        mod = ""
        if name.startswith("="):  # "=" alone is the exact location "" (as in nginx)
            mod, name = "=", name[1:]
        elif name.startswith("~*"):
            mod, name = "~*", name[2:]
        elif name.startswith("~"):
            mod, name = "~", name[1:]
        elif name.startswith("^~"):
            mod, name = "^~", name[2:]
        elif name.startswith("@"):
            mod = "@"
    lb = Block(LOC, blk, modifier=mod, name=name, pos=st.end)
    if mod in ("~", "~*"):
        lb.regex = compile_regex(b, name, mod == "~*", st)
    if blk.ctx == LOC:
        if blk.modifier == "=":
            raise ConfigError(f'location "{name}" cannot be inside the exact location '
                              f'"{blk.name}"', st.end)
        if blk.modifier == "@":
            raise ConfigError(f'location "{name}" cannot be inside the named location '
                              f'"{blk.name}"', st.end)
        if mod == "@":
            raise ConfigError(f'named location "{name}" can be on the server level only', st.end)
        if lb.regex is None and not name.startswith(blk.name):
            raise ConfigError(f'location "{name}" is outside location "{blk.name}"', st.end)
    # duplicates are found when the http block ends (Builder.end_http), as nginx does
    blk.locations.append(lb)
    assert st.block is not None
    b.run(st.block, lb)


def _parse_listen_addr(b: Builder, st: Statement, text: str) -> tuple[str, int]:
    """nginx's ngx_parse_url for `listen` (default port 80); halb resolves no host names."""

    def bad(err: str) -> ConfigError:
        return ConfigError(f'{err} in "{text}" of the "listen" directive', st.end)

    if text.startswith("unix:"):
        if len(text) == 5:
            raise bad("no path in the unix domain socket")
        return text, 0
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise bad("invalid host")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise bad("invalid host")
        port_s = rest[1:] if rest else "80"
        if not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
            raise bad("invalid port")
        if not host:
            raise bad("no host")
        try:
            if "%" in host:  # nginx takes no zone index here
                raise ValueError(host)
            addr6 = ipaddress.IPv6Address(host)
        except ValueError:
            raise bad("invalid IPv6 address") from None
        return ("::" if addr6 == ipaddress.IPv6Address("::") else str(addr6)), int(port_s)
    if "/" in text:
        raise bad("invalid host")
    host, colon, port_s = text.partition(":")  # the first ':' (ngx_strlchr)
    if not colon:
        if text.isdigit():  # a port alone
            if not 1 <= int(text) <= 65535:
                raise bad("invalid port")
            return "*", int(text)
        port_s = "80"
    if not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
        raise bad("invalid port")
    if not host:
        raise bad("no host")
    if host == "*":
        return "*", int(port_s)
    if host == "localhost":
        host = "127.0.0.1"
    try:
        addr = ipaddress.IPv4Address(host)
    except ValueError:
        raise bad("host not found") from None
    return ("*" if str(addr) == "0.0.0.0" else str(addr)), int(port_s)


def _so_keepalive_ok(value: str) -> bool:
    """on | off | [keepidle]:[keepintvl]:[keepcnt], not all three empty or zero."""
    if value in ("on", "off"):
        return True
    parts = value.split(":", 2)
    idle, intvl, cnt = parts + [""] * (3 - len(parts))
    times = [parse_time(t, allow_ms=False) if t else 0 for t in (idle, intvl)]
    if None in times or (cnt and not cnt.isdigit()):
        return False
    return bool(times[0] or times[1] or (cnt and int(cnt)))


@directive("listen", SRV, ONEMORE)
def _listen(b: Builder, blk: Block, st: Statement) -> None:
    addr, port = _parse_listen_addr(b, st, st.args[0].value)
    opts: dict[str, Any] = {}
    for a in st.args[1:]:
        v = a.value
        # the options of the socket itself set nginx's lsopt.set and lsopt.bind
        if v in ("default_server", "default"):
            opts["default_server"] = True
        elif v in ("bind", "deferred"):
            opts["bind"] = True
        elif v == "reuseport":
            opts["reuseport"] = opts["bind"] = True
        elif v.startswith("backlog="):
            n = v[8:]
            if not n.isdigit() or int(n) == 0:
                raise ConfigError(f'invalid backlog "{v}"', st.end)
            opts["backlog"] = int(n)
            opts["bind"] = True
        elif v.startswith(("rcvbuf=", "sndbuf=")):
            if parse_size(v[7:]) is None:
                raise ConfigError(f'invalid {v[:6]} "{v}"', st.end)
            opts["bind"] = True
        elif v.startswith("fastopen="):
            if not v[9:].isdigit():
                raise ConfigError(f'invalid fastopen "{v}"', st.end)
            opts["bind"] = True
        elif v.startswith("ipv6only=o"):
            if v[10:] not in ("n", "ff"):
                raise ConfigError(f'invalid ipv6only flags "{v[9:]}"', st.end)
            opts["ipv6only"] = v[10:] == "n"
            opts["bind"] = True
        elif v.startswith("accept_filter="):  # FreeBSD only; nginx logs it and goes on
            b.warnings.append(ConfigError(f'accept filters "{v}" are not supported on this '
                                          'platform, ignored', st.end, level="emerg"))
        elif v.startswith("so_keepalive="):
            if not _so_keepalive_ok(v[13:]):
                raise ConfigError(f'invalid so_keepalive value: "{v[13:]}"', st.end)
            opts["bind"] = True
        elif v in ("ssl", "http2", "proxy_protocol"):  # per address (l7/tls_accept.py)
            opts[v] = True
        else:
            raise ConfigError(f'invalid parameter "{v}"', st.end)
    ls = Listen(addr, port, pos=st.end, **opts)
    # nginx's ngx_http_add_addresses: one entry per address:port for the whole http block
    entry = b.listen_addrs.setdefault(ls.key, {"servers": [], "set": False, "default": False})
    if blk in entry["servers"]:
        raise ConfigError(f"a duplicate listen {ls}", st.end)
    entry["servers"].append(blk)
    if ls.bind:
        if entry["set"]:
            raise ConfigError(f"duplicate listen options for {ls}", st.end)
        entry["set"] = True
    if ls.default_server:
        if entry["default"]:
            raise ConfigError(f"a duplicate default server for {ls}", st.end)
        entry["default"] = True
    blk.listens.append(ls)


@directive("server_name", SRV, ONEMORE)
def _server_name(b: Builder, blk: Block, st: Statement) -> None:
    blk.has_server_name = True
    for a in st.args:
        raw = a.value
        if (raw.startswith("*") and (len(raw) < 3 or raw[1] != ".")) or raw == ".":
            raise ConfigError(f'server name "{raw}" is invalid', st.end)
        if "/" in raw:
            b.warn(f'server name "{raw}" has suspicious symbols', st.end)
        if raw.startswith("~"):
            blk.names.append(ServerName("regex", raw, compile_regex(b, raw[1:], True, st), raw))
            continue
        # other bad wildcards ("a*b", "*.a.*") are found when the http block ends, and only
        # where an address has more than one server, as nginx does (Builder.end_http)
        name = raw.lower()
        if name.endswith(".") and len(name) > 1:
            name = name[:-1]
        if name.startswith("*."):
            blk.names.append(ServerName("lead", name[1:], None, raw))
        elif name.startswith("."):
            blk.names.append(ServerName("exact", name[1:], None, raw))
            blk.names.append(ServerName("lead", name, None, raw))
        elif name.endswith(".*"):
            blk.names.append(ServerName("trail", name[:-1], None, raw))
        else:
            blk.names.append(ServerName("exact", name, None, raw))


@directive("root", ANY_HTTP | LIF, TAKE1)
def _root(b: Builder, blk: Block, st: Statement) -> None:
    if "root" in blk.seen or "alias" in blk.seen:
        prev = "alias" if "alias" in blk.seen else "root"
        raise b.err(st, "is duplicate" if prev == "root"
                    else 'is duplicate, "alias" directive was specified earlier')
    blk.seen["root"] = st
    value = st.args[0].value
    if value.endswith("/") and len(value) > 1:
        value = value[:-1] if not value.endswith("//") else value
    if "$" not in value and not os.path.isabs(value):
        value = b.path(value)
    blk.settings["root"] = b.template(value, st.end)
    blk.settings["alias_name"] = None


@directive("alias", LOC, TAKE1)
def _alias(b: Builder, blk: Block, st: Statement) -> None:
    if "root" in blk.seen or "alias" in blk.seen:
        prev = "alias" if "alias" in blk.seen else "root"
        raise b.err(st, "is duplicate" if prev == "alias"
                    else 'is duplicate, "root" directive was specified earlier')
    if blk.modifier == "@":
        raise ConfigError('the "alias" directive cannot be used inside the named location',
                          st.end)
    blk.seen["alias"] = st
    value = st.args[0].value
    if "$" not in value and not os.path.isabs(value):
        value = b.path(value)
    blk.settings["root"] = b.template(value, st.end)
    blk.settings["alias_name"] = "" if blk.regex is not None else blk.name


@directive("index", ANY_HTTP, ONEMORE)
def _index(b: Builder, blk: Block, st: Statement) -> None:
    if "index" not in blk.seen:
        blk.seen["index"] = st
        blk.settings["index"] = []
    for i, a in enumerate(st.args):
        if not a.value:
            raise ConfigError('index "" in "index" directive is invalid', st.end)
        if a.value.startswith("/") and i != len(st.args) - 1:  # a warning in nginx
            b.warn('only the last index in "index" directive should be absolute', st.end)
        blk.settings["index"].append(b.template(a.value, st.end))


@directive("try_files", SRV | LOC, TWOMORE)
def _try_files(b: Builder, blk: Block, st: Statement) -> None:
    b.once(blk, st)
    last = st.args[-1].value
    if last.startswith("="):
        code = last[1:]
        if not code.isdigit() or int(code) > 999:
            raise ConfigError(f'invalid code "{last}"', st.end)
    blk.settings["try_files"] = [b.template(a.value, st.end) for a in st.args]


@directive("error_page", ANY_HTTP | LIF, TWOMORE)
def _error_page(b: Builder, blk: Block, st: Statement) -> None:
    if "error_pages" not in blk.seen:
        blk.seen["error_pages"] = st
        blk.settings["error_pages"] = {}
    args = st.values
    uri = args[-1]
    overwrite_arg = args[-2] if args[-2].startswith("=") else None
    codes = args[:-2] if overwrite_arg is not None else args[:-1]
    code_over: int | None = None
    overwrite = False
    if overwrite_arg is not None:
        if not codes or not (overwrite_arg == "=" or overwrite_arg[1:].isdigit()):
            raise ConfigError(f'invalid value "{overwrite_arg}"', st.end)
        code_over = int(overwrite_arg[1:]) if overwrite_arg != "=" else 0
        if code_over == 0:  # "=" and "=0": the status of the page it redirects to
            code_over, overwrite = None, True
    page = ErrorPage(b.template(uri, st.end), code_over, overwrite)
    for c in codes:
        if not c.isdigit() or int(c) == 499:
            raise ConfigError(f'invalid value "{c}"', st.end)
        n = int(c)
        if not 300 <= n <= 599:
            raise ConfigError(f'value "{c}" must be between 300 and 599', st.end)
        blk.settings["error_pages"][n] = page


@directive("internal", LOC, NOARGS)
def _internal(b: Builder, blk: Block, st: Statement) -> None:
    b.set(blk, st, "internal", True)


@directive("keepalive_timeout", ANY_HTTP, TAKE12)
def _keepalive_timeout(b: Builder, blk: Block, st: Statement) -> None:
    t = parse_time(st.args[0].value)
    h = parse_time(st.args[1].value, allow_ms=False) if len(st.args) > 1 else None  # seconds
    if t is None or (len(st.args) > 1 and h is None):
        raise b.err(st, "invalid value")
    b.set(blk, st, "keepalive_timeout", t)
    blk.settings["keepalive_header"] = h


@directive("large_client_header_buffers", HTTP | SRV, TAKE2)
def _large_buffers(b: Builder, blk: Block, st: Statement) -> None:
    n, size = st.args[0].value, parse_size(st.args[1].value)
    if not n.isdigit() or int(n) == 0 or size is None or size == 0:
        raise b.err(st, "invalid value")
    b.set(blk, st, "large_client_header_buffers", (int(n), size))


@directive("default_type", ANY_HTTP, TAKE1)
def _default_type(b: Builder, blk: Block, st: Statement) -> None:
    b.set(blk, st, "default_type", st.args[0].value)


@directive("types", ANY_HTTP, NOARGS, block=True)
def _types(b: Builder, blk: Block, st: Statement) -> None:
    tb = Block(TYPES, blk)  # a second "types" block of a level adds to the first (as nginx)
    tb.settings["types"] = dict(blk.settings.get("types", {}))
    assert st.block is not None
    b.run(st.block, tb)
    blk.settings["types"] = tb.settings["types"]


@directive("\0type", TYPES, ANYARGS)
def _type_entry(b: Builder, blk: Block, st: Statement) -> None:
    mime = st.name.value
    types: dict[str, str] = blk.settings["types"]
    for a in st.args:
        ext = a.value.lower()
        if ext in types and types[ext] != mime:
            b.warn(f'duplicate extension "{ext}", content type: "{mime}", '
                   f'previous content type: "{types[ext]}"', st.end)
        types[ext] = mime


@directive("disable_symlinks", ANY_HTTP, TAKE12)
def _disable_symlinks(b: Builder, blk: Block, st: Statement) -> None:
    v = st.args[0].value
    if v not in ("off", "on", "if_not_owner"):
        raise ConfigError(f'invalid value "{v}"', st.end)
    b.set(blk, st, "disable_symlinks", v)


@directive("open_file_cache", ANY_HTTP, TAKE12)
def _open_file_cache(b: Builder, blk: Block, st: Statement) -> None:
    for a in st.args:
        if a.value != "off" and not a.value.startswith(("max=", "inactive=")):
            raise ConfigError(f'invalid "open_file_cache" parameter "{a.value}"', st.end)
    b.once(blk, st)


# on/off switches of the http core and friends
for _name in ("sendfile", "tcp_nopush", "tcp_nodelay", "autoindex", "autoindex_exact_size",
              "autoindex_localtime", "etag", "absolute_redirect", "port_in_redirect",
              "server_name_in_redirect", "msie_padding", "log_not_found", "log_subrequest",
              "chunked_transfer_encoding", "reset_timedout_connection"):
    flag_slot(_name, ANY_HTTP | (LIF if _name == "sendfile" else 0))
for _name in ("merge_slashes", "ignore_invalid_headers", "underscores_in_headers"):
    flag_slot(_name, HTTP | SRV)
flag_slot("msie_refresh", ANY_HTTP, key="msie_refresh")

for _name in ("client_body_timeout", "send_timeout", "keepalive_time", "lingering_time",
              "lingering_timeout", "resolver_timeout", "postpone_output_timeout"):
    time_slot(_name, ANY_HTTP)
time_slot("client_header_timeout", HTTP | SRV)
for _name in ("client_body_buffer_size", "sendfile_max_chunk", "output_buffers_size",
              "postpone_output"):
    size_slot(_name, ANY_HTTP)
size_slot("client_max_body_size", ANY_HTTP, allow_g=True)
size_slot("client_header_buffer_size", HTTP | SRV)
num_slot("keepalive_requests", ANY_HTTP)
enum_slot("server_tokens", ANY_HTTP, ("on", "off", "build"))
enum_slot("if_modified_since", ANY_HTTP, ("off", "exact", "before"))
enum_slot("lingering_close", ANY_HTTP, ("off", "on", "always"))
enum_slot("autoindex_format", ANY_HTTP, ("html", "xml", "json", "jsonp"))
num_slot("max_ranges", ANY_HTTP)
for _name in ("server_names_hash_bucket_size", "server_names_hash_max_size",
              "types_hash_max_size", "types_hash_bucket_size", "variables_hash_max_size",
              "variables_hash_bucket_size", "map_hash_max_size", "map_hash_bucket_size",
              "open_file_cache_min_uses", "open_file_cache_valid"):
    accepted(_name, ANY_HTTP, TAKE1)
accepted("open_file_cache_errors", ANY_HTTP, FLAG)
accepted("charset", ANY_HTTP | LIF, TAKE1)
accepted("source_charset", ANY_HTTP | LIF, TAKE1)
accepted("aio", ANY_HTTP, TAKE1)
accepted("directio", ANY_HTTP, TAKE1)
accepted("output_buffers", ANY_HTTP, TAKE2)
accepted("resolver", ANY_HTTP, ONEMORE)


@directive("include", ANY, TAKE1)
def _include(b: Builder, blk: Block, st: Statement) -> None:  # expanded by the lexer
    raise AssertionError("include is expanded while parsing")


