"""The directives of nginx's rewrite module (rewrite, return, break, if, set, rewrite_log,
uninitialized_variable_warn) and of the referer module (valid_referers) (PURE).

Each level (server, location, and the body of an `if`) collects its statements in order under
the "rewrite" setting; a level's list is not inherited (ngx_http_rewrite_merge_loc_conf). When
the configuration is frozen, `freeze_script` turns the list into a Script and gives each
location-level `if` its own location configuration: the enclosing location's merged settings
with the if block's own on top, without try_files (nginx makes the if a nameless nested
location, so `try_files` and the statements themselves do not reach it, as in nginx's "if is
evil" examples). Messages are nginx's own wording (ngx_http_rewrite_module.c,
ngx_http_script.c, ngx_http_referer_module.c).
"""

from __future__ import annotations

from typing import Any

from halb.config.errors import ConfigError, Pos
from halb.config.lexer import Statement
from halb.config.model import Return
from halb.config.nginx import (
    FREEZERS,
    HTTP,
    LIF,
    LOC,
    NOARGS,
    ONEMORE,
    SIF,
    SRV,
    TAKE2,
    TAKE12,
    TAKE23,
    Block,
    Builder,
    _wildcard_ok,
    directive,
)
from halb.config.nginx_slots import compile_regex, flag_slot
from halb.config.rewrite_model import (
    BreakOp,
    Condition,
    IfOp,
    Referers,
    RewriteOp,
    SetOp,
)
from halb.config.template import KNOWN_VARIABLES

KEY = "rewrite"
_REDIRECT_PREFIXES = ("http://", "https://", "$scheme")
# Built-in variables `set` may assign (NGX_HTTP_VAR_CHANGEABLE in nginx 1.22); assigning any
# other built-in one is "the duplicate ... variable".
CHANGEABLE = frozenset({"arg", "args", "invalid_referer", "limit_rate", "proxy_host",
                        "proxy_port", "ssl_cipher", "ssl_protocol", "ssl_server_name"})
_FIXED = KNOWN_VARIABLES - CHANGEABLE


def ops(blk: Block) -> list[Any]:
    """The statement list of a level (created on first use)."""
    out: list[Any] = blk.settings.setdefault(KEY, [])
    return out


# -- rewrite, return, break, set -----------------------------------------------------------------


@directive("rewrite", SRV | SIF | LOC | LIF, TAKE23)
def _rewrite(b: Builder, blk: Block, st: Statement) -> None:
    pattern, repl = st.args[0].value, st.args[1].value
    if not repl:
        raise ConfigError("empty replacement", st.end)
    regex = compile_regex(b, pattern, False, st)  # never caseless ("(?i)" in the pattern is)
    add_args = True
    if repl.endswith("?"):  # the last "?" drops the original arguments
        repl, add_args = repl[:-1], False
    status, last, break_cycle = 0, False, False
    if repl.startswith(_REDIRECT_PREFIXES):
        status, last = 302, True
    if len(st.args) == 3:
        flag = st.args[2].value
        if flag == "last":
            last = True
        elif flag == "break":
            break_cycle = last = True
        elif flag in ("redirect", "permanent"):
            status, last = (302 if flag == "redirect" else 301), True
        else:
            raise ConfigError(f'invalid parameter "{flag}"', st.end)
    q = repl.find("?")
    if status or q < 0:  # a redirect keeps its "?" as text (sc.compile_args = 0)
        uri, args = b.template(repl, st.end), None
    else:
        uri = b.template(repl[:q], st.end)
        args = b.template(repl[q + 1:], st.end)
    ops(blk).append(RewriteOp(regex, pattern, uri, args, add_args, q >= 0, status, break_cycle,
                              last))


@directive("return", SRV | LOC | SIF | LIF, TAKE12)
def _return(b: Builder, blk: Block, st: Statement) -> None:
    first = st.args[0].value
    if first.isdigit():
        code = int(first)
        if code > 999:
            raise ConfigError(f'invalid return code "{first}"', st.end)
        text = b.template(st.args[1].value, st.end) if len(st.args) > 1 else None
    else:
        if len(st.args) != 1 or not first.startswith(_REDIRECT_PREFIXES):
            raise ConfigError(f'invalid return code "{first}"', st.end)
        code, text = 302, b.template(first, st.end)
    ops(blk).append(Return(code, text))


