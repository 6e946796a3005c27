"""The filter directives' parsing, merging and `nginx -t` messages (config/nginx_filters.py).

The messages are those nginx 1.22's `nginx -t` printed for the same lines (read from the real
binary when these tests were written); line 3 is the first line inside http { }.
"""

from __future__ import annotations

import pytest

from halb.config.errors import ConfigError
from halb.config.nginx import load, load_text
from halb.config.nginx_filters import ACCESS, DAILY, EPOCH, MAX, MODIFIED, Filters, parse_expires

F = "/tmp/nginx.conf"


def http(body: str) -> list[tuple[str, Filters | None]]:
    cfg = load_text(f"events {{}}\nhttp {{\n{body}\n}}\n")
    assert cfg.http is not None
    out: list[tuple[str, Filters | None]] = [("http", cfg.http.conf.filters)]
    for srv in cfg.http.servers:
        out.append(("server", srv.conf.filters))
        out.extend((loc.name, loc.conf.filters) for loc in srv.locations)
    return out


def http_error(body: str) -> str:
    with pytest.raises(ConfigError) as exc:
        load_text(f"events {{}}\nhttp {{\n{body}\n}}\n")
    return str(exc.value)


@pytest.mark.parametrize(("body", "message"), [
    ("gzip_comp_level 0;", "value must be between 1 and 9"),
    ("gzip_comp_level 10;", "value must be between 1 and 9"),
    ("gzip_comp_level x;", '"gzip_comp_level" directive invalid number'),
    ("gzip_proxied foo;", 'invalid value "foo"'),
    ("gzip_proxied;", 'invalid number of arguments in "gzip_proxied" directive'),
    ("gzip_http_version 2.0;", 'invalid value "2.0"'),
    ("gzip_buffers 4;", 'invalid number of arguments in "gzip_buffers" directive'),
    ("gzip_buffers 4 x;", '"gzip_buffers" directive invalid value'),
    ("gzip_buffers 0 4k;", '"gzip_buffers" directive invalid value'),
    ("gzip_buffers 4 4k; gzip_buffers 4 4k;", '"gzip_buffers" directive is duplicate'),
    ("gzip_min_length x;", '"gzip_min_length" directive invalid value'),
    ("gzip_min_length 1; gzip_min_length 2;", '"gzip_min_length" directive is duplicate'),
    ("gzip maybe;", 'invalid value "maybe" in "gzip" directive, it must be "on" or "off"'),
    ("gzip on; gzip off;", '"gzip" directive is duplicate'),
    ("gzip_vary x;", 'invalid value "x" in "gzip_vary" directive, it must be "on" or "off"'),
    ("gzip_com_level 3;", 'unknown directive "gzip_com_level"'),  # the seed's typo (002 1-22)
    ("gzip_disable (;", 'pcre2_compile() failed: missing closing parenthesis in "("'),
    ("expires foo;", '"expires" directive invalid value'),
    ("expires @25h;", '"expires" directive daily time value must be less than 24 hours'),
    ("expires modified @1h;",
     '"expires" directive daily time cannot be used with "modified" parameter'),
    ("expires 1h 2h;", '"expires" directive invalid value'),
    ("expires modified epoch;", '"expires" directive invalid value'),
    ("expires 1h; expires 2h;", '"expires" directive is duplicate'),
    ("expires 1h1h;", '"expires" directive invalid value'),
    ("expires '';", '"expires" directive invalid value'),
    ("expires -;", '"expires" directive invalid value'),
    ("add_header X;", 'invalid number of arguments in "add_header" directive'),
    ("add_header X y z;", 'invalid parameter "z"'),
])
def test_errors_read_like_nginx(body: str, message: str) -> None:
    assert http_error(body) == f"{message} in {F}:3"


def test_unknown_variable_in_add_header() -> None:
    assert http_error("add_header X $foo;") == 'unknown "foo" variable'


@pytest.mark.parametrize(("body", "warning"), [
    ("gzip_types text/html;", 'duplicate MIME type "text/html"'),
    ("gzip_types TEXT/CSS text/css;", 'duplicate MIME type "text/css"'),
    ("gzip_proxied any any;", 'duplicate value "any"'),
])
def test_warnings_read_like_nginx(body: str, warning: str) -> None:
    text = f"events {{}}\nhttp {{\n{body}\n}}\n"
    loaded = load(F, "/tmp/", is_root=False, reader=lambda p: text)
    assert [str(w) for w in loaded.warnings] == [f"{warning} in {F}:3"]


