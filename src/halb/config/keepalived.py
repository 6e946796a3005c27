"""keepalived.conf -> KeepalivedConfig: reading the files and walking the keyword tables (PURE).

Reading follows keepalived 2.2.7's parser (checked against `keepalived -t` of Debian's build):

* Each file is read a line at a time. A line starting with `@ID` is kept only when ID is the
  config-id, `@^ID` only when it is not; the config-id is what `-i/--config-id` gives, else the
  first label of the host name (uname), not router_id (keepalived.conf(5), "Conditional
  configuration"). Conditionals apply before include, so `@main include x.conf` works as it
  does in 2.2.7 (the man page's warning notwithstanding).
* `$NAME=VALUE` defines a parameter; `$NAME` (followed by white space) and `${NAME}` are then
  replaced, recursively; undefined names stay as written.
* `include PATTERN` (and includer/m/w/b/a/t) takes globs with csh braces, relative to the
  including file's directory. A missing file or directory is reported ("Config files missing
  'x'.") and reading goes on; a pattern matching nothing in an existing directory is not, as in
  keepalived 2.2.7.
* Lines are then tokenized by the shared lexer (config/lexer.py, KEEPALIVED dialect).
* The keyword walk is keepalived's: a keyword unknown in its block is reported ("Unknown keyword
  'x'") and skipped; a `{` after it is reported ("Unexpected '{' - ignoring") and not entered, so
  the next `}` closes the enclosing block, exactly as keepalived reads such a file. A `}` at top
  level is "Unknown keyword '}'" (and "Extra '}' found" when no brace is left open).

keepalived reports most problems and runs on (report_config_error): those are the `warnings`,
ConfigErrors with file:line; `format_error` renders them as keepalived does
("(/etc/keepalived/keepalived.conf: Line 12) Unknown keyword 'foo'"). What stops keepalived
(a missing parameter, an instance without virtual_router_id, two instances on one VRID) raises
FatalConfigError, carrying the warnings reported before it. global_defs and the raw blocks of
later roles (virtual_server, ...) are in config/keepalived_global.py, the VRRP blocks in
config/keepalived_vrrp.py, and their resolution in config/keepalived_complete.py.
"""

from __future__ import annotations

import fnmatch
import glob as _glob
import ipaddress
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from halb.config import lexer
from halb.config.errors import ConfigError, Pos
from halb.config.keepalived_model import GlobalDefs, KeepalivedConfig, RawBlock, RawStatement
from halb.config.lexer import Token

NOTE = "note"  # an event of our own: a warning found while reading, kept in reading order
_GLOB_CHARS = frozenset("*?[")


class FatalConfigError(ConfigError):
    """A problem that stops keepalived; `warnings` are those reported before it."""

    def __init__(self, message: str, pos: Pos | None = None,
                 warnings: list[ConfigError] | None = None) -> None:
        super().__init__(message, pos)
        self.warnings = list(warnings or [])


def format_error(err: ConfigError) -> str:
    """keepalived's `-t` wording: `(FILE: Line N) message`, or the bare message."""
    if err.pos is None or not err.pos.line:
        return err.message
    return f"({err.pos.file}: Line {err.pos.line}) {err.message}"


# -- sources ---------------------------------------------------------------------------------


class Source(Protocol):
    def read(self, path: str) -> str: ...

    def glob(self, pattern: str) -> list[str]: ...

    def isdir(self, path: str) -> bool: ...


class FileSource:
    def read(self, path: str) -> str:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()

    def glob(self, pattern: str) -> list[str]:
        if not _GLOB_CHARS & set(pattern):
            return [pattern] if os.path.isfile(pattern) else []
        return sorted(p for p in _glob.glob(pattern) if os.path.isfile(p))

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)


@dataclass
class MemorySource:
    """Files from a mapping (tests): path -> text."""

    files: dict[str, str]

    def read(self, path: str) -> str:
        if path not in self.files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return self.files[path]

    def glob(self, pattern: str) -> list[str]:
        want = pattern.split("/")
        return sorted(p for p in self.files if len(p.split("/")) == len(want) and all(
            fnmatch.fnmatchcase(a, b) for a, b in zip(p.split("/"), want, strict=True)))

    def isdir(self, path: str) -> bool:
        return any(p.startswith(path.rstrip("/") + "/") for p in self.files)


def expand_braces(pattern: str) -> list[str]:
    """csh brace expansion as glob(GLOB_BRACE) does it: "a{b,c{d,e}}f" -> abf acdf acef."""
    depth, start = 0, -1
    for i, ch in enumerate(pattern):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                inner, parts, level, last = pattern[start + 1:i], [], 0, 0
                for j, c in enumerate(inner):
                    level += (c == "{") - (c == "}")
                    if c == "," and level == 0:
                        parts.append(inner[last:j])
                        last = j + 1
                parts.append(inner[last:])
                if len(parts) == 1:
                    continue
                return [x for part in parts
                        for x in expand_braces(pattern[:start] + part + pattern[i + 1:])]
    return [pattern]


