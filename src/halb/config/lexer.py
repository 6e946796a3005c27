"""One tokenizer for the two brace dialects: nginx.conf and keepalived.conf (PURE).

The nginx dialect is a character-for-character port of nginx's `ngx_conf_read_token`: words are
separated by white space, `;` ends a statement, `{` opens a block, `}` closes one; `"` and `'`
quote, `\\` escapes (`\\"`, `\\'`, `\\\\`, `\\t`, `\\r`, `\\n` are unescaped, other escapes are
kept as written), `#` starts a comment at a word boundary, and `${var}` does not open a block.
The keepalived dialect ends statements at a newline, treats `{` and `}` as tokens of their own,
and starts comments with `#` or `!` anywhere outside quotes.

The Lexer is incremental (sans-I/O): `feed()` text in pieces of any size and get the same events
as feeding it whole, then `end()`. `parse_text()` / `parse_file()` build the statement tree and
expand `include` (globs allowed; nginx resolves relative names against the configuration prefix,
keepalived against the including file's directory). Every token carries file:line:col, and errors
read as nginx's do: `unexpected "}" in /path/nginx.conf:12`.
"""

from __future__ import annotations

import glob as _glob
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from halb.config.errors import COMMAND_LINE, ConfigError, Pos

NGINX = "nginx"
KEEPALIVED = "keepalived"

# Event kinds produced by the Lexer.
WORD = "word"
END = ";"  # end of a statement (';' in nginx, a newline in keepalived)
OPEN = "{"
CLOSE = "}"
EOF = "eof"

_SPACE = frozenset(" \t\r\n")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Token:
    """A word of a configuration file, unescaped, with where it started."""

    value: str
    pos: Pos
    quoted: bool = False

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    pos: Pos
    token: Token | None = None


@dataclass(slots=True)
class Statement:
    """A directive: its name, arguments, optional block, and where it ended.

    nginx reports errors about a directive at the line where its `;` or `{` was read, so both
    the start (name.pos) and the end (end) are kept.
    """

    name: Token
    args: list[Token]
    end: Pos
    block: list[Statement] | None = None
    close: Pos | None = None  # where a block's "}" was read (checks nginx makes at its end)

    @property
    def pos(self) -> Pos:
        return self.name.pos

    @property
    def values(self) -> list[str]:
        return [a.value for a in self.args]


@dataclass(slots=True)
class ErrorStatement(Statement):
    """Where parsing stopped, with parse_*(defer_errors=True): nginx runs each directive as soon
    as it is read, so the statements before a syntax error are handled (and may fail) first. A
    consumer raises `error` when it reaches this statement, which is the last one of the tree."""

    error: ConfigError | None = None


