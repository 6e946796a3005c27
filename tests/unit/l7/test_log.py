"""Access log lines: nginx's escaping (default / json / none) and "-" for missing values."""

from __future__ import annotations

import pytest
from log_request import req

from halb.config.model import LogFormat
from halb.config.template import compile_template
from halb.l7.log import escape, format_line


@pytest.mark.parametrize(("raw", "mode", "expected"), [
    (b"plain", "default", b"plain"),
    (b'a"b', "default", b"a\\x22b"),
    (b"a\\b", "default", b"a\\x5Cb"),
    (b"\x01\x1f\x7f", "default", b"\\x01\\x1F\\x7F"),
    ("é".encode(), "default", b"\\xC3\\xA9"),
    (b'a"b\\c\n', "json", b'a\\"b\\\\c\\n'),
    (b"\x01", "json", b"\\u0001"),
    ("é".encode(), "json", "é".encode()),
    (b'a"\x01', "none", b'a"\x01'),
])
def test_escape(raw: bytes, mode: str, expected: bytes) -> None:
    assert escape(raw, mode) == expected


def fmt(text: str, mode: str = "default") -> LogFormat:
    return LogFormat("t", compile_template(text), mode)


def test_missing_values_are_dashes() -> None:
    line = format_line(fmt('$remote_addr "$http_referer" $status'), req())
    assert line == b'127.0.0.1 "-" 200\n'


def test_json_missing_values_are_empty() -> None:
    assert format_line(fmt('{"ref":"$http_referer"}', "json"), req()) == b'{"ref":""}\n'


@pytest.mark.parametrize(("ua", "mode", "expected"), [
    ("curl/8", "default", b'"curl/8"\n'),
    ('evil" injected', "default", b'"evil\\x22 injected"\n'),
    ("line\nbreak", "default", b'"line\\x0Abreak"\n'),
    # header values are latin-1 text in halb: the bytes as received are logged
    ("naïve".encode().decode("latin-1"), "default", b'"na\\xC3\\xAFve"\n'),
    ('q"ñ'.encode().decode("latin-1"), "json", b'"q\\"\xc3\xb1"\n'),
])
def test_hostile_header_values_cannot_forge_lines(ua: str, mode: str, expected: bytes) -> None:
    line = format_line(fmt('"$http_user_agent"', mode), req(user_agent=ua))
    assert line == expected
    assert line.count(b"\n") == 1


def test_inlined_variables_read_as_their_functions() -> None:
    """The compiled line reads some variables inline: the same values as l7/variables.py."""
    from halb.l7.log import _INLINE
    from halb.l7.response import DATES
    from halb.l7.variables import VARIABLES

    r = req()
    r.target, r.uri, r.args = "/a%20b?x=1", "/a b", "x=1"
    r.body_bytes_sent, r.bytes_sent, r.request_length = 12, 345, 67
    for name, (fn, expr) in _INLINE.items():
        assert fn is VARIABLES[name]
        assert eval(expr, {"r": r, "_DATES": DATES}) == fn(r), name


@pytest.mark.parametrize(("text", "mode", "expected"), [
    ("100% $status %s {x} é", "default", "100% 200 %s {x} é\n".encode()),
    ("literal only", "default", b"literal only\n"),
    ('$request_uri "$http_referer" $remote_user', "default",
     b'/q?a=\\x22\\xC3\\xA9 "\\x01" -\n'),
    ('{"u":"$request_uri","r":"$http_referer","x":"$remote_user"}', "json",
     '{"u":"/q?a=\\"é","r":"\\u0001","x":""}\n'.encode()),
    ("$request_uri|$http_referer|$http_x_none", "none", '/q?a="é|\x01|\n'.encode()),
])
def test_compiled_lines(text: str, mode: str, expected: bytes) -> None:
    r = req(referer="\x01")
    r.target = '/q?a="é'
    for _ in range(2):  # compiled once, then reused
        assert format_line(fmt(text, mode), r) == expected


def test_named_capture_shadows_header_variable() -> None:
    r = req(x_a="header")
    assert format_line(fmt("$http_x_a"), r) == b"header\n"
    r.named_captures = {"http_x_a": "capture"}
    assert format_line(fmt("$http_x_a"), r) == b"capture\n"
