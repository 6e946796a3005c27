"""nginx variables: evaluating `$name` for a request, and expanding compiled Templates.

Each variable is a small function of the request; families ($http_*, $arg_*, $cookie_*,
$sent_http_*) are resolved by prefix. A missing value is None (the access log prints "-").
The set of names is config/template.py's KNOWN_VARIABLES; a test checks both agree for the
variables this module implements.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from halb import __version__
from halb.config.template import Template, Var
from halb.l7.referer import invalid_referer
from halb.l7.request import Request
from halb.l7.response import DATES

Getter = Callable[[Request], "str | None"]

_HOSTNAME = socket.gethostname()


def _remote_user(r: Request) -> str | None:
    auth = r.headers.get("authorization")
    if not auth or auth[:6].lower() != "basic ":
        return None
    import base64
    import binascii

    try:
        decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("latin-1")
    except (binascii.Error, ValueError):
        return None
    return decoded.split(":", 1)[0] if ":" in decoded else None


def _document_root(r: Request) -> str | None:
    from halb.l7.static import document_root

    return document_root(r)


def _request_filename(r: Request) -> str | None:
    from halb.l7.static import map_uri_to_path

    return map_uri_to_path(r, r.uri)


def _realpath_root(r: Request) -> str | None:
    root = _document_root(r)
    return os.path.realpath(root) if root else None


def _host(r: Request) -> str:
    if r.host:
        return r.host
    return r.server.server_name if r.server else ""


def _msec(r: Request) -> str:
    return f"{time.time():.3f}"


def _request_time(r: Request) -> str:
    return f"{max(0.0, time.monotonic() - r.start):.3f}"


def _status(r: Request) -> str:
    return f"{r.status:03d}" if r.status else "000"


def _server_name(r: Request) -> str:
    return r.server.server_name if r.server else ""


def _sent_header(r: Request, name: str) -> str | None:
    resp = r.response
    if resp is None:
        return None
    special = {
        "content_type": resp.content_type,
        "content_length": str(resp.content_length if resp.content_length is not None
                              else len(resp.body)),
        "location": resp.location,
        "etag": resp.etag,
        "connection": "keep-alive" if r.keepalive else "close",
    }
    if name in special:
        return special[name]
    for k, v in resp.headers:
        if k.lower().replace("-", "_") == name:
            return v
    return None


def arg(args: str | None, name: str) -> str | None:
    if not args:
        return None
    for pair in args.split("&"):
        k, _, v = pair.partition("=")
        if k.lower() == name:
            return v
    return None


def cookie(r: Request, name: str) -> str | None:
    header = r.headers.get("cookie")
    if not header:
        return None
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None


def http_header(r: Request, name: str) -> str | None:
    """$http_NAME: the header, several values joined as nginx joins them."""
    header = name.replace("_", "-")
    if header in ("cookie", "x-forwarded-for"):
        values = [v for k, v in r.header_list if k.lower() == header]
        if not values:
            return None
        return (", " if header == "x-forwarded-for" else "; ").join(values)
    return r.headers.get(header)


def _invalid_referer(r: Request) -> str:
    conf = r.conf
    refs = conf.extra.get("valid_referers") if conf is not None else None
    return invalid_referer(refs, r.headers.get("referer"))


def _uninitialized(r: Request, name: str) -> str:
    """A variable that only `set` gives a value, read where none was set: "" (and nginx's
    warning, once per request, unless uninitialized_variable_warn is off)."""
    conf = r.conf
    if conf is None or conf.extra.get("uninitialized_variable_warn", True):
        r.conn.log_error("warn", f'using uninitialized "{name}" variable', r)
    if r.var_cache is None:
        r.var_cache = {}
    r.var_cache[name] = ""
    return ""


def _proxy_add_x_forwarded_for(r: Request) -> str:
    xff = http_header(r, "x_forwarded_for")
    return f"{xff}, {r.conn.remote_addr}" if xff else r.conn.remote_addr


def _upstream(name: str) -> Getter:
    def get(r: Request) -> str | None:
        proxy = r.proxy
        return proxy.variable(name) if proxy is not None else None

    return get


def _proxy_body_length(r: Request) -> str | None:
    proxy = r.proxy
    n = proxy.body_len if proxy is not None else None
    return str(n) if n is not None else None


def _tls(fn: Callable[[object], str | None]) -> Getter:
    def get(r: Request) -> str | None:
        obj = getattr(r.conn, "tls", None)
        return fn(obj) if obj is not None else None

    return get


def _pp(attr: str) -> Getter:
    def get(r: Request) -> str | None:
        pp = getattr(r.conn, "pp", None)
        return str(getattr(pp, attr)) if pp is not None else None

    return get


def _realip_port(r: Request) -> str:
    port = getattr(r.conn, "orig_port", r.conn.remote_port)
    return str(port) if port else ""


# ssl, PROXY protocol and realip (l7/tls_accept.FeatureConnection carries their state)
TLS_VARIABLES: dict[str, Getter] = {
    "scheme": lambda r: "https" if getattr(r.conn, "tls", None) is not None else "http",
    "https": lambda r: "on" if getattr(r.conn, "tls", None) is not None else "",
    "ssl_protocol": _tls(lambda t: t.version()),  # type: ignore[attr-defined]
    "ssl_cipher": _tls(lambda t: t.cipher()[0]),  # type: ignore[attr-defined]
    "ssl_server_name": _tls(lambda t: getattr(t, "halb_server_name", None)),
    "ssl_session_reused": _tls(lambda t: "r" if t.session_reused else "."),  # type: ignore
    "proxy_protocol_addr": _pp("src_addr"),
    "proxy_protocol_port": _pp("src_port"),
    "proxy_protocol_server_addr": _pp("dst_addr"),
    "proxy_protocol_server_port": _pp("dst_port"),
    "realip_remote_addr": lambda r: getattr(r.conn, "orig_addr", None) or r.conn.remote_addr,
    "realip_remote_port": _realip_port,
}

VARIABLES: dict[str, Getter] = {
    "proxy_add_x_forwarded_for": _proxy_add_x_forwarded_for,
    "proxy_host": lambda r: r.proxy.proxy_host if r.proxy is not None else None,
    "proxy_port": lambda r: str(r.proxy.proxy_port) if r.proxy is not None else None,
    "proxy_internal_body_length": _proxy_body_length,
    "proxy_internal_chunked": lambda r: "chunked" if r.proxy is not None and r.proxy.upchunked
    else None,
    **{f"upstream_{n}": _upstream(n) for n in (
        "addr", "status", "response_time", "connect_time", "header_time", "response_length",
        "bytes_received", "bytes_sent")},
    "args": lambda r: r.args,
    "query_string": lambda r: r.args,
    "is_args": lambda r: "?" if r.args else "",
    "uri": lambda r: r.uri,
    "document_uri": lambda r: r.uri,
    "request_uri": lambda r: r.target,
    "request": lambda r: r.request_line,
    "request_method": lambda r: r.method,
    "server_protocol": lambda r: r.protocol,
    **TLS_VARIABLES,
    "host": _host,
    "hostname": lambda r: _HOSTNAME,
    "remote_addr": lambda r: r.conn.remote_addr,
    "binary_remote_addr": lambda r: r.conn.remote_addr,
    "remote_port": lambda r: str(r.conn.remote_port) if r.conn.remote_port else "",
    "remote_user": _remote_user,
    "server_addr": lambda r: r.conn.server_addr,
    "server_port": lambda r: str(r.conn.server_port),
    "server_name": _server_name,
    "status": _status,
    "body_bytes_sent": lambda r: str(r.body_bytes_sent),
    "bytes_sent": lambda r: str(r.bytes_sent),
    "request_length": lambda r: str(r.request_length),
    "request_time": _request_time,
    "msec": _msec,
    "time_local": lambda r: DATES.time_local,
    "time_iso8601": lambda r: DATES.time_iso8601,
    "pid": lambda r: str(os.getpid()),
    "nginx_version": lambda r: __version__,
    "connection": lambda r: str(r.conn.number),
    "connection_requests": lambda r: str(r.conn_requests),
    "content_length": lambda r: r.headers.get("content-length"),
    "content_type": lambda r: r.headers.get("content-type"),
    "document_root": _document_root,
    "realpath_root": _realpath_root,
    "request_filename": _request_filename,
    "pipe": lambda r: "p" if r.pipeline else ".",
    "invalid_referer": _invalid_referer,
    "gzip_ratio": lambda r: r.response.gzip.ratio() if r.response is not None
    and r.response.gzip is not None else None,
}

_PREFIXED: list[tuple[str, Callable[[Request, str], str | None]]] = [
    ("http_", http_header),
    ("sent_http_", _sent_header),
    ("arg_", lambda r, n: arg(r.args, n)),
    ("cookie_", cookie),
    ("upstream_http_", lambda r, n: r.proxy.upstream_header(n) if r.proxy is not None
     else None),
]


def get(r: Request, name: str) -> str | None:
    """The value of `$name` for request r (None when it has none)."""
    if name.isdigit():
        i = int(name)
        if i == 0:
            return None
        caps = r.captures
        return caps[i - 1] if i - 1 < len(caps) else None
    fn = VARIABLES.get(name)
    if fn is not None:
        return fn(r)
    cache = r.var_cache  # set by `set`
    if cache is not None and name in cache:
        return cache[name]
    if name in r.named_captures:
        return r.named_captures[name]
    for prefix, family in _PREFIXED:
        if name.startswith(prefix):
            return family(r, name[len(prefix):])
    conf = r.conf
    if conf is not None:
        declared = conf.extra.get("set_variables")
        if declared is not None and name in declared:
            return _uninitialized(r, name)
    return None


def expand(t: Template, r: Request) -> str:
    """A template's value for request r (missing variables expand to "")."""
    parts = t.parts
    if len(parts) == 1 and isinstance(parts[0], str):
        return parts[0]
    out = []
    for p in parts:
        if isinstance(p, Var):
            v = get(r, p.name)
            if v:
                out.append(v)
        else:
            out.append(p)
    return "".join(out)


def unescape_arg(value: str) -> str:
    return unquote_to_bytes(value.replace("+", " ")).decode("utf-8", "surrogateescape")
