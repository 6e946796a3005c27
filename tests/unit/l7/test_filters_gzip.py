"""The gzip filter's pure parts (l7/filters/gzip.py): nginx's Accept-Encoding parser and
quality quirks, the msie6 flag, Cache-Control tokens, gzip_proxied's decisions, gzip_types
keys, the header filter's changes, and the streaming body filter."""

from __future__ import annotations

import zlib

import pytest

from halb.config.nginx_filters import Gzip
from halb.l7.filters.gzip import (
    GzipBody,
    accepts_gzip,
    content_type_key,
    gzip_header,
    has_token,
    msie6,
    proxied_ok,
    quantity,
    weak_etag,
)
from halb.l7.response import Response

NOW = 1_700_000_000.0


@pytest.mark.parametrize(("ae", "ok"), [
    ("gzip", True), ("gzip,deflate", True), ("gzip, deflate", True), ("deflate, gzip", True),
    ("deflate,gzip", True), ("GZIP", True), ("Gzip ", True), ("gzip ;q=1", True),
    ("gzip;q=0", False), ("gzip; q=0", False), ("gzip;q=0.000", False), ("gzip;Q=0.001", True),
    ("gzip;q=0.5", True), ("gzip;q=1", True), ("gzip;q=1.0", True), ("gzip;q=1.000", True),
    ("gzip;q=1.5", False), ("gzip;q=0.0001", False), ("gzip;q=2", False), ("gzip;q=", False),
    ("gzip;q=0.5,deflate", True), ("gzip;q=0 ,deflate", False), ("gzip;x=1", False),
    ("gzip;", True), ("gzip;  ", True),
    ("x-gzip", False), ("gzipper", False), ("identity", False), ("*", False), ("", False),
    ("gzi", False), ("x-gzip, gzip", True), ("x-gzip,gzip;q=0", False),
    ("deflate;q=0, gzip", True), ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
])
def test_accept_encoding(ae: str, ok: bool) -> None:
    assert accepts_gzip(ae) is ok


def test_quantity_adds_decimals_without_place_values() -> None:
    assert quantity("0.5", 0) == 5 and quantity("0.05", 0) == 5 and quantity("1", 0) == 100
    assert quantity("0.999", 0) == 27  # nginx's sum: any positive quality counts
    assert quantity("1.001", 0) == 0 and quantity("x", 0) == 0


@pytest.mark.parametrize(("ua", "old"), [
    ("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)", True),
    ("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)", False),
    ("Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)", True),
    ("Mozilla/4.0 (compatible; MSIE 4.01; Windows 95)", True),
    ("Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)", False),
    ("Mozilla/5.0 (X11; Linux x86_64)", False), ("MSIE 6", False),
])
def test_msie6(ua: str, old: bool) -> None:
    assert msie6(ua) is old


def test_cache_control_tokens() -> None:
    assert has_token(["no-cache"], "no-cache")
    assert has_token(["max-age=0, no-store"], "no-store")
    assert has_token(["public", "Private  "], "private")
    assert not has_token(['no-cache="set-cookie"'], "no-cache")
    assert not has_token(["no-cachex"], "no-cache")


PAST = "Thu, 01 Jan 1998 00:00:00 GMT"
FUTURE = "Thu, 01 Jan 2037 00:00:00 GMT"


@pytest.mark.parametrize(("proxied", "kw", "ok"), [
    ({"off"}, {}, False), ({"any"}, {}, True), ({"off", "any"}, {}, False),
    ({"auth"}, {"auth": True}, True), ({"auth"}, {}, True),  # nothing tells against it
    ({"expired"}, {"expires": PAST}, True), ({"expired"}, {"expires": FUTURE}, False),
    ({"expired"}, {"expires": "soon"}, False), ({"auth"}, {"expires": PAST}, False),
    ({"expired"}, {"expires": FUTURE, "date": "Fri, 01 Jan 2038 00:00:00 GMT"}, True),
    ({"expired"}, {"expires": PAST, "date": "bad"}, False),
    ({"no-cache"}, {"cc": ["no-cache"]}, True), ({"no-store"}, {"cc": ["no-cache"]}, False),
    ({"private"}, {"cc": ["public", "private"]}, True), ({"any", "auth"}, {"cc": ["x"]}, True),
    ({"expired"}, {"cc": ["no-cache"]}, False),
    ({"no_last_modified"}, {"lm": True}, False), ({"no_last_modified"}, {}, True),
    ({"no_etag"}, {"etag": True}, False), ({"no_etag"}, {"lm": True}, True),
])
def test_gzip_proxied(proxied: set[str], kw: dict[str, object], ok: bool) -> None:
    got = proxied_ok(frozenset(proxied), bool(kw.get("auth")), kw.get("expires"),  # type: ignore[arg-type]
                     kw.get("date"), kw.get("cc", []), bool(kw.get("lm")),  # type: ignore[arg-type]
                     bool(kw.get("etag")), NOW)
    assert got is ok


