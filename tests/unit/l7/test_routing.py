"""halb.l7.routing: location lookup, server_name lookup, listen grouping, validate_host.

The tables marked "nginx 1.22.1" were produced by running the same configuration in nginx 1.22.1
(each location answering with its own name, proxy_pass locations standing for auto_redirect)
and are kept here as the expected values.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import halb.l7.routing as routing
import halb.l7.uri as uri_module
from halb.config.model import Http, Location, Server
from halb.config.nginx import load_text
from halb.l7.routing import (
    ListenTable,
    LocationMatch,
    ServerTable,
    find_location,
    find_named,
    validate_host,
)


def http(body: str) -> Http:
    cfg = load_text("events { }\nhttp {\n" + body + "\n}\n")
    assert cfg.http is not None
    return cfg.http


def servers(body: str) -> tuple[Server, ...]:
    return http(body).servers


def locations(body: str, redirect: Sequence[str] = ()) -> tuple[Location, ...]:
    """The top-level locations of one server; `redirect` names (as str(location)) get nginx's
    auto_redirect flag, which proxy_pass would set."""
    return _with_redirect(servers("server {\n" + body + "\n}")[0].locations, set(redirect))


def _with_redirect(locs: tuple[Location, ...], names: set[str]) -> tuple[Location, ...]:
    out = []
    for loc in locs:
        loc = dataclasses.replace(loc, children=_with_redirect(loc.children, names))
        if str(loc) in names:
            loc = dataclasses.replace(loc, auto_redirect=True)
        out.append(loc)
    return tuple(out)


def where(m: LocationMatch) -> str | None:
    return None if m.location is None else str(m.location)


# -- locations -------------------------------------------------------------------------------

DOC_EXAMPLE = locations(r"""
    location = / { }
    location / { }
    location /documents/ { }
    location ^~ /images/ { }
    location ~* \.(gif|jpg|jpeg)$ { }
""")


@pytest.mark.parametrize(("uri", "expected"), [
    ("/", "= /"),  # A
    ("/index.html", "/"),  # B
    ("/documents/document.html", "/documents/"),  # C
    ("/images/1.gif", "^~ /images/"),  # D
    ("/documents/1.jpg", r"~* \.(gif|jpg|jpeg)$"),  # E
])
def test_doc_example(uri: str, expected: str) -> None:
    m = find_location(DOC_EXAMPLE, uri)
    assert where(m) == expected
    assert not m.redirect


BIG = locations(r"""
    location = / { }
    location / { }
    location /documents/ { }
    location ^~ /images/ { }
    location ~* \.(gif|jpg|jpeg)$ { }
    location /p/ { }
    location = /q/ { }
    location = /r { }
    location /r/ { }
    location /s { }
    location /s/ { }
    location /t/ { }
    location ~ ^/t { }
    location /n/ {
        location /n/a/ { }
        location ~ \.php$ { }
        location /n/b/ { }
    }
    location ~ ^/n/ { }
    location ^~ /m/ {
        location /m/x/ { }
        location ~ y { }
    }
    location /k/ {
        location ^~ /k/x/ { }
        location ~ y { }
    }
    location ~ ^/k/x/.*z { }
    location ~ /rx/ {
        location ~ (?<nm>sub) { }
    }
    location ~ /(cap)/(?<word>\w+) {
        location ~ nocap { }
    }
    location /Case { }
    location /u { }
    location /uv/ { }
    location ~ ^/x(/) {
        location ~ ^/x/w { }
    }
    location ~ /z {
        location /z/d/ { }
        location /z/e/ { }
    }
    location ^~ /w/ { }
    location ~ ^/w/(.*)$ { }
    location /v { }
    location = /v { }
    location /vv/ { }
    location = /vv/ { }
