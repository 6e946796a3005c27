"""The configuration lexer: nginx's ngx_conf_read_token and the keepalived dialect.

In the h11 style, one table of cases drives three checks: the text fed whole, the text fed one
character at a time (the events must be identical, positions included), and the text followed by
trailing garbage (the events of the valid prefix are unchanged, then the garbage adds its own
events or fails with nginx's message). Statement trees, errors, positions and include follow.
"""

from __future__ import annotations

import os

import pytest

from halb.config.errors import ConfigError
from halb.config.lexer import (
    CLOSE,
    END,
    EOF,
    KEEPALIVED,
    NGINX,
    OPEN,
    WORD,
    ErrorStatement,
    Event,
    Lexer,
    Statement,
    parse_file,
    parse_text,
    tokenize,
)

F = "/etc/test.conf"
MARK = {END: "<;>", OPEN: "<{>", CLOSE: "<}>"}


def compact(events: list[Event]) -> list[str]:
    """Words as their values, `;` `{` `}` as <;> <{> <}>; the final EOF is checked and dropped."""
    assert events and events[-1].kind == EOF
    assert all(e.kind != EOF for e in events[:-1])
    out = []
    for e in events[:-1]:
        if e.kind == WORD:
            assert e.token is not None
            out.append(e.token.value)
        else:
            out.append(MARK[e.kind])
    return out


def feed_by_char(text: str, dialect: str) -> list[Event]:
    lexer = Lexer(F, dialect)
    events: list[Event] = []
    for ch in text:
        events += lexer.feed(ch)
    return events + lexer.end()


def tree(statements: list[Statement]) -> list[object]:
    """[name, arg, ...] for a simple statement, [name, arg, ..., [children]] for a block."""
    out: list[object] = []
    for st in statements:
        item: list[object] = [st.name.value, *st.values]
        if st.block is not None:
            item.append(tree(st.block))
        out.append(item)
    return out


# -- the table ---------------------------------------------------------------------------------

