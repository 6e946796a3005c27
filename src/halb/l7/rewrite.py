"""The rewrite module's script engine: one level's statements run in order for a request
(ngx_http_rewrite_handler and the codes of ngx_http_script.c).

`run_script` returns None when the phases go on (the request's URI, args and configuration may
have changed: r.uri_changed asks the location rewrite phase to search the locations again), or
what ends the request: a Response (`return` with a text), a Finish (a status, a redirect's
Location), or CLOSE (444). The engine keeps nginx's two flags that decide when a capture is
escaped (`quote`, set at the start and by a redirect, cleared once a rewrite matched; and
`is_args`, after the "?" of a replacement): a capture ($1..$9) is escaped as an argument when
one of them is set and the request line's path held a "%" or a "+" (nginx's quoted_uri and
plus_in_uri), so `set $a $1` may store "a%20b" where the URI decoded to "a b".
"""

from __future__ import annotations

import os
import stat

from halb.config.model import Return
from halb.config.rewrite_model import Condition, IfOp, RewriteOp, SetOp
from halb.config.template import Template, Var
from halb.l7 import static
from halb.l7.request import Request
from halb.l7.response import Response
from halb.l7.rewrite_text import escape_args, unescape_redirect, uri_flags
from halb.l7.static import Finish
from halb.l7.variables import expand, get

CLOSE = object()  # 444: close the connection without a response
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_STOP = object()  # the script ended without a status (break, a flagged rewrite)

Result = Response | Finish | object | None


class _Engine:
    __slots__ = ("flags", "is_args", "log", "quote")

    def __init__(self, log: bool) -> None:
        self.quote = True  # ngx_http_rewrite_handler: e->quote = 1
        self.is_args = False
        self.log = log
        self.flags: tuple[bool, bool] | None = None  # (quoted_uri, plus_in_uri), when needed


def run_script(r: Request, script: tuple[object, ...]) -> Result:
    """Run a level's statements; None: go on with the phases."""
    conf = r.conf
    assert conf is not None
    e = _Engine(bool(conf.extra.get("rewrite_log")))
    out = _run(r, script, e)
    return None if out is _STOP else out


def _run(r: Request, ops: tuple[object, ...], e: _Engine) -> Result:
    for op in ops:
        t = type(op)
        if t is RewriteOp:
            assert isinstance(op, RewriteOp)
            out = _rewrite(r, op, e)
            if out is not None:
                return out
        elif t is SetOp:
            assert isinstance(op, SetOp)
            set_variable(r, op.name, _value(r, op.value, e))
        elif t is IfOp:
            assert isinstance(op, IfOp)
            if _test(r, op.cond, e):
                if op.conf is not None:  # the if's own location configuration
                    r.conf = op.conf
                out = _run(r, op.body, e)
                if out is not None:
                    return out
        elif t is Return:
            assert isinstance(op, Return)
            return do_return(r, op)
        else:  # break: the URI stays, no new location search
            if r.uri_changed:
                r.valid_location = False
                r.uri_changed = False
            return _STOP
    return None


def do_return(r: Request, ret: Return) -> Response | Finish | object:
    """`return` (ngx_http_script_return_code and ngx_http_send_response)."""
    code = ret.code
    if code == 444:
        return CLOSE
    if code in REDIRECT_CODES:
        r.test_expect()  # ngx_http_send_response discards the body
        return Finish(code, location=expand(ret.text, r) if ret.text else "")
    if code < 400 or ret.text is not None:
        r.test_expect()
        body = expand(ret.text, r).encode("utf-8", "surrogateescape") if ret.text else b""
        return Response(code, body=body, content_type=static.mime_type(r, r.uri))
    return Finish(code)


def _notice(r: Request, message: str) -> None:
    r.conn.log_error("notice", message, r)


def _match(r: Request, rx: object, subject: str, name: str, e: _Engine) -> bool:
    """ngx_http_regex_exec: a match replaces the request's numbered captures with its own
    (none when it has no groups) and sets its named ones; no match (in a script) forgets the
    numbered ones."""
    m = rx.search(subject)  # type: ignore[attr-defined]
    if m is None:
        if e.log:
            _notice(r, f'"{name}" does not match "{subject}"')
        r.captures = ()
        return False
    if e.log:
        _notice(r, f'"{name}" matches "{subject}"')
    r.captures = m.groups()
    if m.re.groupindex:
        named = m.groupdict()
        r.named_captures = {**r.named_captures, **named}
        cache = r.var_cache
        if cache is not None:
            for key in named:
                cache.pop(key, None)
    return True


