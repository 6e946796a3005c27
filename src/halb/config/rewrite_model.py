"""The compiled form of the rewrite and referer modules' directives (PURE).

A level (server or location) carries a Script: its rewrite-module statements in order, as nginx
compiles them into one code array (ngx_http_rewrite_module). `if` bodies are nested here (nginx
inlines them and jumps); a location-level `if` carries the location configuration nginx makes
for it (a nameless nested location, inheriting from the enclosing one), which the request uses
from the moment the condition holds. `return` is model.Return.

`valid_referers` compiles to Referers (ngx_http_referer_module's hash, wildcards and regexes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from halb.config.model import Return
from halb.config.template import Template


@dataclass(frozen=True, slots=True)
class RewriteOp:
    """`rewrite REGEX REPLACEMENT [flag]` (ngx_http_rewrite + the script's regex codes)."""

    regex: re.Pattern[str]
    pattern: str  # as written, for rewrite_log
    uri: Template  # the replacement (up to the first "?" for internal rewrites)
    args: Template | None  # after the first "?" (internal rewrites only), else None
    add_args: bool  # the replacement does not end with "?": the request's args are appended
    has_args: bool  # a literal "?" in the replacement (redirects append args with "&")
    status: int = 0  # 301 / 302 for a redirect, else 0
    break_cycle: bool = False  # the `break` flag
    last: bool = False  # the script stops when it matches (every flag, and a redirect)


@dataclass(frozen=True, slots=True)
class BreakOp:
    """`break`."""


@dataclass(frozen=True, slots=True)
class SetOp:
    """`set $name value`; `args` is set through its setter (r->args)."""

    name: str
    value: Template


@dataclass(frozen=True, slots=True)
class Condition:
    """An `if` condition. kind: var (true unless "" or "0"), eq, ne, regex, file."""

    kind: str
    var: str = ""  # the variable tested (var, eq, ne, regex)
    value: Template | None = None  # the other side of = / !=, the path of a file test
    regex: re.Pattern[str] | None = None
    pattern: str = ""
    negative: bool = False  # !~ !~* and !-f !-d !-e !-x
    op: str = ""  # file tests: f d e x


@dataclass(frozen=True, slots=True)
class IfOp:
    """`if (condition) { body }`; conf: the location configuration of a location-level if
    (None at server level, where an if changes no configuration)."""

    cond: Condition
    body: tuple[Any, ...]
    conf: Any = field(default=None, repr=False)  # LocConf (a Block while it is being built)


Op = RewriteOp | BreakOp | SetOp | IfOp | Return
Script = tuple[Op, ...]


@dataclass(frozen=True, slots=True)
class Referers:
    """`valid_referers` of one level: names (exact, "*.x" / ".x" heads, "x.*" tails) mapping to
    the URI prefix the referer must have ("" for any), server names' regexes (matched against
    the referer's host) and "~" regexes (matched against what follows the scheme)."""

    none: bool = False
    blocked: bool = False
    exact: Mapping[str, str] | None = None
    heads: tuple[tuple[str, str], ...] = ()  # (".example.com", uri), longest suffix first
    tails: tuple[tuple[str, str], ...] = ()  # ("www.example.", uri), longest prefix first
    host_regexes: tuple[re.Pattern[str], ...] = ()
    regexes: tuple[re.Pattern[str], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.exact or self.heads or self.tails or self.host_regexes
                    or self.regexes)