# (id, dialect, text, events). Every text ends where a statement may start (the garbage check
# appends a newline and more).
CASES = [
    # nginx: words, statements, blocks
    ("empty", NGINX, "", []),
    ("blank", NGINX, "  \t\r\n\n", []),
    ("one", NGINX, "daemon off;", ["daemon", "off", "<;>"]),
    ("no-args", NGINX, "internal;", ["internal", "<;>"]),
    ("spaces", NGINX, "  worker_processes\t 4 ;\n", ["worker_processes", "4", "<;>"]),
    ("newlines", NGINX, "listen\n80\n;", ["listen", "80", "<;>"]),
    ("two", NGINX, "a 1;b 2;", ["a", "1", "<;>", "b", "2", "<;>"]),
    ("block", NGINX, "events { }", ["events", "<{>", "<}>"]),
    ("block-tight", NGINX, "events{}", ["events", "<{>", "<}>"]),
    ("block-body", NGINX, "http { sendfile on; }",
     ["http", "<{>", "sendfile", "on", "<;>", "<}>"]),
    ("nested", NGINX, "http{server{location /{root x;}}}",
     ["http", "<{>", "server", "<{>", "location", "/", "<{>", "root", "x", "<;>", "<}>", "<}>",
      "<}>"]),
    ("close-after-word-end", NGINX, "a { b; }c;", ["a", "<{>", "b", "<;>", "<}>", "c", "<;>"]),
    ("brace-in-word", NGINX, "a b}c;", ["a", "b}c", "<;>"]),
    # quoting
    ("dq", NGINX, 'a "b c";', ["a", "b c", "<;>"]),
    ("sq", NGINX, "a 'b c';", ["a", "b c", "<;>"]),
    ("dq-empty", NGINX, 'a "";', ["a", "", "<;>"]),
    ("sq-empty", NGINX, "a '';", ["a", "", "<;>"]),
    ("dq-specials", NGINX, 'a "; { } # \'";', ["a", "; { } # '", "<;>"]),
    ("sq-specials", NGINX, "a '; { } # \"';", ["a", '; { } # "', "<;>"]),
    ("dq-newline", NGINX, 'a "b\nc";', ["a", "b\nc", "<;>"]),
    ("dq-then-semicolon", NGINX, 'a "b";', ["a", "b", "<;>"]),
    ("dq-then-brace", NGINX, 'location "/x"{}', ["location", "/x", "<{>", "<}>"]),
    ("quote-inside-word", NGINX, 'a b"c";', ["a", 'b"c"', "<;>"]),
    ("quoted-name", NGINX, '"daemon" off;', ["daemon", "off", "<;>"]),
    ("paren-after-quote", NGINX, 'if ($a = "b") {}',
     ["if", "($a", "=", "b", ")", "<{>", "<}>"]),
    ("paren-after-sq", NGINX, "if ($a ~ 'b')  { }", ["if", "($a", "~", "b", ")", "<{>", "<}>"]),
    # escapes: \" \' \\ \t \r \n are unescaped, others kept as written
    ("esc-dq", NGINX, r'a "b\"c";', ["a", 'b"c', "<;>"]),
    ("esc-sq", NGINX, r"a 'b\'c';", ["a", "b'c", "<;>"]),
    ("esc-backslash", NGINX, r"a b\\c;", ["a", "b\\c", "<;>"]),
    ("esc-t", NGINX, r"a b\tc;", ["a", "b\tc", "<;>"]),
    ("esc-r", NGINX, r"a b\rc;", ["a", "b\rc", "<;>"]),
    ("esc-n", NGINX, r'a "b\nc";', ["a", "b\nc", "<;>"]),
    ("esc-unknown", NGINX, r"a \d+;", ["a", r"\d+", "<;>"]),
    ("esc-unknown-quoted", NGINX, r'a "\.\w";', ["a", r"\.\w", "<;>"]),
    ("esc-semicolon", NGINX, r"a b\;c;", ["a", r"b\;c", "<;>"]),
    ("esc-space", NGINX, r"a b\ c;", ["a", r"b\ c", "<;>"]),
    ("esc-brace", NGINX, r"a b\{;", ["a", r"b\{", "<;>"]),
    ("esc-quote-starts-word", NGINX, r"a \"b;", ["a", '"b', "<;>"]),
    # variables: ${var} does not open a block, $var{ does
    ("var-brace", NGINX, "return 200 ${uri}x;", ["return", "200", "${uri}x", "<;>"]),
    ("var-brace-mid", NGINX, "a b${x}c{ }", ["a", "b${x}c", "<{>", "<}>"]),
    ("var-then-brace", NGINX, "a $x{ }", ["a", "$x", "<{>", "<}>"]),
    ("var-brace-quoted", NGINX, 'a "${x}";', ["a", "${x}", "<;>"]),
    # comments
    ("comment", NGINX, "# hello\na 1; # tail { ; }\n", ["a", "1", "<;>"]),
    ("comment-at-eof", NGINX, "a 1;\n# the end", ["a", "1", "<;>"]),
    ("comment-in-statement", NGINX, "a # c\n 1;", ["a", "1", "<;>"]),
    ("sharp-in-word", NGINX, "a b#c;", ["a", "b#c", "<;>"]),
    ("sharp-in-quotes", NGINX, 'a "#c";', ["a", "#c", "<;>"]),
    ("comment-in-block", NGINX, "a {\n # }\n}", ["a", "<{>", "<}>"]),
    # keepalived: newline ends a statement, { and } are tokens, ! and # comment
    ("ka-empty", KEEPALIVED, "\n\n", []),
    ("ka-one", KEEPALIVED, "router_id LVS_1\n", ["router_id", "LVS_1", "<;>"]),
    ("ka-no-newline", KEEPALIVED, "router_id LVS_1", ["router_id", "LVS_1", "<;>"]),
    ("ka-block", KEEPALIVED, "vrrp_instance VI_1 {\n  state MASTER\n  priority 100\n}\n",
     ["vrrp_instance", "VI_1", "<{>", "state", "MASTER", "<;>", "priority", "100", "<;>",
      "<}>"]),
    ("ka-brace-next-line", KEEPALIVED, "virtual_server 10.0.0.1 80\n{\n  delay_loop 6\n}\n",
     ["virtual_server", "10.0.0.1", "80", "<;>", "<{>", "delay_loop", "6", "<;>", "<}>"]),
    ("ka-one-line-block", KEEPALIVED, "virtual_ipaddress { 10.0.0.1/24 }\n",
     ["virtual_ipaddress", "<{>", "10.0.0.1/24", "<;>", "<}>"]),
    ("ka-tight-braces", KEEPALIVED, "a{b}\n", ["a", "<{>", "b", "<;>", "<}>"]),
    ("ka-bang-comment", KEEPALIVED, "! Configuration File\na 1 ! trailing\n", ["a", "1", "<;>"]),
    ("ka-sharp-comment", KEEPALIVED, "# c\na 1 # trailing\n", ["a", "1", "<;>"]),
    ("ka-comment-in-word", KEEPALIVED, "a b!c\n", ["a", "b", "<;>"]),
    ("ka-quoted", KEEPALIVED, 'notify "/usr/bin/x --arg 1"\n',
     ["notify", "/usr/bin/x --arg 1", "<;>"]),
    ("ka-quoted-specials", KEEPALIVED, 'a "b { } ! # c"\n', ["a", "b { } ! # c", "<;>"]),
    ("ka-quoted-empty", KEEPALIVED, 'a ""\n', ["a", "", "<;>"]),
    ("ka-quoted-escapes", KEEPALIVED, r'a "x\"y\n"' + "\n", ["a", 'x"y\n', "<;>"]),
    ("ka-tabs-cr", KEEPALIVED, "a\t1\r\n", ["a", "1", "<;>"]),
    ("ka-semicolon-is-text", KEEPALIVED, "a b;\n", ["a", "b;", "<;>"]),
]