""", redirect=["/p/", "= /q/", "/r/", "/s/", "/t/", "/n/b/", "/uv/", "= /vv/", "/z/d/"])

R = "redirect"

# nginx 1.22.1: (uri, location, redirect?, $1.., named)
BIG_CASES: list[tuple[str, str, str | None, tuple[str | None, ...], dict[str, str]]] = [
    ("/", "= /", None, (), {}),
    ("/index.html", "/", None, (), {}),
    ("/documents/1.jpg", r"~* \.(gif|jpg|jpeg)$", None, ("jpg",), {}),
    ("/x.GIF", r"~* \.(gif|jpg|jpeg)$", None, ("GIF",), {}),  # ~* is case-insensitive
    # auto_redirect: one character shorter than a proxying "…/" location
    ("/p", "/p/", R, (), {}),
    ("/p/", "/p/", None, (), {}),
    ("/q", "= /q/", R, (), {}),  # an exact location redirects too
    ("/r", "= /r", None, (), {}),  # an equal name beats the redirect
    ("/r/", "/r/", None, (), {}),
    ("/s", "/s", None, (), {}),
    ("/s/", "/s/", None, (), {}),
    ("/t", "/t/", R, (), {}),  # the redirect is decided before regexes (~ ^/t matches)
    ("/t/", "~ ^/t", None, (), {}),
    ("/uv", "/uv/", R, (), {}),  # beats the shorter prefix /u
    ("/u", "/u", None, (), {}),
    ("/vv", "= /vv/", R, (), {}),
    ("/vv/", "= /vv/", None, (), {}),
    ("/vv/x", "/vv/", None, (), {}),
    # exact and prefix of the same name, in either order
    ("/v", "= /v", None, (), {}),
    ("/vx", "/v", None, (), {}),
    # nested locations: their prefixes, then their regexes, then the outer regexes
    ("/n/a/1.php", r"~ \.php$", None, (), {}),
    ("/n/1.php", r"~ \.php$", None, (), {}),
    ("/n/a/x", "~ ^/n/", None, (), {}),
    ("/n/x", "~ ^/n/", None, (), {}),
    ("/n/b", "/n/b/", R, (), {}),  # a nested redirect also wins over ~ ^/n/
    ("/n", "/", None, (), {}),
    # ^~ stops the regexes of its own level only
    ("/m/x/y", "~ y", None, (), {}),
    ("/m/y", "~ y", None, (), {}),
    ("/m/x/q", "/m/x/", None, (), {}),
    ("/k/x/y", "^~ /k/x/", None, (), {}),
    ("/k/x/yz", "~ ^/k/x/.*z", None, (), {}),
    ("/k/x/z", "~ ^/k/x/.*z", None, (), {}),
    ("/k/y", "~ y", None, (), {}),
    ("/images/a.jpg", "^~ /images/", None, (), {}),
    ("/w/a", "^~ /w/", None, (), {}),
    # nested regexes and captures: $1.. from the last regex that matched, named ones accumulate
    ("/rx/sub", "~ (?<nm>sub)", None, ("sub",), {"nm": "sub"}),
    ("/rx/a", "~ /rx/", None, (), {}),
    ("/cap/abc", r"~ /(cap)/(?<word>\w+)", None, ("cap", "abc"), {"word": "abc"}),
    ("/cap/abc/nocap", "~ nocap", None, (), {"word": "abc"}),
    ("/x/w", "~ ^/x/w", None, (), {}),
    ("/x/", "~ ^/x(/)", None, ("/",), {}),
    # prefix locations nested in a regex location are never looked at by nginx
    ("/z/d", "~ /z", None, (), {}),
    ("/z/d/", "~ /z", None, (), {}),
    ("/z/e/x", "~ /z", None, (), {}),
    # prefixes are case-sensitive
    ("/Case", "/Case", None, (), {}),
    ("/case", "/", None, (), {}),
    ("/CASE", "/", None, (), {}),
]


@pytest.mark.parametrize(("uri", "expected", "redirect", "captures", "named"), BIG_CASES)
def test_locations_as_nginx(uri: str, expected: str, redirect: str | None,
                            captures: tuple[str | None, ...], named: dict[str, str]) -> None:
    m = find_location(BIG, uri)
    assert where(m) == expected
    assert m.redirect == (redirect == R)
    assert m.captures == captures
    assert dict(m.named) == named


LONGEST = locations(r"""
    location /a { }
    location /a/b/c { }
    location /a/b { }
    location ^~ /a/b/c/d { }
    location ~ ^/a/b/(c)/(d)?(?<e>e)? { }
    location ~ /a { }
    location = /exact/ { }
    location /prefix/ {
        location = /prefix/x { }
        location /prefix/y/ {
            location ~ deep$ { }
        }
    }
    location /ab/ { }