# -- reading: conditionals, parameters, include ----------------------------------------------

_COND = re.compile(r"^(\s*)@(\^?)(\S*)")
_DEFINE = re.compile(r"^\s*\$([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
# the file name is a word of its own (braces included: "conf.d/{a,b}.conf"), or quoted
_INCLUDE = re.compile(r'^\s*(include[rmwbat]?)\s+(?:"([^"]*)"|([^\s#!]+))')
_PARAM = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)(?=\s|$)")


class _Reader:
    def __init__(self, source: Source, config_id: str) -> None:
        self.source = source
        self.config_id = config_id
        self.params: dict[str, str] = {}
        self.files: list[str] = []

    def read(self, path: str, shown: str, depth: int = 0) -> list[lexer.Event]:
        text = self.source.read(path)
        self.files.append(path)
        lex = lexer.Lexer(shown, lexer.KEEPALIVED)
        events: list[lexer.Event] = []
        for lineno, raw in enumerate(text.split("\n"), 1):
            line = self._conditional(raw)
            m = _DEFINE.match(line)
            if m:
                self.params[m.group(1)] = m.group(2).rstrip()
                line = ""
            m = _INCLUDE.match(line)
            if m:
                events += lex.feed("\n")
                self._include(m.group(1), m.group(2) if m.group(2) is not None else m.group(3),
                              path, Pos(shown, lineno, m.start(1) + 1), depth, events)
                continue
            events += lex.feed(self._substitute(line) + "\n")
        return [e for e in events + lex.end() if e.kind != lexer.EOF]

    def _conditional(self, line: str) -> str:
        m = _COND.match(line)
        if not m:
            return line
        keep = (m.group(3) == self.config_id) != (m.group(2) == "^")
        return " " * m.end() + line[m.end():] if keep else ""

    def _substitute(self, line: str) -> str:
        for _ in range(32):  # replacement is recursive; a self-referencing value stops here
            new = _PARAM.sub(lambda m: self.params.get(m.group(1) or m.group(2), m.group(0)),
                             line)
            if new == line:
                break
            line = new
        return line

    def _include(self, kind: str, name: str | None, path: str, pos: Pos, depth: int,
                 events: list[lexer.Event]) -> None:
        if not name or depth > 32:
            return
        base = os.path.dirname(path)
        matched = missing = False
        for pattern in expand_braces(name):
            full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
            found_any = False
            for found in self.source.glob(full):
                found_any = matched = True
                shown = found if os.path.isabs(pattern) else os.path.relpath(found, base)
                try:
                    events += self.read(found, shown, depth + 1)
                except OSError:
                    continue
            # 2.2.7 says so (and runs on) for a missing file or directory, not for a pattern
            # that matches nothing in an existing directory
            if not found_any and (not _GLOB_CHARS & set(pattern) or
                                  not self.source.isdir(os.path.dirname(full))):
                missing = True
        if missing or (not matched and kind != "include"):  # reported in reading order
            message = f"Config files missing '{name}'."
            events.append(lexer.Event(NOTE, pos, Token(message, pos)))


# -- items: statements and closing braces ----------------------------------------------------


@dataclass(slots=True)
class Stmt:
    """A line: its words and whether it opens a block (`{` at its end or on the next line)."""

    words: list[Token]
    opens: bool = False

    @property
    def name(self) -> str:
        return self.words[0].value

    @property
    def args(self) -> list[str]:
        return [w.value for w in self.words[1:]]

    @property
    def pos(self) -> Pos:
        return self.words[0].pos


@dataclass(slots=True)
class Close:
    pos: Pos


@dataclass(slots=True)
class Note:
    message: str
    pos: Pos


def _items(events: Iterable[lexer.Event]) -> list[Stmt | Close | Note]:
    items: list[Stmt | Close | Note] = []
    words: list[Token] = []
    for ev in events:
        if ev.kind == lexer.WORD:
            assert ev.token is not None
            words.append(ev.token)
        elif ev.kind == lexer.END and words:
            items.append(Stmt(words))
            words = []
        elif ev.kind == lexer.OPEN:
            if words:
                items.append(Stmt(words, True))
                words = []
            elif items and isinstance(items[-1], Stmt) and not items[-1].opens:
                items[-1].opens = True  # "keyword" then "{" on a line of its own
            else:
                items.append(Stmt([Token("{", ev.pos)]))
        elif ev.kind == lexer.CLOSE:
            items.append(Close(ev.pos))
        elif ev.kind == NOTE:
            assert ev.token is not None
            items.append(Note(ev.token.value, ev.pos))
    return items