def _rewrite(r: Request, op: RewriteOp, e: _Engine) -> Result:
    if not _match(r, op.regex, r.uri, op.pattern, e):
        return None
    r.internal = True
    if op.break_cycle:
        r.valid_location = False
        r.uri_changed = False
    else:
        r.uri_changed = True
    e.is_args = False
    e.quote = bool(op.status)
    text = _expand(r, op.uri, e)
    if op.status:
        e.quote = False
        text = unescape_redirect(text)
        if op.add_args and r.args:
            text += ("&" if op.has_args else "?") + r.args
        if e.log:
            _notice(r, f'rewritten redirect: "{text}"')
        return Finish(op.status, location=text)
    if op.args is not None:
        e.is_args = True
        args = _expand(r, op.args, e)
        e.is_args = False
        if op.add_args and r.args:
            args += "&" + r.args
        r.args = args
    elif not op.add_args:
        r.args = None
    e.quote = False
    if e.log:
        _notice(r, f'rewritten data: "{text}", args: "{r.args or ""}"')
    if not text:
        r.conn.log_error("error", "the rewritten URI has a zero length", r)
        return Finish(500)
    r.uri = text
    return _STOP if op.last else None


def _expand(r: Request, t: Template, e: _Engine) -> str:
    """A replacement or value: captures escaped as arguments when the engine's flags and the
    request line say so (ngx_http_script_copy_capture_code), variables as they are."""
    parts = t.parts
    if t.is_static:
        return t.static
    out: list[str] = []
    for p in parts:
        if not isinstance(p, Var):
            out.append(p)
            continue
        name = p.name
        if name.isdigit():
            i = int(name)
            caps = r.captures
            value = caps[i - 1] if 0 < i <= len(caps) else None
            if value and (e.is_args or e.quote):
                if e.flags is None:
                    e.flags = uri_flags(r.target)
                if e.flags[0] or e.flags[1]:
                    value = escape_args(value)
        else:
            value = get(r, name)
        if value:
            out.append(value)
    return "".join(out)


_value = _expand


def set_variable(r: Request, name: str, value: str) -> None:
    """`set`: $args through its setter (r->args), any other name into the request's own
    variables (a named capture of that name is replaced)."""
    if name == "args":
        r.args = value
        return
    cache = r.var_cache
    if cache is None:
        cache = r.var_cache = {}
    cache[name] = value
    if name in r.named_captures:
        r.named_captures = {k: v for k, v in r.named_captures.items() if k != name}


def _test(r: Request, c: Condition, e: _Engine) -> bool:
    kind = c.kind
    if kind == "var":
        v = get(r, c.var)
        return bool(v) and v != "0"
    if kind == "regex":
        assert c.regex is not None
        return _match(r, c.regex, get(r, c.var) or "", c.pattern, e) != c.negative
    assert c.value is not None
    if kind == "file":
        return _file_test(r, _value(r, c.value, e), c.op) != c.negative
    same = (get(r, c.var) or "") == _value(r, c.value, e)
    return same if kind == "eq" else not same


def _file_test(r: Request, path: str, op: str) -> bool:
    """-f -d -e -x (ngx_http_script_file_code, through stat as ngx_open_cached_file)."""
    try:
        st = os.stat(path)
    except OSError as err:
        if err.errno not in (2, 20, 36):  # ENOENT ENOTDIR ENAMETOOLONG
            r.conn.log_error("crit", f'stat() "{path}" failed ({err.errno}: {err.strerror})',
                             r)
        return False
    except ValueError:  # a NUL in the path
        return False
    mode = st.st_mode
    if op == "f":
        return stat.S_ISREG(mode)
    if op == "d":
        return stat.S_ISDIR(mode)
    if op == "e":
        return stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)
    return bool(mode & stat.S_IXUSR)