""", redirect=["/ab/"])


@pytest.mark.parametrize(("uri", "expected", "redirect", "captures"), [
    ("/a", "~ /a", False, ()),
    ("/a/b", "~ /a", False, ()),
    ("/a/b/c", "~ /a", False, ()),
    ("/a/b/c/", "~ ^/a/b/(c)/(d)?(?<e>e)?", False, ("c", None, None)),
    ("/a/b/c/e", "~ ^/a/b/(c)/(d)?(?<e>e)?", False, ("c", None, "e")),
    ("/a/b/c/d", "^~ /a/b/c/d", False, ()),
    ("/a/b/c/de", "^~ /a/b/c/d", False, ()),
    ("/b", None, False, ()),  # nothing matches: the server level applies
    ("", None, False, ()),
    ("/exact/", "= /exact/", False, ()),
    ("/exact/x", None, False, ()),
    ("/exact", None, False, ()),
    ("/prefix/x", "= /prefix/x", False, ()),
    ("/prefix/xx", "/prefix/", False, ()),
    ("/prefix/y/deep", "~ deep$", False, ()),
    ("/prefix/y/deeper", "/prefix/y/", False, ()),
    ("/ab", "/ab/", True, ()),  # the redirect beats the shorter prefix /a and the regex ~ /a
    ("/ab/", "~ /a", False, ()),  # an equal prefix still lets the regexes run
])
def test_longest_prefix_and_regex_order(uri: str, expected: str | None, redirect: bool,
                                        captures: tuple[str | None, ...]) -> None:
    m = find_location(LONGEST, uri)
    assert (where(m), m.redirect, m.captures) == (expected, redirect, captures)


def test_regexes_in_configuration_order() -> None:
    locs = locations(r"""
        location ~ b { }
        location ~ a { }
        location ~* A { }
    """)
    assert where(find_location(locs, "/ab")) == "~ b"
    assert where(find_location(locs, "/a")) == "~ a"
    assert where(find_location(locs, "/A")) == "~* A"
    assert find_location(locs, "/c").location is None
    reordered = locations(r"""
        location ~* A { }
        location ~ a { }
    """)
    assert where(find_location(reordered, "/a")) == "~* A"


def test_regex_search_is_unanchored() -> None:
    locs = locations(r"location ~ php { }")
    assert where(find_location(locs, "/x/index.php?")) == "~ php"


def test_named_groups_without_numbered_capture_share_numbers() -> None:
    locs = locations(r"location ~ ^/(?<first>[a-z]+)/(\d+)$ { }")
    m = find_location(locs, "/abc/42")
    assert m.captures == ("abc", "42")
    assert dict(m.named) == {"first": "abc"}


def test_named_locations() -> None:
    (srv,) = servers(r"""
        server {
            location / { }
            location @fallback { }
            location @other { }
        }
    """)
    named = find_named(srv, "@fallback")
    assert named is not None and named.named and str(named) == "@ @fallback"
    assert find_named(srv, "@missing") is None
    assert find_named(srv, "fallback") is None
    # a named location is never matched by a URI, even when it sits in a location list
    with_named = (*srv.named_locations.values(), *srv.locations)
    assert where(find_location(with_named, "/x")) == "/"
    assert find_location(tuple(srv.named_locations.values()), "@fallback").location is None


def test_results_without_captures_are_shared() -> None:
    assert find_location(BIG, "/index.html") is find_location(BIG, "/other")
    assert find_location(BIG, "/p") is find_location(BIG, "/p")
    assert find_location((), "/").location is None


def test_level_cache_follows_the_tuple() -> None:
    first = locations("location /a { }")
    second = locations("location /b { }")
    assert where(find_location(first, "/a")) == "/a"
    assert where(find_location(second, "/b")) == "/b"
    assert find_location(second, "/a").location is None
    for _ in range(routing._LEVELS_MAX + 5):  # the cache is bounded and stays correct
        assert where(find_location(list(first), "/a/x")) == "/a"


# -- servers ---------------------------------------------------------------------------------

SERVER_BLOCKS = r"""
    server { listen 127.0.0.1:8001; server_name example.org www.example.org; }
    server { listen 127.0.0.1:8001; server_name *.example.org; }
    server { listen 127.0.0.1:8001; server_name *.sub.example.org; }
    server { listen 127.0.0.1:8001; server_name mail.*; }
    server { listen 127.0.0.1:8001; server_name mail.example.*; }
    server { listen 127.0.0.1:8001; server_name ~^(?<user>\w+)\.regex\.net$ ~^(r)(\d+)\.; }
    server { listen 127.0.0.1:8001; server_name ""; }
    server { listen 127.0.0.1:8001 default_server; server_name def; }
    server { listen 127.0.0.1:8001; server_name .dot.org; }
    server { listen 127.0.0.1:8001; server_name ~^www\.; }
    server { listen 127.0.0.1:8001; server_name ~^MiXeD\.; }

    server { listen 127.0.0.1:8002; server_name first; }
    server { listen 127.0.0.1:8002; server_name example.net; }
    server { listen 127.0.0.1:8002; server_name .example.net; }
    server { listen 127.0.0.1:8002; server_name *.example.com; }
    server { listen 127.0.0.1:8002; server_name .example.com; }
    server { listen 127.0.0.1:8002; server_name dup Dup-Two; }
    server { listen 127.0.0.1:8002; server_name other dup; }

    server { listen 127.0.0.1:8003; server_name x; }
    server { listen 127.0.0.1:8003; server_name y; }

    server { listen 127.0.0.1:8004; server_name .both.org; }
    server { listen 127.0.0.1:8004; server_name *.both.org; }
    server { listen 127.0.0.1:8004; server_name both.org; }