def test_accepted_directives() -> None:
    filters = dict(http("gzip on; gzip_buffers 16 8k; gzip_window 8k; gzip_hash 64k; "
                        "postpone_gzipping 0; gzip_no_buffer on; gzip_http_version 1.0; "
                        "server { }"))
    g = filters["http"].gzip  # type: ignore[union-attr]
    assert g is not None and (g.wbits, g.memlevel, g.http_version) == (13, 8, 10)


def test_no_filters_means_none() -> None:
    got = dict(http("gzip off; expires off; gzip_types text/css; server { location / { } }"))
    assert got["http"] is None and got["/"] is None


def test_add_header_inheritance_is_all_or_nothing() -> None:
    got = dict(http("add_header A 1; server { add_header B 2; "
                    "location /own { add_header C 3 always; } location /inherit { } }"))
    names = {k: [h.name for h in v.headers] for k, v in got.items() if v is not None}
    assert names == {"http": ["A"], "server": ["B"], "/own": ["C"], "/inherit": ["B"]}
    assert got["/own"].headers[0].always  # type: ignore[union-attr]


def test_gzip_settings_merge_and_types() -> None:
    got = dict(http("gzip on; gzip_types text/css; gzip_types application/json; "
                    "gzip_proxied expired; gzip_proxied auth; gzip_disable msie6 'MSIE [4-6]'; "
                    "server { location /a { gzip_types *; gzip_comp_level 5; } "
                    "location /b { gzip off; } location /c { gzip_disable foo; } }"))
    http_g = got["http"].gzip  # type: ignore[union-attr]
    assert http_g is not None
    assert http_g.types == {"text/html", "text/css", "application/json"}
    assert http_g.proxied == {"expired", "auth"}
    assert http_g.disable_msie6 and len(http_g.disable) == 1
    a = got["/a"].gzip  # type: ignore[union-attr]
    assert a is not None and a.types is None and a.level == 5
    assert got["/b"] is None
    c = got["/c"].gzip  # type: ignore[union-attr]
    assert c is not None and c.disable_msie6 and [p.pattern for p in c.disable] == ["foo"]


def test_expires_values_and_variables() -> None:
    got = dict(http("server { location /a { expires 30d; } location /b { expires modified -1h; }"
                    " location /c { expires @15h30m; } location /d { expires $arg_e; }"
                    " location /e { expires max; } location /f { expires off; } }"))
    assert (got["/a"].expires.kind, got["/a"].expires.seconds) == (ACCESS, 30 * 86400)  # type: ignore[union-attr]
    assert (got["/b"].expires.kind, got["/b"].expires.seconds) == (MODIFIED, -3600)  # type: ignore[union-attr]
    assert (got["/c"].expires.kind, got["/c"].expires.seconds) == (DAILY, 15 * 3600 + 1800)  # type: ignore[union-attr]
    assert got["/d"].expires.value is not None  # type: ignore[union-attr]
    assert got["/e"].expires.kind == MAX  # type: ignore[union-attr]
    assert got["/f"] is None


@pytest.mark.parametrize(("text", "modified", "want"), [
    ("epoch", False, (EPOCH, 0)), ("max", False, (MAX, 0)), ("off", False, ("off", 0)),
    ("1h", False, (ACCESS, 3600)), ("+1h", False, (ACCESS, 3600)), ("-90", False, (ACCESS, -90)),
    ("1y", False, (ACCESS, 365 * 86400)), ("1M 2w", False, (ACCESS, 30 * 86400 + 14 * 86400)),
    ("@0", False, (DAILY, 0)), ("@24h", False, (DAILY, 86400)),
    ("1h", True, (MODIFIED, 3600)), ("epoch", True, "invalid value"),
    ("500ms", False, "invalid value"), ("1h1h", False, "invalid value"),
    ("@24h1s", False, "daily time value must be less than 24 hours"),
])
def test_parse_expires(text: str, modified: bool, want: object) -> None:
    assert parse_expires(text, modified) == want
