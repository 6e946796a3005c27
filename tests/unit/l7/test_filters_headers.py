"""add_header and expires applied to responses (l7/filters/headers.py): where the lines go,
the special names, `always`, values made safe, and expires replacing an upstream's headers."""

from __future__ import annotations

from halb.config.nginx import load_text
from halb.config.nginx_filters import Filters
from halb.l7.filters.headers import apply_headers
from halb.l7.request import Request
from halb.l7.response import Response

NOW = 1_700_000_000


def filters(body: str) -> Filters:
    cfg = load_text(f"events {{}}\nhttp {{\n{body}\nserver {{ }} }}\n")
    assert cfg.http is not None and cfg.http.conf.filters is not None
    return cfg.http.conf.filters  # type: ignore[no-any-return]


def request(uri: str = "/x") -> Request:
    r = Request(None, 0.0)
    r.uri = uri
    return r


def test_static_order_etag_added_then_ranges() -> None:
    f = filters("add_header A 1; expires 1h;")
    resp = Response(206, headers=[("Content-Range", "bytes 0-1/9")], etag='"e"',
                    accept_ranges=True)
    apply_headers(request(), resp, f, NOW, upstream=False)
    assert [n for n, _ in resp.headers] == ["Expires", "Cache-Control", "A", "Accept-Ranges",
                                           "Content-Range"]
    assert resp.etag == '"e"' and not resp.accept_ranges


def test_always_only_on_other_statuses() -> None:
    f = filters("add_header A 1; add_header B 2 always; expires 1h;")
    resp = Response(500)
    apply_headers(request(), resp, f, NOW, upstream=False)
    assert resp.headers == [("B", "2")]


def test_special_names() -> None:
    f = filters("add_header ETag '\"new\"'; add_header Last-Modified 'Mon, 01 Jan 2001 "
                "00:00:00 GMT'; add_header Cache-Control a; add_header Cache-Control b;")
    resp = Response(200, etag='"old"', last_modified=NOW)
    apply_headers(request(), resp, f, NOW, upstream=False)
    assert resp.etag == '"new"' and resp.last_modified is None
    assert resp.headers == [("Last-Modified", "Mon, 01 Jan 2001 00:00:00 GMT"),
                            ("Cache-Control", "a"), ("Cache-Control", "b")]


def test_empty_values_add_nothing_and_remove_etag() -> None:
    f = filters("add_header X $http_nothing; add_header ETag '';")
    resp = Response(200, headers=[("ETag", '"up"'), ("Y", "1")])
    apply_headers(request(), resp, f, NOW, upstream=True)
    assert resp.headers == [("Y", "1")]


def test_values_cannot_inject_lines() -> None:
    f = filters("add_header X-Uri $uri always;")
    resp = Response(404)
    apply_headers(request("/a\r\nSet-Cookie: x=1\0"), resp, f, NOW, upstream=False)
    assert resp.headers == [("X-Uri", "/a  Set-Cookie: x=1 ")]


def test_expires_replaces_upstream_headers_in_place() -> None:
    f = filters("expires modified 1h; add_header Z 1;")
    up = [("Cache-Control", "max-age=60"), ("Expires", "x"), ("Last-Modified",
          "Tue, 14 Nov 2023 22:13:20 GMT"), ("Cache-Control", "private"), ("V", "1")]
    resp = Response(200, headers=list(up))
    apply_headers(request(), resp, f, NOW + 600, upstream=True)
    assert resp.headers == [("Cache-Control", "max-age=3000"),
                            ("Expires", "Tue, 14 Nov 2023 23:13:20 GMT"), up[2], ("V", "1"),
                            ("Z", "1")]


def test_416_gets_the_200s_headers_then_the_always_ones() -> None:
    f = filters("add_header A 1; add_header B 2 always; expires epoch;")
    resp = Response(416, headers=[("Content-Range", "bytes */9")])
    apply_headers(request(), resp, f, NOW, upstream=False)
    assert resp.headers == [("Expires", "Thu, 01 Jan 1970 00:00:01 GMT"),
                            ("Cache-Control", "no-cache"), ("A", "1"), ("B", "2"),
                            ("Content-Range", "bytes */9"), ("B", "2")]


def test_variable_expires_with_a_bad_value_sets_nothing() -> None:
    f = filters("expires $arg_e;")
    r = request()
    r.args = "e=later"
    resp = Response(200)
    apply_headers(r, resp, f, NOW, upstream=False)
    assert resp.headers == []
    r.args = "e=-10"
    apply_headers(r, resp, f, NOW, upstream=False)
    assert resp.headers == [("Expires", "Tue, 14 Nov 2023 22:13:10 GMT"),
                            ("Cache-Control", "no-cache")]