def _ids(cases: list[tuple[object, ...]]) -> list[str]:
    return [str(c[0]) for c in cases]


@pytest.mark.parametrize(("name", "dialect", "text", "expected"), CASES, ids=_ids(CASES))
def test_fed_whole(name: str, dialect: str, text: str, expected: list[str]) -> None:
    assert compact(tokenize(text, F, dialect)) == expected


@pytest.mark.parametrize(("name", "dialect", "text", "expected"), CASES, ids=_ids(CASES))
def test_fed_one_character_at_a_time(name: str, dialect: str, text: str,
                                     expected: list[str]) -> None:
    assert feed_by_char(text, dialect) == tokenize(text, F, dialect)


@pytest.mark.parametrize(("name", "dialect", "text", "expected"), CASES, ids=_ids(CASES))
def test_fed_in_two_pieces_at_every_split(name: str, dialect: str, text: str,
                                          expected: list[str]) -> None:
    whole = tokenize(text, F, dialect)
    for cut in range(len(text) + 1):
        lexer = Lexer(F, dialect)
        assert lexer.feed(text[:cut]) + lexer.feed(text[cut:]) + lexer.end() == whole


# The garbage appended after a newline: (garbage, events it adds, or the error it raises).
GARBAGE = {
    NGINX: [
        ("extra 1;", ["extra", "1", "<;>"]),
        ("}", ["<}>"]),
        ("x", 'unexpected end of file, expecting ";" or "}"'),
        ('x "y', 'unexpected end of file, expecting ";" or "}"'),
        (";", 'unexpected ";"'),
        ("{", 'unexpected "{"'),
        ('x "y"z;', 'unexpected "z"'),
        ("x 'y'\";", "unexpected \"\"\""),
    ],
    KEEPALIVED: [
        ("extra 1", ["extra", "1", "<;>"]),
        ("}", ["<}>"]),
        ("{", ["<{>"]),
        ('x "y', "unexpected end of file in a quoted string"),
        ('x "y\nz"', "unterminated quoted string"),
    ],
}
GARBAGE_CASES = [(f"{c[0]}+{g!r}", c[1], c[2], c[3], g, out)
                 for c in CASES for g, out in GARBAGE[c[1]]]


@pytest.mark.parametrize(("name", "dialect", "text", "expected", "garbage", "more"),
                         GARBAGE_CASES, ids=_ids(GARBAGE_CASES))
@pytest.mark.parametrize("by_char", [False, True], ids=["whole", "by-char"])
def test_trailing_garbage(name: str, dialect: str, text: str, expected: list[str],
                          garbage: str, more: list[str] | str, by_char: bool) -> None:
    lexer = Lexer(F, dialect)
    prefix = lexer.feed(text)
    whole = tokenize(text, F, dialect)[:-1]
    assert prefix == whole[:len(prefix)]  # what the valid prefix produced is untouched
    events: list[Event] = []
    try:
        for piece in (list("\n" + garbage) if by_char else ["\n" + garbage]):
            events += lexer.feed(piece)
        events += lexer.end()
    except ConfigError as e:
        assert isinstance(more, str), f"unexpected error {e}"
        assert e.message == more
        assert e.pos is not None and e.pos.file == F
        assert e.pos.line == text.count("\n") + 2  # the line the garbage starts on
        return
    assert compact(prefix + events) == expected + more


# -- errors --------------------------------------------------------------------------------------

