"""What the nginx directive modules share (PURE): the generic slot handlers (nginx's
ngx_conf_set_flag/sec/size/num/enum_slot, and `accepted` for tuning directives halb has no use
for) and regular expressions as nginx compiles them (PCRE2 syntax and PCRE2's error messages).
"""

from __future__ import annotations

import re

from halb.config.errors import ConfigError
from halb.config.lexer import Statement
from halb.config.nginx import FLAG, TAKE1, Block, Builder, directive
from halb.config.values import parse_flag, parse_size, parse_time

# -- generic slot handlers (nginx's ngx_conf_set_*_slot) -------------------------------------


def flag_slot(name: str, contexts: int, key: str | None = None) -> None:
    def handler(b: Builder, blk: Block, st: Statement) -> None:
        b.set(blk, st, key or name, parse_flag(st.args[0].value))

    directive(name, contexts, FLAG)(handler)


def time_slot(name: str, contexts: int, key: str | None = None) -> None:
    def handler(b: Builder, blk: Block, st: Statement) -> None:
        v = parse_time(st.args[0].value)
        if v is None:
            raise b.err(st, "invalid value")
        b.set(blk, st, key or name, v)

    directive(name, contexts, TAKE1)(handler)


def size_slot(name: str, contexts: int, key: str | None = None, allow_g: bool = False) -> None:
    def handler(b: Builder, blk: Block, st: Statement) -> None:
        v = parse_size(st.args[0].value, allow_g)
        if v is None:
            raise b.err(st, "invalid value")
        b.set(blk, st, key or name, v)

    directive(name, contexts, TAKE1)(handler)


def num_slot(name: str, contexts: int, key: str | None = None) -> None:
    def handler(b: Builder, blk: Block, st: Statement) -> None:
        v = st.args[0].value
        if not v.isdigit():
            raise b.err(st, "invalid number")
        b.set(blk, st, key or name, int(v))

    directive(name, contexts, TAKE1)(handler)


def enum_slot(name: str, contexts: int, choices: tuple[str, ...], key: str | None = None) -> None:
    def handler(b: Builder, blk: Block, st: Statement) -> None:
        v = st.args[0].value
        if v.lower() not in choices:  # ngx_conf_set_enum_slot: case-insensitive
            raise ConfigError(f'invalid value "{v}"', st.end)
        b.set(blk, st, key or name, v.lower())

    directive(name, contexts, TAKE1)(handler)


def accepted(name: str, contexts: int, nargs: int) -> None:
    """Directives that tune nginx internals halb does not have (hash sizes, ...): checked for
    context and arguments, then ignored, so existing configurations load unchanged."""

    def handler(b: Builder, blk: Block, st: Statement) -> None:
        b.once(blk, st)

    directive(name, contexts, nargs)(handler)


# -- regular expressions ---------------------------------------------------------------------

_PCRE_NAMED = re.compile(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>|\(\?'([A-Za-z_][A-Za-z0-9_]*)'")
# Python's words for the usual mistakes → PCRE2's (nginx prints PCRE2's), and where PCRE2 points:
# where Python does ("pos"), at the end of the pattern ("end"), at the end of a character range
# ("range") or just after a group's name ("name"). Other errors keep Python's words.
_PCRE_ERRORS = (
    ("missing ), unterminated subpattern", "missing closing parenthesis", "end"),
    ("unbalanced parenthesis", "unmatched closing parenthesis", "pos"),
    ("nothing to repeat", "quantifier does not follow a repeatable item", "pos"),
    ("multiple repeat", "quantifier does not follow a repeatable item", "pos"),
    ("unterminated character set", "missing terminating ] for character class", "end"),
    ("bad escape (end of pattern)", "\\ at end of pattern", "end"),
    ("bad character range ", "range out of order in character class", "range"),
    ("redefinition of group name ",
     "two named subpatterns have the same name (PCRE2_DUPNAMES not set)", "name"),
)


def pcre_error(e: re.error, pattern: str) -> str:
    """`pcre2_compile() failed: ...` as nginx's ngx_regex_compile words it."""
    pos = e.pos or 0
    shift = 0  # each (?<name> / (?'name' became (?P<name> in the pattern Python compiled
    for m in _PCRE_NAMED.finditer(pattern):
        if m.start() + 2 + shift >= pos:
            break
        shift += 1
    offset, msg = pos - shift, e.msg
    for py_msg, pcre_msg, where in _PCRE_ERRORS:
        if e.msg.startswith(py_msg):
            msg = pcre_msg
            if where == "end":
                offset = len(pattern)
            elif where == "range":
                offset += len(e.msg) - len(py_msg) - len(e.msg.rpartition("-")[2])
            elif where == "name":
                offset += len(e.msg[len(py_msg):].split("'")[1]) + 1
            break
    if offset >= len(pattern):
        return f'pcre2_compile() failed: {msg} in "{pattern}"'
    return f'pcre2_compile() failed: {msg} in "{pattern}" at "{pattern[offset:]}"'


def compile_regex(b: Builder, pattern: str, caseless: bool, st: Statement) -> re.Pattern[str]:
    py = re.sub(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", r"(?P<\1>", pattern)
    py = re.sub(r"\(\?'([A-Za-z_][A-Za-z0-9_]*)'", r"(?P<\1>", py)
    try:
        rx = re.compile(py, re.IGNORECASE if caseless else 0)
    except re.error as e:
        raise ConfigError(pcre_error(e, pattern), st.end) from None
    b.variables.update(rx.groupindex)  # named captures are variables (ngx_http_regex_compile)
    return rx