"""
LISTENS = ListenTable(http(SERVER_BLOCKS))

# nginx 1.22.1 (ports 8001-8003; 8004 follows the same hash rules)
SERVER_CASES: list[tuple[int, str, str, tuple[str | None, ...], dict[str, str]]] = [
    (8001, "example.org", "example.org", (), {}),
    (8001, "www.example.org", "example.org", (), {}),  # exact beats *.example.org and ~^www\.
    (8001, "a.example.org", "*.example.org", (), {}),
    (8001, "a.b.example.org", "*.example.org", (), {}),
    (8001, "x.sub.example.org", "*.sub.example.org", (), {}),  # the longest wildcard
    (8001, "a.b.sub.example.org", "*.sub.example.org", (), {}),
    (8001, "sub.example.org", "*.example.org", (), {}),
    (8001, ".example.org", "*.example.org", (), {}),  # validate_host lets a leading "." in
    (8001, "mail.foo", "mail.*", (), {}),
    (8001, "mail.example.com", "mail.example.*", (), {}),
    (8001, "mail.example", "mail.*", (), {}),
    (8001, "mail", "def", (), {}),  # "mail.*" needs a label after the dot
    (8001, "joe.regex.net", r"~^(?<user>\w+)\.regex\.net$", ("joe",), {"user": "joe"}),
    (8001, "r12.x", r"~^(?<user>\w+)\.regex\.net$", ("r", "12"), {}),
    (8001, "", "", (), {}),  # server_name ""
    (8001, "nothing", "def", (), {}),
    (8001, "dot.org", ".dot.org", (), {}),
    (8001, "a.dot.org", ".dot.org", (), {}),
    (8001, ".dot.org", ".dot.org", (), {}),
    (8001, "www.other", r"~^www\.", (), {}),  # wildcards before regexes
    (8001, "mixed.a", r"~^MiXeD\.", (), {}),  # regex names are case-insensitive
    # ".example.net" after "example.net" is ignored as a whole by nginx (conflicting name);
    # ".example.com" after "*.example.com" keeps "example.com" reserved but matching nothing
    (8002, "example.net", "example.net", (), {}),
    (8002, "www.example.net", "first", (), {}),
    (8002, "example.com", "first", (), {}),
    (8002, "a.example.com", "*.example.com", (), {}),
    (8002, "dup", "dup", (), {}),  # the first server with a name keeps it
    (8002, "dup-two", "dup", (), {}),
    (8002, "zzz", "first", (), {}),  # no default_server: the first server
    (8003, "zzz", "x", (), {}),
    (8003, "", "x", (), {}),  # no server_name "": the default server
    (8004, "both.org", ".both.org", (), {}),
    (8004, "a.both.org", ".both.org", (), {}),
]


@pytest.mark.parametrize(("port", "host", "expected", "captures", "named"), SERVER_CASES)
def test_server_names_as_nginx(port: int, host: str, expected: str,
                               captures: tuple[str | None, ...], named: dict[str, str]) -> None:
    m = LISTENS.lookup("127.0.0.1", port).find(host)
    assert m.server.server_name == expected
    assert m.captures == captures
    assert dict(m.named) == named


def test_server_without_server_name_is_the_empty_name() -> None:
    table = ServerTable(servers(r"""
        server { listen 8080; server_name a; }
        server { listen 8080; }
    """), "*", 8080)
    assert table.default.server_name == "a"
    assert table.find("").server.index == 1
    assert table.find("b").server.index == 0


@pytest.mark.parametrize(("blocks", "default_index"), [
    ("server { listen 8080; } server { listen 8080; }", 0),
    ("server { listen 8080; } server { listen 8080 default_server; }", 1),
    ("server { listen 8080; } server { listen 8080 default; }", 1),
    # default_server for another addr:port does not count here
    ("server { listen 8080; } server { listen 8080; listen 8081 default_server; }", 0),
])
def test_default_server(blocks: str, default_index: int) -> None:
    table = ServerTable(servers(blocks), "*", 8080)
    assert table.default.index == default_index
    assert table.find("unknown").server.index == default_index


def test_server_table_needs_servers() -> None:
    with pytest.raises(ValueError):
        ServerTable((), "*", 80)


def test_non_regex_matches_are_shared() -> None:
    table = LISTENS.lookup("127.0.0.1", 8001)
    assert table.find("example.org") is table.find("www.example.org")
    assert table.find("nothing") is table.find("other")


# -- listen grouping -------------------------------------------------------------------------

GROUPED = http(r"""
    server { listen 80; server_name wild; }
    server { listen 127.0.0.2:80; server_name spec; }
    server { listen 127.0.0.3:80 bind; server_name bound; }
    server { listen [::]:80; server_name wild6; }
    server { listen [::1]:80; server_name spec6; }
    server { listen 127.0.0.1:81; server_name only81a; }
    server { listen 127.0.0.2:81; server_name only81b; }
    server { listen unix:/tmp/halb-test.sock; server_name unix; }
    server { listen 127.0.0.4:80 reuseport; server_name reuse; }
    server { listen 127.0.0.5:80 backlog=10; server_name backlog; }
    server { listen 0.0.0.0:80; server_name wild2; listen 127.0.0.2:80; }
    server { listen 127.0.0.1:82; server_name opt1; }
    server { listen 127.0.0.1:82 rcvbuf=1024 default_server; server_name opt2; }