LEXER_ERRORS = [
    # (text, message, line) — raised by the tokenizer itself
    (";", 'unexpected ";"', 1),
    ("a;\n  ;", 'unexpected ";"', 2),
    ("{", 'unexpected "{"', 1),
    ("a; {", 'unexpected "{"', 1),
    ("a { b }", 'unexpected "}"', 1),
    ('a "b"x;', 'unexpected "x"', 1),
    ("a 'b'x;", 'unexpected "x"', 1),
    ('a "b"\'c\';', "unexpected \"'\"", 1),
    ('a "b""c";', 'unexpected """', 1),
    ('a\n"b"#;', 'unexpected "#"', 2),
    ('a\n"b"\n#;', 'unexpected end of file, expecting ";" or "}"', 3),  # a comment: ";" too
    ("a", 'unexpected end of file, expecting ";" or "}"', 1),
    ("a b\n", 'unexpected end of file, expecting ";" or "}"', 2),
    ('a "b', 'unexpected end of file, expecting ";" or "}"', 1),
    ("a 'b\n\n", 'unexpected end of file, expecting ";" or "}"', 3),
    ("a \\", 'unexpected end of file, expecting ";" or "}"', 1),
    ('a "b"', 'unexpected end of file, expecting ";" or "}"', 1),
]


@pytest.mark.parametrize(("text", "message", "line"), LEXER_ERRORS)
@pytest.mark.parametrize("by_char", [False, True], ids=["whole", "by-char"])
def test_lexer_errors(text: str, message: str, line: int, by_char: bool) -> None:
    with pytest.raises(ConfigError) as exc:
        if by_char:
            feed_by_char(text, NGINX)
        else:
            tokenize(text, F, NGINX)
    assert exc.value.message == message
    assert str(exc.value) == f"{message} in {F}:{line}"


TREE_ERRORS = [
    # (text, message, line) — found while building the statement tree
    ("a 1; }", 'unexpected "}"', 1),
    ("a {\n}\n}", 'unexpected "}"', 3),
    ("http {\n", 'unexpected end of file, expecting "}"', 2),
    ("http { server {\n }", 'unexpected end of file, expecting "}"', 2),
    ("http { server { listen 80; }", 'unexpected end of file, expecting "}"', 1),
    ("include a b;", 'invalid number of arguments in "include" directive', 1),
    ("include;", 'invalid number of arguments in "include" directive', 1),
]


@pytest.mark.parametrize(("text", "message", "line"), TREE_ERRORS)
def test_tree_errors(text: str, message: str, line: int) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_text(text, F)
    assert str(exc.value) == f"{message} in {F}:{line}"


@pytest.mark.parametrize(("text", "message", "line"), LEXER_ERRORS + TREE_ERRORS)
def test_deferred_errors_keep_what_was_read_before(text: str, message: str, line: int) -> None:
    """With defer_errors the tree holds the complete statements, then an ErrorStatement."""
    result = parse_text(text, F, defer_errors=True)
    last: list[Statement] = result.statements
    while last and last[-1].block is not None:  # the error sits in the innermost open block
        last = last[-1].block
    err = last[-1]
    assert isinstance(err, ErrorStatement)
    assert err.error is not None and str(err.error) == f"{message} in {F}:{line}"


def test_deferred_error_position_in_tree() -> None:
    result = parse_text("a 1;\nhttp {\n server {\n  listen 80;\n  foo bar\n", F,
                        defer_errors=True)
    assert tree(result.statements[:1]) == [["a", "1"]]
    server = result.statements[1].block
    assert server is not None
    assert tree(server[0].block[:1]) == [["listen", "80"]]  # type: ignore[index]
    err = server[0].block[1]  # type: ignore[index]
    assert isinstance(err, ErrorStatement)
    assert str(err.error) == f'unexpected end of file, expecting ";" or "}}" in {F}:6'


def test_command_line_messages() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_text("daemon off", "command line")
    assert str(exc.value) == 'unexpected end of parameter, expecting ";" in command line'
    with pytest.raises(ConfigError) as exc:
        parse_text("events { }", "command line")
    assert str(exc.value) == "block directives are not supported in -g option in command line"


def test_keepalived_errors() -> None:
    with pytest.raises(ConfigError) as exc:
        tokenize('a "b\n', F, KEEPALIVED)
    assert str(exc.value) == f"unterminated quoted string in {F}:1"
    with pytest.raises(ConfigError) as exc:
        parse_text("a 1\n}\n", F, KEEPALIVED)
    assert str(exc.value) == f'unexpected "}}" in {F}:2'
    with pytest.raises(ConfigError) as exc:
        parse_text("a {\n b\n", F, KEEPALIVED)
    assert exc.value.message == 'unexpected end of file, expecting "}"'
    with pytest.raises(ConfigError) as exc:
        parse_text("{\n}\n", F, KEEPALIVED)
    assert str(exc.value) == f'unexpected "{{" in {F}:1'


