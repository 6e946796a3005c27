"""The rewrite scripts' string work (l7/rewrite_text.py) and the referer check (l7/referer.py),
pure: the outputs are those the real nginx gave for the same inputs (see the conformance tests
test_rewrite.py and test_rewrite_referer.py, which compare whole answers)."""

from __future__ import annotations

import re

import pytest

from halb.config.nginx import load_text
from halb.config.rewrite_model import Referers
from halb.l7.referer import invalid_referer
from halb.l7.rewrite_text import escape_args, unescape_redirect, uri_flags


@pytest.mark.parametrize(("value", "escaped"), [
    ("abc", "abc"),
    ("a b", "a%20b"),
    ("a+b&c;d?e#f%g", "a%2Bb%26c%3Bd%3Fe%23f%25g"),
    ("/path/=,:@!$'()*~", "/path/=,:@!$'()*~"),  # left alone, as NGX_ESCAPE_ARGS does
    ('"<>', '"<>'),
    ("\x01\x7f", "%01%7F"),
    ("café", "caf%C3%A9"),
    ("a\udcffb", "a%FFb"),  # a raw byte kept as a surrogate escape
])
def test_escape_args(value: str, escaped: str) -> None:
    assert escape_args(value) == escaped


@pytest.mark.parametrize(("value", "out"), [
    ("http://x/plain", "http://x/plain"),
    ("http://x/%41%61", "http://x/Aa"),
    ("http://x/%20%25%26", "http://x/%20%25&"),  # space and "%" stay escaped
    ("http://x/%2B%2b%3b", "http://x/++;"),
    ("http://x/%7e%7F%80", "http://x/~%7F%80"),
    ("http://x/%41%3F%41", "http://x/A?%41"),  # an escaped "?" ends the work
    ("http://x/?%41", "http://x/?%41"),  # so does a plain one
    ("http://x/%zz", "http://x/zz"),  # a bad first digit loses the "%"
    ("http://x/%4z!", "http://x/!"),  # a bad second digit loses all three
    ("http://x/%", "http://x/"),
    ("http://x/%4", "http://x/"),
    ("http://x/caf\u00e9%41", "http://x/caf\u00e9A"),
])
def test_unescape_redirect(value: str, out: str) -> None:
    assert unescape_redirect(value) == out


@pytest.mark.parametrize(("target", "flags"), [
    ("/plain/path?x=%20+", (False, False)),  # the args do not count
    ("/a%20b", (True, False)),
    ("/a+b", (False, True)),
    ("/a/b+c/d", (False, True)),
    ("/./a%20b", (True, False)),  # a complex URI is still "quoted"
    ("/./a+b", (False, False)),  # "+" counts only before the parser's complex states
    ("//a+b", (False, False)),
    ("/a+b/./c%41", (True, True)),
    ("/a#b+c", (False, False)),
    ("http://host:80/x+y%41", (True, True)),
    ("http://host+x/y", (False, False)),
])
def test_uri_flags(target: str, flags: tuple[bool, bool]) -> None:
    assert uri_flags(target) == flags


def _refs(line: str, server_name: str = "") -> Referers:
    conf = load_text("events {}\nhttp { server { listen 8080; " + server_name
                     + " location / { " + line + " } } }")
    assert conf.http is not None
    refs = conf.http.servers[0].locations[0].conf.extra["valid_referers"]
    assert isinstance(refs, Referers)
    return refs


REFS = ("valid_referers none blocked server_names *.example.com .dot.com "
        "example.org/galleries/ www.ex.* ~\\.google\\. ~^anc$;")
SERVER_NAMES = "server_name localhost ~^re(\\d+)\\.test$;"


@pytest.mark.parametrize(("referer", "value"), [
    (None, ""), ("http://localhost/x", ""), ("http://LOCALHOST:8080/x", ""),
    ("http://re12.test/x", ""), ("http://re12.testx/", "1"), ("http://a.example.com/", ""),
    ("http://a.b.example.com/p", ""), ("http://example.com/", "1"), ("http://dot.com", ""),
    ("http://x.dot.com/", ""), ("http://example.org/galleries/x", ""),
    ("http://example.org/galleries", "1"), ("http://example.org/other", "1"),
    ("http://www.ex.co.uk/", ""), ("http://www.ex/", "1"), ("https://www.google.com/", ""),
    ("https://anc", ""), ("http://anc/x", "1"), ("ftp://a.example.com/", ""),
    ("blocked-thing", ""), ("http://x", ""), ("http://i.ru", "1"),
    ("HTTP://A.EXAMPLE.COM/", ""), ("http://" + "a" * 300 + ".example.com/", "1"),
])
def test_invalid_referer(referer: str | None, value: str) -> None:
    assert invalid_referer(_refs(REFS, SERVER_NAMES), referer) == value


def test_referers_without_none_or_blocked() -> None:
    refs = _refs("valid_referers example.com;")
    assert invalid_referer(refs, None) == "1"
    assert invalid_referer(refs, "junk") == "1"
    assert invalid_referer(refs, "https://EXAMPLE.com:443/a") == ""


def test_no_valid_referers_means_valid() -> None:
    assert invalid_referer(None, "http://evil/") == ""
    assert invalid_referer(Referers(), None) == ""


def test_the_longest_wildcard_decides() -> None:
    refs = _refs("valid_referers *.example.com/any/ *.img.example.com;")
    assert invalid_referer(refs, "http://a.img.example.com/x") == ""
    assert invalid_referer(refs, "http://a.www.example.com/x") == "1"
    assert invalid_referer(refs, "http://a.www.example.com/any/x") == ""


def test_server_names_are_read_when_http_ends() -> None:
    conf = load_text("events {}\nhttp { server { listen 8080; valid_referers server_names;"
                     " server_name late.test; location / { } } }")
    assert conf.http is not None
    refs = conf.http.servers[0].locations[0].conf.extra["valid_referers"]
    assert invalid_referer(refs, "http://late.test/") == ""
    assert refs.host_regexes == () and re.compile("x") is not None