""")


@pytest.mark.parametrize(("addr", "port", "host", "expected"), [
    ("127.0.0.2", 80, "wild", "spec"),  # only the servers of the exact addr:port are candidates
    ("127.0.0.2", 80, "wild2", "wild2"),  # ... wild2 listens there too
    ("127.0.0.2", 80, "nothing", "spec"),
    ("10.1.2.3", 80, "spec", "wild"),  # no exact listen: the wildcard's servers
    ("10.1.2.3", 80, "wild2", "wild2"),
    ("127.0.0.3", 80, "wild", "bound"),
    ("::1", 80, "wild6", "spec6"),
    ("::2", 80, "spec6", "wild6"),  # IPv6 falls back to [::], not to *
    ("127.0.0.1", 81, "only81b", "only81a"),
    ("127.0.0.2", 81, "only81a", "only81b"),
    ("unix:/tmp/halb-test.sock", 0, "x", "unix"),
    ("127.0.0.1", 82, "x", "opt2"),
])
def test_listen_lookup(addr: str, port: int, host: str, expected: str) -> None:
    table = ListenTable(GROUPED).lookup(addr, port)
    assert table.find(host).server.server_name == expected


@pytest.mark.parametrize(("addr", "port"), [
    ("127.0.0.9", 81), ("::1", 81), ("127.0.0.1", 99), ("unix:/tmp/other.sock", 0)])
def test_listen_lookup_unknown(addr: str, port: int) -> None:
    with pytest.raises(KeyError):
        ListenTable(GROUPED).lookup(addr, port)


def test_bind_list() -> None:
    binds = ListenTable(GROUPED).bind_list()
    assert [str(ls) for ls in binds] == [
        "0.0.0.0:80",  # the wildcard stands for 127.0.0.2:80
        "127.0.0.3:80",  # bind
        "[::]:80",  # [::1]:80 goes through it
        "127.0.0.1:81",  # no wildcard on 81: every address
        "127.0.0.2:81",
        "unix:/tmp/halb-test.sock",
        "127.0.0.4:80",  # reuseport implies bind
        "127.0.0.5:80",  # so does backlog= in nginx
        "127.0.0.1:82",
    ]
    opt = binds[-1]
    assert opt.default_server and opt.bind  # the listen with the socket options is the one bound


def test_bind_list_merges_default_server_into_the_options_listen() -> None:
    binds = ListenTable(http(r"""
        server { listen 8090 default_server; }
        server { listen 8090 reuseport; }
    """)).bind_list()
    assert len(binds) == 1
    assert binds[0].reuseport and binds[0].default_server


def test_empty_http_has_nothing_to_bind() -> None:
    table = ListenTable(http(""))
    assert table.bind_list() == []
    assert table.tables() == []


# -- validate_host ---------------------------------------------------------------------------

# nginx 1.22.1 ($host of the request; None: 400 Bad Request)
HOSTS = [
    ("example.com", "example.com"),
    ("Example.COM", "example.com"),
    ("example.com.", "example.com"),
    ("example.com:80", "example.com"),
    ("example.com.:80", "example.com"),
    ("example.com:", "example.com"),
    ("A.B.", "a.b"),
    ("a.", "a"),
    ("a.:80", "a"),
    ("a:b:c", "a"),
    ("-x_y", "-x_y"),
    ("localhost", "localhost"),
    ("[::1]:80", "[::1]"),
    ("[::1]", "[::1]"),
    ("[A::1]:80", "[a::1]"),
    ("[::1]:80:90", "[::1]"),
    ("[::1]x", "[::1]"),
    ("[::1", "[::1"),  # nginx accepts an unterminated literal
    ("x[y]", "x[y]"),
    (".example.com", ".example.com"),  # a leading dot is accepted
    ("a\\b", "a\\b"),  # "\\" is only a separator on Windows
    ("\u00c9x", "\u00c9x"),  # bytes above 0x7f pass, and are not lower-cased
    ("ÉX.Org", "\u00c9x.org"),
    ("127.0.0.1:8080", "127.0.0.1"),
    ("", None),
    (".", None),
    ("..", None),
    (":80", None),
    ("::1", None),
    ("a..b", None),
    ("a..", None),
    ("a.b..", None),
    ("a.b:8..0", None),  # ".." is checked in the port too
    ("a/b", None),
    ("a b", None),
    ("a\tb", None),
    ("a\x7fb", None),
    ("a\x00b", None),
]


@pytest.mark.parametrize(("host", "expected"), HOSTS)
def test_validate_host(host: str, expected: str | None) -> None:
    assert validate_host(host) == expected


def _ngx_validate_host(host: str) -> str | None:
    """A line-by-line port of ngx_http_validate_host (nginx 1.22, Unix) as the oracle."""
    dot_pos = host_len = len(host)
    state = "usual"
    for i, ch in enumerate(host):
        if ch == ".":
            if dot_pos == i - 1:
                return None
            dot_pos = i
        elif ch == ":":
            if state == "usual":
                host_len = i
                state = "rest"
        elif ch == "[":
            if i == 0:
                state = "literal"
        elif ch == "]":
            if state == "literal":
                host_len = i + 1
                state = "rest"
        elif ch == "/" or ord(ch) <= 0x20 or ch == "\x7f":
            return None
    if dot_pos == host_len - 1:
        host_len -= 1
    if host_len <= 0:
        return None
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in host[:host_len])


@settings(max_examples=800, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aZ9.-_:[]/ \\\x00\x7f\u00e9")), max_size=12))
def test_validate_host_matches_nginx_logic(host: str) -> None:
    assert validate_host(host) == _ngx_validate_host(host)


# -- purity ----------------------------------------------------------------------------------

@pytest.mark.parametrize("module", [routing, uri_module])
def test_modules_are_pure(module: object) -> None:
    source = Path(module.__file__).read_text()  # type: ignore[attr-defined]
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "subprocess", "pyroute2"}