def test_feed_after_end_and_unknown_dialect() -> None:
    lexer = Lexer(F)
    lexer.end()
    with pytest.raises(ValueError):
        lexer.feed("a;")
    with pytest.raises(ValueError):
        Lexer(F, "apache")


# -- positions -----------------------------------------------------------------------------------


def test_token_positions_nginx() -> None:
    text = 'http {\n  server {\n\tlisten  "80" ;\n  }\n}\n'
    got = [(e.kind, e.token.value if e.token else None, e.pos.line, e.pos.col)
           for e in tokenize(text, F)]
    assert got == [
        (WORD, "http", 1, 1), (OPEN, None, 1, 6),
        (WORD, "server", 2, 3), (OPEN, None, 2, 10),
        (WORD, "listen", 3, 2), (WORD, "80", 3, 10), (END, None, 3, 15),
        (CLOSE, None, 4, 3), (CLOSE, None, 5, 1), (EOF, None, 6, 0),
    ]
    words = [e.token for e in tokenize(text, F) if e.token]
    assert [w.quoted for w in words] == [False, False, False, True]
    assert str(words[0].pos) == f"{F}:1"
    assert str(words[0]) == "http"


def test_token_positions_keepalived() -> None:
    text = "global_defs {\n   router_id  A\n}\n"
    got = [(e.kind, e.token.value if e.token else None, e.pos.line, e.pos.col)
           for e in tokenize(text, F, KEEPALIVED)]
    assert got[:5] == [(WORD, "global_defs", 1, 1), (OPEN, None, 1, 13),
                       (WORD, "router_id", 2, 4), (WORD, "A", 2, 15), (END, None, 2, 15)]
    assert got[5][:1] == (CLOSE,) and got[5][2:] == (3, 1)


def test_statement_end_is_where_nginx_reports() -> None:
    st = parse_text("listen\n  80\n  ;\nlocation /x\n{ }", F).statements
    assert (st[0].pos.line, st[0].end.line) == (1, 3)
    assert (st[1].pos.line, st[1].end.line) == (4, 5)
    assert st[1].values == ["/x"]


# -- statement trees -----------------------------------------------------------------------------

TREES = [
    (NGINX, "daemon off; events { worker_connections 10; }",
     [["daemon", "off"], ["events", [["worker_connections", "10"]]]]),
    (NGINX, "http { server { listen 80; location / { } } }",
     [["http", [["server", [["listen", "80"], ["location", "/", []]]]]]]),
    (NGINX, 'types { text/html html htm; "image/x" x; }',
     [["types", [["text/html", "html", "htm"], ["image/x", "x"]]]]),
    (NGINX, '"include" x;', [["include", "x"]]),  # a quoted include is just a directive
    (KEEPALIVED, "global_defs {\n router_id A\n}\nvrrp_instance V\n{\n state MASTER\n}\n",
     [["global_defs", [["router_id", "A"]]], ["vrrp_instance", "V", [["state", "MASTER"]]]]),
    (KEEPALIVED, "virtual_server 1.2.3.4 80 {\n real_server 10.0.0.1 80 {\n  weight 1\n }\n}",
     [["virtual_server", "1.2.3.4", "80", [["real_server", "10.0.0.1", "80",
                                            [["weight", "1"]]]]]]),
]


@pytest.mark.parametrize(("dialect", "text", "expected"), TREES)
def test_trees(dialect: str, text: str, expected: list[object]) -> None:
    assert tree(parse_text(text, F, dialect).statements) == expected


# -- include ---------------------------------------------------------------------------------------


def test_include_missing_file(tmp_path: os.PathLike[str]) -> None:
    conf = os.path.join(tmp_path, "nginx.conf")
    with open(conf, "w") as f:
        f.write("events { }\n\ninclude missing.conf;\n")
    with pytest.raises(ConfigError) as exc:
        parse_file(conf, include_base=str(tmp_path))
    missing = os.path.join(tmp_path, "missing.conf")
    assert str(exc.value) == (
        f'open() "{missing}" failed (2: No such file or directory) in {conf}:3')


def test_missing_main_file(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "nope.conf")
    with pytest.raises(ConfigError) as exc:
        parse_file(path)
    assert str(exc.value) == f'open() "{path}" failed (2: No such file or directory)'