# -- the keyword tables and the walk ---------------------------------------------------------

Handler = Callable[["Builder", "Frame", Stmt], "Frame | None"]
Closer = Callable[["Builder", "Frame", "Pos | None"], None]


@dataclass(frozen=True, slots=True)
class Keyword:
    handler: Handler
    # True: the keyword opens a block (vrrp_instance NAME {); None: it may (raw keywords, the
    # handler returns the frame to enter when the line opens one)
    block: bool | None = False
    min_args: int = 0  # fewer words: keepalived's fatal "missing a parameter"
    named: bool = False  # a block that needs a name: the handler reports it missing


KEYWORDS: dict[str, dict[str, Keyword]] = {}


def keyword(ctx: str, *names: str, block: bool | None = False, min_args: int = 0,
            named: bool = False) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            KEYWORDS.setdefault(ctx, {})[name] = Keyword(fn, block, min_args, named)
        return fn

    return register


def accept(ctx: str, names: str, min_args: int = 0) -> None:
    """Keywords keepalived knows that halb does not act on: kept verbatim in `other`."""

    def handler(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
        frame.other[st.name] = tuple(st.args)
        return None

    for name in names.split():
        KEYWORDS.setdefault(ctx, {})[name] = Keyword(handler, False, min_args)


@dataclass(eq=False)
class Frame:
    """A block being read: its keyword table (ctx), or a `lines` handler for list blocks."""

    ctx: str
    obj: Any = None
    pos: Pos | None = None
    lines: Handler | None = None
    on_close: Closer | None = None
    other: dict[str, tuple[str, ...]] = field(default_factory=dict)
    raw: list[RawStatement] | None = None


class Builder:
    """Walks the items through the keyword tables; handlers keep their state here."""

    def __init__(self, conf_file: str, config_id: str) -> None:
        self.conf_file = conf_file
        self.config_id = config_id
        self.warnings: list[ConfigError] = []
        self.global_defs: dict[str, Any] = {}
        self.global_other: dict[str, tuple[str, ...]] = {}
        self.scripts: dict[str, Any] = {}
        self.instances: list[Any] = []
        self.groups: list[Any] = []
        self.raw: list[RawBlock] = []

    def warn(self, message: str, pos: Pos | None) -> None:
        self.warnings.append(ConfigError(message, pos, level="warn"))

    def fatal(self, message: str, pos: Pos | None = None) -> FatalConfigError:
        return FatalConfigError(message, pos, self.warnings)

    def run(self, items: list[Stmt | Close | Note]) -> None:
        stack = [Frame("top")]
        self._open_braces = 0
        i = 0
        while i < len(items):
            item = items[i]
            i += 1
            if isinstance(item, Close):
                self._close(stack, item)
                continue
            if isinstance(item, Note):
                self.warn(item.message, item.pos)
                continue
            frame = stack[-1]
            if item.opens:
                self._open_braces += 1
            i = self._statement(stack, frame, item, items, i)
        while len(stack) > 1:  # keepalived closes what the file left open
            self._pop(stack, None)

    def _pop(self, stack: list[Frame], pos: Pos | None) -> None:
        frame = stack.pop()
        if frame.on_close is not None:
            frame.on_close(self, frame, pos)

    def _close(self, stack: list[Frame], item: Close) -> None:
        self._open_braces -= 1
        if self._open_braces < 0:
            self.warn("Extra '}' found", item.pos)
            self._open_braces = 0
        if len(stack) == 1:
            self.warn("Unknown keyword '}'", item.pos)
        else:
            self._pop(stack, item.pos)

    def _statement(self, stack: list[Frame], frame: Frame, item: Stmt,
                   items: list[Stmt | Close | Note], i: int) -> int:
        """Handle one line in `frame`; returns the index of the next item to read."""
        if frame.lines is not None:
            child = frame.lines(self, frame, item)
            if child is not None:
                stack.append(child)
            return i
        kw = KEYWORDS.get(frame.ctx, {}).get(item.name)
        if kw is None:
            self.warn(f"Unknown keyword '{item.name}'", item.pos)
            if item.opens:
                self.warn("Unexpected '{' - ignoring", item.pos)
            return i
        if len(item.words) <= kw.min_args:
            raise self.fatal(f"*** Configuration line starting `{item.name}` is missing a "
                             f"parameter after keyword `{item.name}` at word position "
                             f"{len(item.words) + 1}", item.pos)
        missing = kw.block is True and not item.opens and not (kw.named and not item.args)
        if missing:
            # keepalived (its VRRP process) reports the absent "{" at the next line and reads
            # the block all the same, so the "}" that ends it will be an extra one
            nxt = items[i] if i < len(items) else None
            self.warn("Missing '{' at beginning of configuration block",
                      nxt.pos if nxt is not None else item.pos)
        if item.opens and kw.block is False:
            self.warn("Unexpected '{' - ignoring", item.pos)
        child = kw.handler(self, frame, item)
        if kw.block is not False and (item.opens or missing):
            stack.append(child if child is not None else Frame("discard", lines=_discard))
        return i

    # -- value helpers (keepalived's read_*_strvec and their messages) ------------------------

    def integer(self, st: Stmt, text: str, lo: int, hi: int,
                signed: bool = False) -> int | None:
        """keepalived's read_unsigned_strvec / read_int_strvec, with their messages."""
        if not re.fullmatch(r"[+-]?\d+", text):
            self.warn(f"invalid number '{text}'", st.pos)
            return None
        value = int(text)
        if not signed and value < 0:
            self.warn(f"negative number '{text}'", st.pos)
            return None
        if not signed and value > 2 ** 32 - 1:
            self.warn(f"number '{text}' outside unsigned integer range", st.pos)
            return None
        if signed and not -2 ** 31 <= value < 2 ** 31:
            self.warn(f"number '{text}' outside integer range", st.pos)
            return None
        if not lo <= value <= hi:
            self.warn(f"number '{text}' outside range [{lo}, {hi}]", st.pos)
            return None
        return value

    def decimal(self, st: Stmt, text: str, lo: float, hi: float) -> float | None:
        """A <TIMER>: decimal seconds, microsecond resolution."""
        if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", text):
            self.warn(f"invalid number '{text}'", st.pos)
            return None
        value = round(float(text), 6)
        if value < 0 <= lo:
            self.warn(f"negative number '{text}'", st.pos)
            return None
        if not lo <= value <= hi:
            self.warn(f"number '{text}' outside range [{lo:f}, {hi:f}]", st.pos)
            return None
        return value

    def flag(self, st: Stmt, message: str, default: bool = True) -> bool | None:
        """An optional <BOOL> after a keyword (on|off|true|false|yes|no); `message` is
        keepalived's complaint about anything else."""
        if not st.args:
            return default
        value = {"on": True, "true": True, "yes": True,
                 "off": False, "false": False, "no": False}.get(st.args[0].lower())
        if value is None:
            self.warn(message.format(name=st.name, value=st.args[0]), st.pos)
        return value

    def address(self, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            return None

    # -- freezing ----------------------------------------------------------------------------

    def freeze(self, files: list[str]) -> KeepalivedConfig:
        from halb.config.keepalived_complete import complete

        g = GlobalDefs(**self.global_defs, other=MappingProxyType(dict(self.global_other)))
        scripts, instances, groups = complete(self, g)
        return KeepalivedConfig(self.conf_file, tuple(files), self.config_id, g,
                                MappingProxyType(scripts), tuple(instances), tuple(groups),
                                tuple(self.raw))


def _discard(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    return Frame("discard", lines=_discard) if st.opens else None


# -- entry points ----------------------------------------------------------------------------


@dataclass
class Loaded:
    config: KeepalivedConfig
    warnings: list[ConfigError]


def default_config_id() -> str:
    """keepalived's default config-id: the host name up to its first dot (uname)."""
    return os.uname().nodename.split(".")[0]


def load(conf_file: str = "/etc/keepalived/keepalived.conf", *, config_id: str | None = None,
         source: Source | None = None) -> Loaded:
    """Read keepalived.conf the way `keepalived -f conf_file [-i config_id]` does."""
    # the keyword handlers register on import
    from halb.config import keepalived_complete, keepalived_global  # noqa: F401

    source = source or FileSource()
    config_id = default_config_id() if config_id is None else config_id
    builder = Builder(conf_file, config_id)
    reader = _Reader(source, config_id)
    try:
        events = reader.read(conf_file, conf_file)
    except OSError as e:
        raise FatalConfigError(f"Configuration file '{conf_file}' could not be read: "
                               f"{e.strerror}") from None
    except FatalConfigError:
        raise
    except ConfigError as e:
        raise FatalConfigError(e.message, e.pos, builder.warnings) from None
    builder.run(_items(events))
    return Loaded(builder.freeze(reader.files), builder.warnings)


def load_text(text: str, filename: str = "/etc/keepalived/keepalived.conf", *,
              files: dict[str, str] | None = None, config_id: str = "halb") -> Loaded:
    """Load from text (tests): `files` maps the paths of included files to their contents."""
    table = dict(files or {})
    table[filename] = text
    return load(filename, config_id=config_id, source=MemorySource(table))