@directive("break", SRV | SIF | LOC | LIF, NOARGS)
def _break(b: Builder, blk: Block, st: Statement) -> None:
    ops(blk).append(BreakOp())


@directive("set", SRV | SIF | LOC | LIF, TAKE2)
def _set(b: Builder, blk: Block, st: Statement) -> None:
    target = st.args[0].value
    if not target.startswith("$"):
        raise ConfigError(f'invalid variable name "{target}"', st.end)
    name = target[1:]
    low = name.lower()
    if low in _FIXED:  # ngx_http_add_variable: a built-in one that cannot change
        raise ConfigError(f'the duplicate "{name}" variable', st.end)
    b.variables.add(low)
    value = b.template(st.args[1].value, st.end)
    if b.http_block is not None:  # read where it was not set: "" and a warning
        declared: set[str] = b.http_block.settings.setdefault("set_variables", set())
        declared.add(low)
    ops(blk).append(SetOp(low, value))


flag_slot("rewrite_log", HTTP | SRV | SIF | LOC | LIF)
flag_slot("uninitialized_variable_warn", HTTP | SRV | SIF | LOC | LIF)


# -- if ------------------------------------------------------------------------------------------


def _condition(b: Builder, st: Statement) -> Condition:
    """ngx_http_rewrite_if_condition, message for message."""
    vals = [a.value for a in st.args]
    last = len(vals) - 1

    def invalid(text: str) -> ConfigError:
        return ConfigError(f'invalid condition "{text}"', st.end)

    if not vals[0].startswith("("):
        raise invalid(vals[0])
    if vals[0] == "(":
        cur = 1
    else:
        cur = 0
        vals[0] = vals[0][1:]
    if not vals[last].endswith(")"):
        raise invalid(vals[last])
    if vals[last] == ")":
        last -= 1
    else:
        vals[last] = vals[last][:-1]
    if cur >= len(vals):
        raise invalid(")")
    p = vals[cur]
    if len(p) > 1 and p[0] == "$":
        if cur != last and cur + 2 != last:
            raise invalid(p)
        var = p[1:].lower()
        b.used_variables.setdefault(var, None)  # unknown ones are found when http ends
        if cur == last:
            return Condition("var", var)
        op = vals[cur + 1]
        if op in ("=", "!="):
            value = b.template(vals[last], st.end)
            return Condition("eq" if op == "=" else "ne", var, value)
        if op in ("~", "~*", "!~", "!~*"):
            rx = compile_regex(b, vals[last], op.endswith("*"), st)
            return Condition("regex", var, regex=rx, pattern=vals[last],
                             negative=op.startswith("!"))
        raise ConfigError(f'unexpected "{op}" in condition', st.end)
    if (len(p) == 2 and p[0] == "-") or (len(p) == 3 and p.startswith("!-")):
        if cur + 1 != last:
            raise invalid(p)
        value = b.template(vals[last], st.end)
        negative = p[0] == "!"
        letter = p[-1]
        if letter not in "fdex":
            raise invalid(p)
        return Condition("file", value=value, negative=negative, op=letter)
    raise invalid(p)


@directive("if", SRV | LOC, ONEMORE, block=True)
def _if(b: Builder, blk: Block, st: Statement) -> None:
    cond = _condition(b, st)
    ib = Block(SIF if blk.ctx == SRV else LIF, blk, name=blk.name, pos=st.end)
    assert st.block is not None
    b.run(st.block, ib)
    body = tuple(ib.settings.pop(KEY, ()))
    ops(blk).append(IfOp(cond, body, ib if blk.ctx == LOC else None))


def freeze_script(raw: list[Any], eff: dict[str, Any]) -> tuple[Any, ...]:
    """A level's statements, frozen; each location-level if gets its LocConf (see above)."""
    from halb.config.nginx import _loc_conf

    out: list[Any] = []
    for op in raw:
        if isinstance(op, IfOp) and isinstance(op.conf, Block):
            own = op.conf.settings
            merged = {k: v for k, v in eff.items() if k not in (KEY, "try_files")}
            merged.update(own)
            op = IfOp(op.cond, op.body, _loc_conf(merged))
        out.append(op)
    return tuple(out)