def _write(base: os.PathLike[str], files: dict[str, str]) -> None:
    for name, body in files.items():
        path = os.path.join(base, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(body)


def test_include_glob_sorted_and_no_match(tmp_path: os.PathLike[str]) -> None:
    _write(tmp_path, {
        "nginx.conf": "include conf.d/*.conf;\ninclude none.d/*.conf;\nlast 1;\n",
        "conf.d/b.conf": "b 1;\n",
        "conf.d/a.conf": "a 1;\n",
        "conf.d/c.conf": "c 1;\n",
        "conf.d/skip.txt": "skip 1;\n",
        "conf.d/dir.conf/x.conf": "dir 1;\n",  # a directory matching the glob is not read
    })
    conf = os.path.join(tmp_path, "nginx.conf")
    result = parse_file(conf, include_base=str(tmp_path))
    assert tree(result.statements) == [["a", "1"], ["b", "1"], ["c", "1"], ["last", "1"]]
    assert result.files == [conf] + [os.path.join(tmp_path, f"conf.d/{n}.conf") for n in "abc"]


def test_include_nested_and_in_blocks(tmp_path: os.PathLike[str]) -> None:
    _write(tmp_path, {
        "nginx.conf": "http {\n include sites/*.conf;\n}\n",
        "sites/one.conf": "server {\n include snippets/common.conf;\n}\n",
        "snippets/common.conf": "listen 80;\n",
    })
    result = parse_file(os.path.join(tmp_path, "nginx.conf"), include_base=str(tmp_path))
    assert tree(result.statements) == [["http", [["server", [["listen", "80"]]]]]]
    listen = result.statements[0].block[0].block[0]  # type: ignore[index]
    assert listen.pos.file == os.path.join(tmp_path, "snippets/common.conf")
    assert listen.pos.line == 1


def test_include_relative_to_include_base_not_to_the_including_file(
        tmp_path: os.PathLike[str]) -> None:
    _write(tmp_path, {
        "etc/nginx.conf": "include sub/a.conf;\n",
        "etc/sub/a.conf": "include b.conf;\n",  # nginx: relative to the prefix, not sub/
        "etc/b.conf": "b 1;\n",
        "etc/sub/b.conf": "wrong 1;\n",
    })
    base = os.path.join(tmp_path, "etc")
    result = parse_file(os.path.join(base, "nginx.conf"), include_base=base)
    assert tree(result.statements) == [["b", "1"]]


def test_include_keepalived_relative_to_including_file(tmp_path: os.PathLike[str]) -> None:
    _write(tmp_path, {
        "k/keepalived.conf": "include sub/a.conf\n",
        "k/sub/a.conf": "include b.conf\n",
        "k/sub/b.conf": "b 1\n",
    })
    result = parse_file(os.path.join(tmp_path, "k/keepalived.conf"), KEEPALIVED)
    assert tree(result.statements) == [["b", "1"]]


def test_include_absolute_and_reader() -> None:
    files = {"/x/main.conf": "include /y/inc.conf;\nz 1;", "/y/inc.conf": "y 1;"}

    def reader(path: str) -> str:
        if path in files:
            return files[path]
        raise FileNotFoundError(2, "No such file or directory", path)

    result = parse_file("/x/main.conf", include_base="/x", reader=reader)
    assert tree(result.statements) == [["y", "1"], ["z", "1"]]
    assert result.files == ["/x/main.conf", "/y/inc.conf"]


def test_errors_inside_included_files_name_that_file() -> None:
    files = {"/x/main.conf": "http {\n include inc.conf;\n}\n", "/x/inc.conf": "a 1;\n}\n"}

    def reader(path: str) -> str:
        return files[path]

    with pytest.raises(ConfigError) as exc:
        parse_file("/x/main.conf", include_base="/x", reader=reader)
    assert str(exc.value) == 'unexpected "}" in /x/inc.conf:2'
    files["/x/inc.conf"] = "server {\n"
    with pytest.raises(ConfigError) as exc:
        parse_file("/x/main.conf", include_base="/x", reader=reader)
    assert str(exc.value) == 'unexpected end of file, expecting "}" in /x/inc.conf:2'


def test_include_recursion_is_bounded() -> None:
    def reader(path: str) -> str:
        return "include self.conf;\n"

    with pytest.raises(ConfigError) as exc:
        parse_file("/x/self.conf", include_base="/x", reader=reader)
    assert exc.value.message == "too deep include nesting"
