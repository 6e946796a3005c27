"""What crosses the proxy, as nginx's proxy module writes it (ngx_http_proxy_create_request, the
upstream header handlers and ngx_http_header_filter for a proxied response).

To the upstream: the request line with nginx's URI rules (a URI part replaces the matched
location prefix; without one, the client's original request-target is sent unless the URI was
changed; escaping with NGX_ESCAPE_URI when the URI came escaped or was changed internally),
then the proxy_set_header list (the level's own, then nginx's defaults Host $proxy_host,
Connection close and the hop-by-hop removals; an empty value sends nothing), then the client's
headers not named by that list.

To the client: the upstream's status line as it came ("HTTP/1.1 " + "599 Custom"), nginx's own
Server and Date unless proxy_pass_header lets the upstream's through, Content-Type and
Content-Length in the header filter's places, a Location rewritten by proxy_redirect and made
absolute in its early place, Transfer-Encoding, Connection ("upgrade" for 101), then the
upstream's other headers in their order minus the hidden ones (Date, Server, X-Pad, X-Accel-*,
proxy_hide_header) and the hop-by-hop ones. Last-Modified, ETag and the rest stay where the
upstream put them.

Everything that depends only on the location is computed once into a Plan (first use).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from halb.config.model import ProxyPass
from halb.config.template import Template, compile_template
from halb.l7.response import DATES, SERVER_NAME, SERVER_VERSION, status_line
from halb.l7.uri import ESCAPE_URI, escape
from halb.l7.variables import VARIABLES, expand, get

if TYPE_CHECKING:
    from halb.l7.request import Request

# ngx_http_proxy_headers (1.22): the defaults under any proxy_set_header of a level
DEFAULT_SET_HEADERS: tuple[tuple[str, Template], ...] = tuple(
    (name, compile_template(value)) for name, value in (
        ("Host", "$proxy_host"), ("Connection", "close"),
        ("Content-Length", "$proxy_internal_body_length"),
        ("Transfer-Encoding", "$proxy_internal_chunked"), ("TE", ""), ("Keep-Alive", ""),
        ("Expect", ""), ("Upgrade", "")))
_INTERNAL = {"$proxy_internal_body_length": 1, "$proxy_internal_chunked": 2}
# ngx_http_proxy_cache_headers: what a caching location does not pass on
CACHE_SET_HEADERS: tuple[tuple[str, Template], ...] = tuple(
    (name, compile_template(value)) for name, value in (
        ("If-Modified-Since", "$upstream_cache_last_modified"), ("If-Unmodified-Since", ""),
        ("If-None-Match", "$upstream_cache_etag"), ("If-Match", ""), ("Range", ""),
        ("If-Range", "")))

# response headers nginx does not pass by default (proxy_hide_header's built-in list)
HIDDEN = frozenset({"date", "server", "x-pad", "x-accel-expires", "x-accel-redirect",
                    "x-accel-limit-rate", "x-accel-buffering", "x-accel-charset"})
# response headers the upstream module consumes itself (hop-by-hop, or placed by the filter)
CONSUMED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                      "content-type"})
# headers an X-Accel-Redirect keeps for the redirected response (the table's `redirect` flag)
ACCEL_KEEP = frozenset({"content-type", "set-cookie", "content-disposition", "cache-control",
                        "expires", "accept-ranges"})

NORMAL, BODY_LENGTH, CHUNKED_FLAG, SKIP = range(4)


def escape_uri(uri: str) -> str:
    """ngx_escape_uri(NGX_ESCAPE_URI): controls, space, #, %, ?, DEL and non-ASCII as %XX."""
    return escape(uri, ESCAPE_URI)


def _path_start(target: str) -> int:
    """Where the path of a request-target starts (after "scheme://host[:port]")."""
    if target.startswith("/"):
        return 0
    i = target.find("://")
    if i < 0:
        return 0
    j = target.find("/", i + 3)
    return j if j >= 0 else len(target)