# -- valid_referers ------------------------------------------------------------------------------


@directive("valid_referers", SRV | LOC, ONEMORE)
def _valid_referers(b: Builder, blk: Block, st: Statement) -> None:
    spec: dict[str, Any] = blk.settings.get("\0referers") or {
        "none": False, "blocked": False, "exact": {}, "heads": {}, "tails": {},
        "host_regexes": [], "regexes": [], "names": 0, "server": None, "close": b.http_close,
        "frozen": None}
    blk.settings["\0referers"] = spec
    for a in st.args:
        v = a.value
        if not v:
            raise ConfigError(f'invalid referer "{v}"', st.end)
        if v == "none":
            spec["none"] = True
        elif v == "blocked":
            spec["blocked"] = True
        elif v == "server_names":  # the server's names, added when the http block ends
            spec["server"] = blk.server()
        elif v.startswith("~"):
            if len(v) == 1:
                raise ConfigError(f'empty regex in "{v}"', st.end)
            spec["regexes"].append(compile_regex(b, v[1:], True, st))
        else:
            slash = v.find("/")
            name, uri = (v, "") if slash < 0 else (v[:slash], v[slash:])
            _add_referer(spec, name, uri, st.end)


def _add_referer(spec: dict[str, Any], name: str, uri: str, pos: Pos | None) -> None:
    """ngx_hash_add_key(NGX_HASH_WILDCARD_KEY) into the referer hashes."""
    low = name.lower()
    if not name or not _wildcard_ok(low):
        raise ConfigError(f'invalid hostname or wildcard "{name}"', pos)
    entries: list[tuple[str, str]] = []
    if low.startswith("*."):
        entries.append(("heads", low[1:]))
    elif low.startswith(".") and len(low) > 1:
        entries += [("exact", low[1:]), ("heads", low)]
    elif low.endswith(".*"):
        entries.append(("tails", low[:-1]))
    else:
        entries.append(("exact", low))
    for table, key in entries:
        if key in spec[table]:
            raise ConfigError(f'conflicting parameter "{name}"', pos)
    for table, key in entries:
        spec[table][key] = uri
    spec["names"] += 1


def _referers(spec: dict[str, Any]) -> Referers:
    """ngx_http_referer_merge_conf, once per valid_referers level: the server's names, the
    check that "none" / "blocked" come with a name, the frozen tables."""
    if spec["frozen"] is not None:
        return spec["frozen"]  # type: ignore[no-any-return]
    sb = spec["server"]
    added: set[str] = set()
    for sn in (sb.names if sb is not None else ()):
        if sn.regex is not None:
            spec["host_regexes"].append(sn.regex)
        elif sn.raw and sn.raw not in added:  # ".x" is two entries of one name
            added.add(sn.raw)
            _add_referer(spec, sn.raw.lower(), "", spec["close"])
    if (spec["none"] or spec["blocked"]) and not spec["names"]:
        raise ConfigError('the "none" or "blocked" referers are specified in the '
                          '"valid_referers" directive without any valid referer')
    spec["frozen"] = Referers(
        spec["none"], spec["blocked"], dict(spec["exact"]),
        tuple(sorted(spec["heads"].items(), key=lambda kv: -len(kv[0]))),
        tuple(sorted(spec["tails"].items(), key=lambda kv: -len(kv[0]))),
        tuple(spec["host_regexes"]), tuple(spec["regexes"]))
    return spec["frozen"]  # type: ignore[no-any-return]


def _freeze_rewrite(settings: dict[str, Any]) -> None:
    settings[KEY] = freeze_script(settings[KEY], settings)


def _freeze_referers(settings: dict[str, Any]) -> None:
    settings["valid_referers"] = _referers(settings.pop("\0referers"))


FREEZERS[KEY] = _freeze_rewrite
FREEZERS["\0referers"] = _freeze_referers
