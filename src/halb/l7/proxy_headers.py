"""What crosses the proxy, as nginx's proxy module writes it (ngx_http_proxy_create_request and
ngx_http_upstream_process_headers).

To the upstream: the request line with nginx's URI rules (a URI part replaces the matched
location prefix; without one, the client's original request-target is sent unless the URI was
changed; escaping with NGX_ESCAPE_URI when the URI was changed or came escaped), then the
proxy_set_header list (the level's own, then nginx's defaults Host $proxy_host, Connection close
and the hop-by-hop removals), then the client's headers not named by that list.

From the upstream: the status line as the upstream sent it, nginx's own Server and Date, the
upstream's headers minus the hidden ones (Date, Server, X-Pad, X-Accel-*) and the hop-by-hop
ones, Location and Refresh rewritten by proxy_redirect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from halb.config.model import ProxyPass
from halb.config.template import Template, compile_template
from halb.l7.variables import expand

if TYPE_CHECKING:
    from halb.l7.request import Request

# ngx_http_proxy_headers (1.22): the defaults under any proxy_set_header of a level
DEFAULT_SET_HEADERS: tuple[tuple[str, Template], ...] = tuple(
    (name, compile_template(value)) for name, value in (
        ("Host", "$proxy_host"), ("Connection", "close"),
        ("Content-Length", "$proxy_internal_body_length"),
        ("Transfer-Encoding", "$proxy_internal_chunked"), ("TE", ""), ("Keep-Alive", ""),
        ("Expect", ""), ("Upgrade", "")))

# response headers nginx does not pass by default (proxy_hide_header's built-in list)
HIDDEN = frozenset({"date", "server", "x-pad", "x-accel-expires", "x-accel-redirect",
                    "x-accel-limit-rate", "x-accel-buffering", "x-accel-charset"})
# response headers the upstream module consumes itself (hop-by-hop, or placed by nginx)
CONSUMED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                      "content-type", "last-modified", "location", "proxy-connection"})

_ESCAPE = frozenset([*range(0x00, 0x21), 0x23, 0x25, 0x3F, *range(0x7F, 0x100)])


def escape_uri(uri: str) -> str:
    """ngx_escape_uri(NGX_ESCAPE_URI): controls, space, #, %, ?, DEL and non-ASCII as %XX."""
    raw = uri.encode("utf-8", "surrogateescape")
    if not any(b in _ESCAPE for b in raw):
        return uri
    return "".join(f"%{b:02X}" if b in _ESCAPE else chr(b) for b in raw)


def upstream_uri(r: Request, pp: ProxyPass, uri_part: str | None) -> str:
    """The request-target sent upstream."""
    if pp.has_variables and uri_part is not None:
        return uri_part  # with variables the URI is used as is
    if uri_part is None and not r.uri_changed and not r.internal:
        return r.target  # the client's request-target, untouched
    loc_len = len(pp.location_name) if uri_part is not None and not pp.location_regex else 0
    rest = r.uri[loc_len:] if r.uri.startswith(pp.location_name[:loc_len]) else r.uri
    if r.internal or r.uri_changed or "%" in r.target:
        rest = escape_uri(rest)
    out = (uri_part or "") + rest
    if r.args:
        out += "?" + r.args
    return out


def set_headers(conf_extra: Any) -> tuple[tuple[str, Template], ...]:
    """The level's proxy_set_header list followed by nginx's defaults it does not override."""
    own = conf_extra.get("proxy_set_header") or ()
    names = {n.lower() for n, _ in own}
    return (*own, *((n, v) for n, v in DEFAULT_SET_HEADERS if n.lower() not in names))


def request_head(r: Request, method: str, uri: str, version: str,
                 headers: tuple[tuple[str, Template], ...], body_length: int | None,
                 pass_headers: bool) -> bytes:
    out = [f"{method} {uri} HTTP/{version}\r\n"]
    named = set()
    for name, tpl in headers:
        low = name.lower()
        named.add(low)
        if low == "content-length":
            if body_length is not None:
                out.append(f"Content-Length: {body_length}\r\n")
            continue
        if low == "transfer-encoding":
            continue  # the body is buffered: always sent with a length
        value = expand(tpl, r)
        if value:
            out.append(f"{name}: {value}\r\n")
    if pass_headers:
        for name, value in r.header_list:
            if name.lower() not in named:
                out.append(f"{name}: {value}\r\n")
    out.append("\r\n")
    return "".join(out).encode("latin-1", "replace")


def redirect_rules(r: Request, pp: ProxyPass, extra: Any) -> list[tuple[str, str]]:
    """proxy_redirect as (prefix, replacement) pairs; `default` from proxy_pass and location."""
    rules = extra.get("proxy_redirect")
    if rules is None:
        rules = ["default"]
    out: list[tuple[str, str]] = []
    for rule in rules:
        if rule == "off":
            return []
        if rule == "default":
            if pp.has_variables or pp.location_regex:
                continue
            url = pp.url.static
            if pp.uri is not None:
                out.append((url, pp.location_name))
            else:
                out.append((url + "/", "/"))
        else:
            out.append((expand(rule[0], r), expand(rule[1], r)))
    return out


def rewrite_location(value: str, rules: list[tuple[str, str]]) -> str:
    for prefix, replacement in rules:
        if value.startswith(prefix):
            return replacement + value[len(prefix):]
    return value
