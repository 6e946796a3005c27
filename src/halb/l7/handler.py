"""The request phases of nginx's http core, in order, with internal redirects.

server rewrite (the server level's rewrite/if/set/return, l7/rewrite.py) → find config
(location search, auto-redirect, internal, client_max_body_size) → location rewrite (the
location's statements; an `if` that holds switches to its own configuration; a rewrite without
`break` sends the request back to find config, the post-rewrite step) → try_files → content
(index, autoindex, static; or a location handler registered by a later module such as
proxy_pass) → finalize (error_page, special responses). An internal redirect (index, try_files,
error_page) starts again at server rewrite, a named location at location rewrite; a URI change
of either kind counts, and the 11th ends the request with 500 as nginx's "rewrite or internal
redirection cycle".

`handle()` returns a Response to send, CLOSE (444: close without answering) or PENDING when a
content handler answers later by calling `conn.finish_request()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from halb.config.model import Location, Server
from halb.l7 import static
from halb.l7.request import Request
from halb.l7.response import Response, error_page
from halb.l7.rewrite import CLOSE, REDIRECT_CODES, do_return, run_script
from halb.l7.routing import find_location
from halb.l7.static import Finish, Redirect
from halb.l7.variables import expand

__all__ = ["CLOSE", "CONTENT_HANDLERS", "PENDING", "do_return", "handle", "resume"]

PENDING = object()  # the content handler answers asynchronously
AGAIN = object()  # the location rewrite changed the URI: search the locations again

MAX_URI_CHANGES = 10
# Statuses after which nginx does not keep the connection alive.
NO_KEEPALIVE = frozenset({400, 413, 414, 494, 495, 496, 497, 500, 501})

# Content handlers a location may carry (proxy_pass, stub_status, ...), keyed by the settings
# key that enables them; registered by the modules that own them.
ContentHandler = Callable[[Request, Any], "Response | Finish | Redirect | object | None"]
CONTENT_HANDLERS: dict[str, ContentHandler] = {}


def error(status: int, log: str | None = None, level: str = "error") -> Finish:
    return Finish(status, log, level)


def handle(r: Request) -> Response | object:
    """Run the phases for a request whose server has been chosen."""
    return run(r, None, 0)


def resume(r: Request, result: Response | Finish | Redirect | object) -> Response | object:
    """An asynchronous content handler's answer re-enters the phases here (error_page and
    internal redirects apply to it as to any other)."""
    return run(r, result, 2)


def run(r: Request, result: Response | Finish | Redirect | object | None,
        stage: int) -> Response | object:
    server = r.server
    assert server is not None
    # stage: 0 server rewrite, 1 find config, 2 location rewrite and on
    while True:
        if result is None:
            if stage == 0:
                r.conf = server.conf
                script = server.conf.rewrite
                if script is not None:
                    result = run_script(r, script)
                stage = 1
            if stage == 1 and result is None:
                result = find_config(r, server)
                stage = 2
            if result is None and stage == 2:
                result = run_location(r)
                if result is PENDING:  # (proxy_pass: the common answer, returned at once)
                    return result
                if result is AGAIN:
                    result = None
                    stage = 1
                    continue
        if isinstance(result, Redirect):
            redirected = internal_redirect(r, result)
            if isinstance(redirected, Finish):
                result = redirected
            else:
                stage = 2 if result.named else 0
                result = None
                continue
        if isinstance(result, Finish):
            final = finalize(r, result)
            if isinstance(final, Redirect):
                redirected = internal_redirect(r, final)
                if isinstance(redirected, Finish):
                    return finalize(r, redirected, no_error_page=True)
                stage = 2 if final.named else 0
                result = None
                continue
            return final
        if isinstance(result, Response):
            return apply_err_status(r, result)
        return result  # CLOSE or PENDING


def find_config(r: Request, server: Server) -> Finish | None:
    r.uri_changed = False
    m = find_location(server.locations, r.uri)
    if m.redirect:
        return Finish(301, location=r.uri + "/" + (("?" + r.args) if r.args else ""))
    set_location(r, m.location, server, m.captures, dict(m.named) if m.named else None)
    if m.location is not None and m.location.conf.internal and not r.internal:
        return Finish(404)
    return check_body_size(r)


def set_location(r: Request, loc: Location | None, server: Server,
                 captures: tuple[str | None, ...] = (), named: dict[str, Any] | None = None
                 ) -> None:
    r.location = loc
    r.conf = loc.conf if loc is not None else server.conf
    if loc is not None and loc.regex is not None:
        r.captures = captures
        r.named_captures = named or {}


def check_body_size(r: Request) -> Finish | None:
    conf = r.conf
    assert conf is not None
    limit = conf.client_max_body_size
    if limit and r.content_length is not None and r.content_length > limit:
        r.keepalive = False
        return Finish(413, f"client intended to send too large body: {r.content_length} bytes")
    return None


def run_location(r: Request) -> Response | Finish | Redirect | object | None:
    conf = r.conf
    assert conf is not None
    if r.location is not None and conf.rewrite is not None:
        out = run_script(r, conf.rewrite)
        if out is not None:
            return out
        if r.uri_changed:  # ngx_http_core_post_rewrite_phase
            r.uri_changes += 1
            if r.uri_changes > MAX_URI_CHANGES:
                return Finish(500, "rewrite or internal redirection cycle while processing "
                                   f'"{r.uri}"')
            return AGAIN
        conf = r.conf  # an `if` that held gave the request its configuration
        assert conf is not None
    if conf.try_files is not None:
        tried = static.try_files(r)
        if tried is not None:
            return tried
    for key, handler in CONTENT_HANDLERS.items():
        value = conf.extra.get(key)
        if value is not None:
            return handler(r, value)
    out: Response | Finish | Redirect | None = static.index(r)
    if out is None:
        out = static.autoindex(r)
    if out is None:
        out = static.serve_static(r)
    if out is None:
        if r.uri.endswith("/"):
            path = static.map_uri_to_path(r, r.uri)
            return Finish(403, f'directory index of "{path}" is forbidden')
        return Finish(404)
    return out


def internal_redirect(r: Request, red: Redirect) -> Finish | None:
    r.uri_changes += 1
    if r.uri_changes > MAX_URI_CHANGES:
        return Finish(500, f'rewrite or internal redirection cycle while internally '
                           f'redirecting to "{red.uri}"')
    r.internal = True
    server = r.server
    assert server is not None
    if red.named:
        loc = server.named_locations.get(red.uri)
        if loc is None:
            return Finish(500, f'could not find named location "{red.uri}"', "error")
        set_location(r, loc, server)
        return None
    r.uri = red.uri
    r.args = red.args
    return None


def finalize(r: Request, fin: Finish, no_error_page: bool = False
             ) -> Response | Redirect | object:
    """ngx_http_special_response_handler: error_page, or the built-in page."""
    status = fin.status
    if fin.log:
        r.conn.log_error(fin.level, fin.log, r)
    if status == 444:
        return CLOSE
    conf = r.conf
    assert conf is not None
    if status in NO_KEEPALIVE:
        r.keepalive = False
    if not no_error_page and not r.error_page_done and r.uri_changes <= MAX_URI_CHANGES:
        page = conf.error_pages.get(status)
        if page is not None:
            r.error_page_done = True
            r.err_status = 0 if page.overwrite else (page.code or status)
            if not (page.overwrite or page.code == 200):
                r.expect_continue = False  # ngx_http_send_error_page: expect_tested
            uri = expand(page.uri, r)
            if uri.startswith("/"):
                if r.method != "HEAD":
                    r.method = "GET"
                path, q, args = uri.partition("?")
                return Redirect(path, args if q else None)
            if uri.startswith("@"):
                if r.method != "HEAD":
                    r.method = "GET"
                return Redirect(uri, None, named=True)
            r.err_status = None
            r.expect_continue = False
            return special(r, page.code if page.code in REDIRECT_CODES else 302, uri)
    # ngx_http_special_response_handler: the error answered is the final status, also after
    # an error_page redirect that set another one; no "100 Continue" before an error page
    r.err_status = None
    r.expect_continue = False
    resp = special(r, status, fin.location)
    if fin.content_range is not None:
        resp.headers.append(("Content-Range", fin.content_range))
        resp.vary = fin.vary
    resp.close = fin.close
    return resp


def special(r: Request, status: int, location: str | None = None) -> Response:
    conf = r.conf
    assert conf is not None
    msie = conf.msie_padding and "MSIE " in (r.headers.get("user-agent") or "")
    body = error_page(status, conf.server_tokens, msie)
    resp = Response(status, body=body or b"", content_type="text/html" if body else None)
    if location is not None:
        resp.location = absolute_location(r, location)
        resp.location_early = resp.location is not location
    return apply_err_status(r, resp)


def apply_err_status(r: Request, resp: Response) -> Response:
    """After an error_page redirect, the final status is the error's (or the `=code`)."""
    code = r.err_status
    if code and not (code == 200 and resp.status in (206, 304)):  # filters run after it
        resp.status = code
        if code not in (200, 206, 304):
            resp.last_modified = None
        if code != 200 and code != 206:
            resp.accept_ranges = False
    if resp.status in NO_KEEPALIVE:
        r.keepalive = False
    return resp


def absolute_location(r: Request, location: str) -> str:
    """nginx's header filter: a Location starting with "/" gets scheme, host and port."""
    conf = r.conf
    assert conf is not None
    if not location.startswith("/") or not conf.absolute_redirect:
        return location
    if conf.server_name_in_redirect and r.server is not None:
        host = r.server.server_name
    elif r.host:
        host = r.host
    else:
        host = r.conn.server_addr
    port = r.conn.server_port
    tls = getattr(r.conn, "tls", None) is not None
    scheme = "https" if tls else "http"
    if conf.port_in_redirect and port and port != (443 if tls else 80):
        return f"{scheme}://{host}:{port}{location}"
    return f"{scheme}://{host}{location}"