@pytest.mark.parametrize(("ctype", "key"), [
    ("text/html", "text/html"), ("Text/HTML", "text/html"),
    ("text/html; charset=utf-8", "text/html"), ("text/html;charset=UTF-8", "text/html"),
    ("text/html; q=1", "text/html; q=1"), ("text/html; q=1; charset=x", "text/html; q=1"),
    ("", ""), (None, ""),
])
def test_content_type_key(ctype: str | None, key: str) -> None:
    assert content_type_key(ctype) == key


def test_weak_etag() -> None:
    assert weak_etag('"a"') == 'W/"a"'
    assert weak_etag('W/"a"') == 'W/"a"'
    assert weak_etag("a") is None


G = Gzip(types=frozenset({"text/html", "text/plain"}), vary=True)
AE = {"accept-encoding": "gzip"}


def test_header_filter_compresses_and_rewrites_headers() -> None:
    resp = Response(200, headers=[("ETag", '"x"'), ("Accept-Ranges", "bytes"), ("X", "1")],
                    body=b"a" * 100, content_type="text/plain; charset=utf-8")
    body = gzip_header(G, 11, AE, resp, NOW)
    assert body is not None
    assert resp.headers == [("ETag", 'W/"x"'), ("X", "1"), ("Content-Encoding", "gzip")]
    assert resp.unknown_length and resp.content_length is None and resp.vary


@pytest.mark.parametrize(("resp", "headers", "vary"), [
    (Response(200, body=b"x" * 10, content_type="text/html"), AE, False),  # < min_length
    (Response(201, body=b"x" * 100, content_type="text/html"), AE, False),
    (Response(200, body=b"x" * 100, content_type="image/png"), AE, False),
    (Response(200, body=b"x" * 100, content_type="text/html",
              headers=[("Content-Encoding", "br")]), AE, False),
    (Response(200, body=b"x" * 100, content_type="text/html"), {}, True),
    (Response(404, body=b"x" * 100, content_type="text/html"),
     {"accept-encoding": "gzip", "via": "1.1 p"}, True),  # gzip_proxied off
])
def test_header_filter_declines(resp: Response, headers: dict[str, str], vary: bool) -> None:
    assert gzip_header(G, 11, headers, resp, NOW) is None
    assert resp.vary is vary
    assert ("Content-Encoding", "gzip") not in resp.headers


def test_unknown_length_is_compressible_and_http10_is_not() -> None:
    resp = Response(200, content_type="text/html", unknown_length=True)
    assert gzip_header(G, 10, AE, resp, NOW) is None
    assert gzip_header(G, 11, AE, resp, NOW) is not None


def test_body_streams_in_pieces() -> None:
    data = b"".join(b"line %d of a compressible body\n" % i for i in range(20000))
    body = GzipBody(6)
    pieces = [body.data(data[i:i + 4096]) for i in range(0, len(data), 4096)]
    pieces.append(body.last())
    assert sum(1 for p in pieces[:-1] if p) > 1  # output came before the end
    assert zlib.decompress(b"".join(pieces), 16 + zlib.MAX_WBITS) == data


def test_flush_gives_everything_so_far() -> None:
    body = GzipBody(1)
    first = body.data(b"hello ", flush=True)
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert d.decompress(first) == b"hello "
    assert d.decompress(body.last(b"world")) == b"world" and d.eof


def test_short_known_length_uses_nginx_memory_sizes() -> None:
    small = GzipBody(1, length=100)
    out = small.last(b"x" * 100)
    assert out[:3] == b"\x1f\x8b\x08" and zlib.decompress(out, 31) == b"x" * 100
    assert GzipBody(1, length=0).last() == GzipBody(1).last()


def test_ratio_once_complete() -> None:
    body = GzipBody(1)
    out = body.data(b"a" * 1000)
    assert body.ratio() is None  # not finished yet: nginx has no value either
    out += body.last()
    assert body.zout == len(out) and body.zin == 1000
    whole, frac = body.ratio().split(".")  # type: ignore[union-attr]
    assert int(whole) == 1000 // len(out) and len(frac) == 2
    body.zin, body.zout = 1999, 1000  # 1.999: the third decimal rounds up
    assert body.ratio() == "2.00"