def _unescape(raw: str) -> str:
    """nginx's copy loop: `\\"` `\\'` `\\\\` lose the backslash, `\\t` `\\r` `\\n` become controls."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch == "\\" and i + 1 < n:
            nxt = raw[i + 1]
            if nxt in "\"'\\":
                out.append(nxt)
                i += 2
                continue
            if nxt == "t":
                out.append("\t")
                i += 2
                continue
            if nxt == "r":
                out.append("\r")
                i += 2
                continue
            if nxt == "n":
                out.append("\n")
                i += 2
                continue
        out.append(ch)
        i += 1
    return "".join(out)


class Lexer:
    """Incremental tokenizer; `feed()` returns the events completed so far."""

    def __init__(self, filename: str, dialect: str = NGINX) -> None:
        if dialect not in (NGINX, KEEPALIVED):
            raise ValueError(f"unknown dialect {dialect!r}")
        self.filename = filename
        self.dialect = dialect
        self.line = 1
        self.col = 0
        self.done = False
        # nginx state (names as in ngx_conf_read_token)
        self._need_space = False
        self._last_space = True
        self._sharp_comment = False
        self._quoted = False
        self._s_quoted = False
        self._d_quoted = False
        self._variable = False
        self._word: list[str] = []
        self._word_pos = Pos(filename, 1, 1)
        self._word_quoted = False
        self._nargs = 0  # words in the statement being read (cf->args->nelts)

    def _pos(self) -> Pos:
        return Pos(self.filename, self.line, self.col)

    def _err(self, message: str) -> ConfigError:
        return ConfigError(message, Pos(self.filename, self.line, self.col))

    def feed(self, text: str) -> list[Event]:
        if self.done:
            raise ValueError("feed() after end()")
        if self.dialect == NGINX:
            return self._feed_nginx(text)
        return self._feed_keepalived(text)

    def end(self) -> list[Event]:
        """End of input: flush a pending word or report the unterminated statement."""
        self.done = True
        if self.dialect == NGINX:
            if self._nargs > 0 or not self._last_space or self._quoted:
                if self.filename == COMMAND_LINE.file:  # nginx -g "..."
                    raise self._err('unexpected end of parameter, expecting ";"')
                raise self._err('unexpected end of file, expecting ";" or "}"')
            return [Event(EOF, self._pos())]
        events: list[Event] = []
        if self._d_quoted:
            raise self._err("unexpected end of file in a quoted string")
        self._ka_flush(events)
        if self._nargs:
            events.append(Event(END, self._pos()))
            self._nargs = 0
        events.append(Event(EOF, self._pos()))
        return events

    # -- nginx -------------------------------------------------------------------------------

    def _emit_word(self, events: list[Event]) -> None:
        tok = Token(_unescape("".join(self._word)), self._word_pos, self._word_quoted)
        events.append(Event(WORD, tok.pos, tok))
        self._word.clear()
        self._nargs += 1

    def _feed_nginx(self, text: str) -> list[Event]:
        events: list[Event] = []
        for ch in text:
            if ch == "\n":
                self.line += 1
                self.col = 0
                if self._sharp_comment:
                    self._sharp_comment = False
            else:
                self.col += 1
            if self._sharp_comment:
                continue
            if self._quoted:
                self._quoted = False
                self._word.append(ch)
                continue
            if self._need_space:
                if ch in _SPACE:
                    self._last_space = True
                    self._need_space = False
                    continue
                if ch == ";":
                    events.append(Event(END, self._pos()))
                    self._end_statement()
                    continue
                if ch == "{":
                    events.append(Event(OPEN, self._pos()))
                    self._end_statement()
                    continue
                if ch == ")":
                    self._last_space = True
                    self._need_space = False
                else:
                    raise self._err(f'unexpected "{ch}"')
            if self._last_space:
                if ch in _SPACE:
                    continue
                self._word_pos = self._pos()
                self._word_quoted = False
                if ch in ";{":
                    if self._nargs == 0:
                        raise self._err(f'unexpected "{ch}"')
                    events.append(Event(END if ch == ";" else OPEN, self._pos()))
                    self._end_statement()
                    continue
                if ch == "}":
                    if self._nargs != 0:
                        raise self._err('unexpected "}"')
                    events.append(Event(CLOSE, self._pos()))
                    self._end_statement()
                    continue
                if ch == "#":
                    self._sharp_comment = True
                    continue
                self._last_space = False
                if ch == "\\":
                    self._quoted = True
                    self._word.append(ch)
                elif ch == '"':
                    self._d_quoted = True
                    self._word_quoted = True
                elif ch == "'":
                    self._s_quoted = True
                    self._word_quoted = True
                elif ch == "$":
                    self._variable = True
                    self._word.append(ch)
                else:
                    self._word.append(ch)
                continue
            # inside a word
            if ch == "{" and self._variable:
                self._word.append(ch)
                continue
            self._variable = False
            if ch == "\\":
                self._quoted = True
                self._word.append(ch)
                continue
            if ch == "$":
                self._variable = True
                self._word.append(ch)
                continue
            if self._d_quoted:
                if ch == '"':
                    self._d_quoted = False
                    self._need_space = True
                    self._emit_word(events)
                else:
                    self._word.append(ch)
                continue
            if self._s_quoted:
                if ch == "'":
                    self._s_quoted = False
                    self._need_space = True
                    self._emit_word(events)
                else:
                    self._word.append(ch)
                continue
            if ch in _SPACE or ch == ";" or ch == "{":
                self._last_space = True
                self._emit_word(events)
                if ch == ";":
                    events.append(Event(END, self._pos()))
                    self._end_statement()
                elif ch == "{":
                    events.append(Event(OPEN, self._pos()))
                    self._end_statement()
                continue
            self._word.append(ch)
        return events

    def _end_statement(self) -> None:
        self._nargs = 0
        self._need_space = False
        self._last_space = True

    # -- keepalived --------------------------------------------------------------------------

    def _ka_flush(self, events: list[Event]) -> None:
        if self._word or self._word_quoted:
            tok = Token("".join(self._word), self._word_pos, self._word_quoted)
            events.append(Event(WORD, tok.pos, tok))
            self._word.clear()
            self._word_quoted = False
            self._nargs += 1

    def _feed_keepalived(self, text: str) -> list[Event]:
        events: list[Event] = []
        for ch in text:
            if ch == "\n":
                pos = self._pos()
                self.line += 1
                self.col = 0
                if self._d_quoted:
                    raise ConfigError("unterminated quoted string", pos)
                self._sharp_comment = False
                self._ka_flush(events)
                if self._nargs:
                    events.append(Event(END, pos))
                    self._nargs = 0
                continue
            self.col += 1
            if self._sharp_comment:
                continue
            if self._d_quoted:
                if self._quoted:
                    self._quoted = False
                    self._word.append({"n": "\n", "t": "\t"}.get(ch, ch))
                elif ch == "\\":
                    self._quoted = True
                elif ch == '"':
                    self._d_quoted = False
                else:
                    self._word.append(ch)
                continue
            if ch in " \t\r":
                self._ka_flush(events)
                continue
            if ch in "#!":
                self._ka_flush(events)
                self._sharp_comment = True
                continue
            if ch in "{}":
                self._ka_flush(events)
                if ch == "}" and self._nargs:
                    events.append(Event(END, self._pos()))
                    self._nargs = 0
                events.append(Event(OPEN if ch == "{" else CLOSE, self._pos()))
                self._nargs = 0
                continue
            if not self._word and not self._word_quoted:
                self._word_pos = self._pos()
            if ch == '"':
                self._d_quoted = True
                self._word_quoted = True
                continue
            self._word.append(ch)
        return events


def tokenize(text: str, filename: str = "<string>", dialect: str = NGINX) -> list[Event]:
    lexer = Lexer(filename, dialect)
    return lexer.feed(text) + lexer.end()


# -- statement trees and include -------------------------------------------------------------


Reader = Callable[[str], str]


def _read_file(path: str) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


@dataclass
class ParseResult:
    statements: list[Statement]
    files: list[str] = field(default_factory=list)  # every file read, in order (for nginx -T)


class _TreeBuilder:
    def __init__(self, dialect: str, include_base: str | None, reader: Reader,
                 result: ParseResult, defer: bool = False) -> None:
        self.dialect = dialect
        self.include_base = include_base
        self.reader = reader
        self.result = result
        self.defer = defer
        self.failed = False

    def lex(self, text: str, filename: str) -> tuple[list[Event], ConfigError | None]:
        """The events of `text`; when deferring errors, those read before the error, and it."""
        try:
            return tokenize(text, filename, self.dialect), None
        except ConfigError as err:
            if not self.defer:
                raise
            # rare, so lex again one character at a time to keep the events before the error
            lexer = Lexer(filename, self.dialect)
            events: list[Event] = []
            try:
                for ch in text:
                    events += lexer.feed(ch)
                events += lexer.end()
            except ConfigError:
                pass
            return events, err

    def fail(self, err: ConfigError, into: list[Statement]) -> None:
        if not self.defer:
            raise err
        pos = err.pos or Pos("", 0)
        into.append(ErrorStatement(Token("", pos), [], pos, None, error=err))
        self.failed = True

    def build(self, events: Iterable[Event], filename: str, top: list[Statement],
              depth: int = 0, error: ConfigError | None = None) -> None:
        stack: list[list[Statement]] = [top]
        owners: list[Statement] = []  # the statement whose block each open level is
        args: list[Token] = []
        for ev in events:
            if ev.kind == WORD:
                assert ev.token is not None
                args.append(ev.token)
            elif ev.kind == END:
                if not args:
                    continue
                st = Statement(args[0], args[1:], ev.pos)
                args = []
                if st.name.value == "include" and not st.name.quoted:
                    self._include(st, filename, stack[-1], depth)
                    if self.failed:
                        return
                else:
                    stack[-1].append(st)
            elif ev.kind == OPEN:
                if filename == COMMAND_LINE.file:
                    self.fail(ConfigError("block directives are not supported in -g option",
                                          ev.pos), stack[-1])
                    return
                if args:
                    st = Statement(args[0], args[1:], ev.pos, [])
                    args = []
                elif self.dialect == KEEPALIVED and stack[-1] and stack[-1][-1].block is None:
                    st = stack[-1].pop()  # "name\n{" : the brace on the next line
                    st.block = []
                else:
                    self.fail(ConfigError('unexpected "{"', ev.pos), stack[-1])
                    return
                stack[-1].append(st)
                assert st.block is not None
                stack.append(st.block)
                owners.append(st)
            elif ev.kind == CLOSE:
                if len(stack) == 1:
                    self.fail(ConfigError('unexpected "}"', ev.pos), stack[-1])
                    return
                stack.pop()
                owners.pop().close = ev.pos
            elif ev.kind == EOF and len(stack) > 1:
                self.fail(ConfigError('unexpected end of file, expecting "}"', ev.pos), stack[-1])
                return
        if error is not None:
            self.fail(error, stack[-1])

    def _include(self, st: Statement, filename: str, into: list[Statement], depth: int) -> None:
        if len(st.args) != 1:
            self.fail(ConfigError('invalid number of arguments in "include" directive', st.end),
                      into)
            return
        if depth > 32:
            self.fail(ConfigError("too deep include nesting", st.end), into)
            return
        name = st.args[0].value
        base = self.include_base if self.include_base is not None else os.path.dirname(filename)
        path = name if os.path.isabs(name) else os.path.join(base, name)
        if _GLOB_CHARS & set(name):
            paths = sorted(p for p in _glob.glob(path) if not os.path.isdir(p))
        else:
            paths = [path]
        for p in paths:
            try:
                text = self.reader(p)
            except OSError as e:
                self.fail(ConfigError(f'open() "{p}" failed ({e.errno}: {e.strerror})', st.end),
                          into)
                return
            self.result.files.append(p)
            events, error = self.lex(text, p)
            self.build(events, p, into, depth + 1, error)
            if self.failed:
                return


def parse_text(text: str, filename: str = "<string>", dialect: str = NGINX, *,
               include_base: str | None = None, reader: Reader = _read_file,
               defer_errors: bool = False) -> ParseResult:
    """Parse a whole configuration text into statements, expanding includes.

    A syntax error (or a failed include) raises ConfigError; with `defer_errors` the tree holds
    the statements read before it instead, followed by an ErrorStatement carrying it.
    """
    result = ParseResult([], [filename])
    builder = _TreeBuilder(dialect, include_base, reader, result, defer_errors)
    events, error = builder.lex(text, filename)
    builder.build(events, filename, result.statements, 0, error)
    return result


def parse_file(path: str, dialect: str = NGINX, *, include_base: str | None = None,
               reader: Reader = _read_file, defer_errors: bool = False) -> ParseResult:
    try:
        text = reader(path)
    except OSError as e:
        raise ConfigError(f'open() "{path}" failed ({e.errno}: {e.strerror})') from None
    return parse_text(text, path, dialect, include_base=include_base, reader=reader,
                      defer_errors=defer_errors)