def quoted_uri(target: str) -> bool:
    """nginx's r->quoted_uri: the request line's path (before "?") holds a "%"."""
    if "%" not in target:
        return False
    start = _path_start(target)
    end = target.find("?", start)
    return "%" in (target[start:] if end < 0 else target[start:end])


def upstream_uri(r: Request, pp: ProxyPass, uri_part: str | None) -> str:
    """The request-target sent upstream (ngx_http_proxy_create_request)."""
    if pp.has_variables and uri_part:
        return uri_part  # with variables the URI is used as is
    if not uri_part and not r.uri_changed and not r.internal:
        target = r.target  # the client's request-target, untouched (r->unparsed_uri)
        start = _path_start(target)
        return target[start:] if start < len(target) else "/" + target[start:]
    if not r.valid_location:  # after rewrite's `break`: the whole URI, proxy_pass's part ignored
        uri_part = None
    loc_len = len(pp.location_name) if uri_part and not pp.location_regex else 0
    rest = r.uri[loc_len:]
    if r.internal or quoted_uri(r.target):
        rest = escape_uri(rest)
    out = (uri_part or "") + rest
    if r.args:
        out += "?" + r.args
    return out


def _enc(value: str) -> bytes:
    """A header value as bytes: header values are kept as latin-1 text, URIs as UTF-8."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


# variables whose text came from header bytes (kept as latin-1); the others come from the
# request line (kept as UTF-8 with surrogate escapes) or are ASCII
_HEADER_VARS = ("http_", "cookie_", "sent_http_", "upstream_http_")
_HEADER_NAMES = frozenset({"host", "proxy_add_x_forwarded_for", "remote_user", "content_type",
                           "content_length"})


def _latin1_var(name: str) -> bool:
    return name in _HEADER_NAMES or name.startswith(_HEADER_VARS)


def expand_bytes(tpl: Template, r: Request) -> bytes:
    """A template's value as the bytes nginx would produce: each variable in the encoding its
    text was decoded with."""
    out = []
    for part in tpl.parts:
        if isinstance(part, str):
            out.append(part.encode("utf-8", "surrogateescape"))
            continue
        value = get(r, part.name)
        if not value:
            continue
        if _latin1_var(part.name):
            out.append(_enc(value))
        else:
            out.append(value.encode("utf-8", "surrogateescape"))
    return b"".join(out)


class Plan:
    """A location's proxy settings, resolved once (the location's `extra` is immutable)."""

    __slots__ = ("bind", "buffer_size", "buffering", "connect_timeout", "extra", "hide",
                 "ignore_client_abort", "intercept_errors", "method", "named", "next_timeout",
                 "next_upstream", "own_date", "own_server", "pass_body", "pass_headers",
                 "postpone", "read_timeout", "redirects", "request_buffering", "send_timeout",
                 "sending", "set_headers", "tries_cap", "version_tail")

    def __init__(self, extra: Mapping[str, Any], default_next: frozenset[str]) -> None:
        self.extra = extra
        get = extra.get
        self.next_upstream: frozenset[str] = get("proxy_next_upstream", default_next)
        if "off" in self.next_upstream:
            self.next_upstream = frozenset()
        self.connect_timeout: float = get("proxy_connect_timeout", 60.0)
        self.read_timeout: float = get("proxy_read_timeout", 60.0)
        self.send_timeout: float = get("proxy_send_timeout", 60.0)
        self.next_timeout: float = get("proxy_next_upstream_timeout", 0.0)
        self.tries_cap: int = get("proxy_next_upstream_tries", 0)
        self.buffering: bool = get("proxy_buffering", True)
        self.request_buffering: bool = get("proxy_request_buffering", True)
        self.postpone: int = get("postpone_output", 1460)
        self.buffer_size: int = get("proxy_buffer_size", 4096)
        self.version_tail = f" HTTP/{get('proxy_http_version', '1.0')}\r\n".encode()
        self.pass_headers: bool = get("proxy_pass_request_headers", True)
        self.pass_body: bool = get("proxy_pass_request_body", True)
        self.intercept_errors: bool = get("proxy_intercept_errors", False)
        self.ignore_client_abort: bool = get("proxy_ignore_client_abort", False)
        self.method: Template | None = get("proxy_method")
        self.bind: Template | None = get("proxy_bind")
        hide = HIDDEN.difference(get("proxy_pass_header", ()))
        self.hide = hide.union(get("proxy_hide_header", ()))
        self.own_server = "server" in self.hide
        self.own_date = "date" in self.hide
        # the set_header list: (lower name, name bytes, static line or None, template, kind)
        own = get("proxy_set_header") or ()
        names = {n.lower() for n, _ in own}
        entries = []
        defaults = DEFAULT_SET_HEADERS + (CACHE_SET_HEADERS if get("proxy_cache") else ())
        for name, tpl in (*own, *((n, v) for n, v in defaults if n.lower() not in names)):
            kind = NORMAL
            line = None
            if tpl.is_static:
                if tpl.static:
                    line = _enc(name) + b": " + _enc(tpl.static) + b"\r\n"
                else:
                    kind = SKIP
            elif tpl.raw in _INTERNAL and any(tpl is t for _, t in DEFAULT_SET_HEADERS):
                kind = _INTERNAL[tpl.raw]
            entries.append((name.lower(), _enc(name), line, tpl, kind))
        self.set_headers = tuple(entries)
        self.named = frozenset(e[0] for e in entries)
        # what request_head goes through: the entries that may send a line (not the empty
        # ones), a template that is one known variable with that variable's function
        sending = []
        for _low, name_b, line, tpl, kind in entries:
            if kind == SKIP:
                continue
            getter = None
            latin1 = False
            if kind == NORMAL and line is None and len(tpl.parts) == 1:
                var = tpl.parts[0]
                if not isinstance(var, str) and not var.name.isdigit():
                    getter = VARIABLES.get(var.name)
                    latin1 = _latin1_var(var.name)
            sending.append((name_b, line, tpl, kind, getter, latin1))
        self.sending = tuple(sending)
        self.redirects = _redirect_rules(get("proxy_redirect"), get("proxy_pass"))


_PLANS: dict[int, Plan] = {}


def plan_for(extra: Mapping[str, Any], default_next: frozenset[str]) -> Plan:
    plan = _PLANS.get(id(extra))
    if plan is None or plan.extra is not extra:
        if len(_PLANS) > 4096:  # reloads make new configurations: forget old ones
            _PLANS.clear()
        plan = _PLANS[id(extra)] = Plan(extra, default_next)
    return plan


def request_head(r: Request, plan: Plan, method: str, uri: str,
                 body_length: int | None, chunked: bool = False) -> bytes:
    out = [method.encode("latin-1", "replace") + b" " + uri.encode("utf-8", "surrogateescape")
           + plan.version_tail]
    append = out.append
    for name, line, tpl, kind, getter, latin1 in plan.sending:
        if line is not None:
            append(line)
        elif kind == NORMAL:
            if getter is not None:  # one variable: expand_bytes without the loop
                text = getter(r)
                value = (_enc(text) if latin1 else text.encode("utf-8", "surrogateescape")) \
                    if text else b""
            else:
                value = expand_bytes(tpl, r)
            if value:
                append(name + b": " + value + b"\r\n")
        elif kind == BODY_LENGTH:
            if body_length is not None:
                append(b"Content-Length: %d\r\n" % body_length)
        elif kind == CHUNKED_FLAG and chunked:
            append(b"Transfer-Encoding: chunked\r\n")
    if plan.pass_headers:
        named = plan.named
        passed = [(name, value) for name, value in r.header_list if name.lower() not in named]
        try:  # (header text is latin-1: one encode for all)
            append("".join([f"{name}: {value}\r\n" for name, value in passed])
                   .encode("latin-1"))
        except UnicodeEncodeError:
            for name, value in passed:
                append(_enc(name) + b": " + _enc(value) + b"\r\n")
    append(b"\r\n")
    return b"".join(out)


# -- proxy_redirect --------------------------------------------------------------------------

def _redirect_rules(rules: Any, pp: ProxyPass | None) -> list[tuple[Any, Any]] | None:
    """(pattern, replacement) pairs, templates or text; None: proxy_redirect off."""
    if rules is None:
        rules = ["default"]
    out: list[tuple[Any, Any]] = []
    for rule in rules:
        if rule == "off":
            return None
        if rule == "default":
            if pp is None or pp.has_variables:
                continue
            url = pp.url.static
            if pp.uri is not None:
                out.append((url, pp.location_name))
            else:
                out.append((url + "/", "/"))
        else:
            pat, rep = rule
            out.append((pat.static if pat.is_static else pat,
                        rep.static if rep.is_static else rep))
    return out


def rewrite_redirect(r: Request, rules: list[tuple[Any, Any]], value: str,
                     prefix: int = 0) -> str | None:
    """ngx_http_proxy_rewrite_redirect: the value with the first matching rule applied at
    `prefix`, or None when no rule matches."""
    for pat, rep in rules:
        if not isinstance(pat, str):
            pat = expand(pat, r)
        if value.startswith(pat, prefix):
            if not isinstance(rep, str):
                rep = expand(rep, r)
            return value[:prefix] + rep + value[prefix + len(pat):]
    return None


# -- the response header ---------------------------------------------------------------------

_SERVER_FULL = f"Server: {SERVER_VERSION}\r\n".encode()
_SERVER_SHORT = f"Server: {SERVER_NAME}\r\n".encode()


def chunked_body(r: Request, conf: Any, status: int, length: int) -> bool:
    """A body of unknown length goes chunked to an HTTP/1.1 client (chunked_transfer_encoding
    on); otherwise the connection closes after it (r.keepalive cleared)."""
    if length >= 0 or r.method == "HEAD" or status in (204, 304) or status < 200:
        return False
    if r.version >= 11 and conf.chunked_transfer_encoding:
        return True
    r.keepalive = False
    return False


def render_head(r: Request, status: int, line: str | None, content_type: str | None,
                length: int, location: str | None, headers: list[tuple[str, str]],
                plan: Plan, chunked: bool, keepalive: bool, vary: bool = False) -> bytes:
    """ngx_http_header_filter for a proxied response: `line` is the upstream's status line
    ("200 OK"), None when an error_page status replaced it."""
    conf = r.conf
    assert conf is not None
    if line is not None:
        out = [b"HTTP/1.1 " + line.encode("latin-1") + b"\r\n"]
    else:
        out = [status_line(status)]
        if status == 204:  # only without the upstream's status line (nginx's 2XX branch)
            content_type = None
            length = -1
    if plan.own_server:
        out.append(_SERVER_FULL if conf.server_tokens != "off" else _SERVER_SHORT)
    if plan.own_date:
        out.append(DATES.header())
    if content_type is not None:
        out.append(b"Content-Type: " + _enc(content_type) + b"\r\n")
    if length >= 0:
        out.append(b"Content-Length: %d\r\n" % length)
    if location is not None:
        out.append(b"Location: " + _enc(location) + b"\r\n")
    if chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    if status == 101:
        out.append(b"Connection: upgrade\r\n")
    elif keepalive:
        out.append(b"Connection: keep-alive\r\n")
        if conf.keepalive_header:
            out.append(b"Keep-Alive: timeout=%d\r\n" % int(conf.keepalive_header))
    else:
        out.append(b"Connection: close\r\n")
    if vary:  # gzip_vary (l7/filters/gzip.py)
        out.append(b"Vary: Accept-Encoding\r\n")
    if headers:
        try:  # (header text is latin-1: one encode for all)
            out.append("".join([f"{name}: {value}\r\n" for name, value in headers])
                       .encode("latin-1"))
        except UnicodeEncodeError:
            for name, value in headers:
                out.append(_enc(name) + b": " + _enc(value) + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)
