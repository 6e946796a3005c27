"""The proxy cache's pure rules (l7/cache_rules.py) and directives (config/nginx_cache.py):
file layout, validity from the upstream's headers and proxy_cache_valid, the file header, and
the configuration errors nginx -t prints."""

from __future__ import annotations

import hashlib

import pytest

from halb.config.errors import ConfigError
from halb.config.nginx import load_text
from halb.config.nginx_cache import CachePath
from halb.l7.cache_rules import (
    decode_header,
    encode_header,
    file_path,
    head_block,
    http_time,
    md5_key,
    predicates,
    valid_for_status,
    validity,
    variant,
)

NOW = 1_700_000_000


def test_levels_path_as_nginx_docs() -> None:
    # the example of nginx's proxy_cache_path documentation
    digest = bytes.fromhex("b7f54b2df7773722d382f4809d65029c")
    assert file_path("/data/nginx/cache", (1, 2), digest) == \
        "/data/nginx/cache/c/29/b7f54b2df7773722d382f4809d65029c"
    assert file_path("/c", (), digest) == "/c/b7f54b2df7773722d382f4809d65029c"
    assert file_path("/c", (2, 2, 1), digest) == "/c/9c/02/5/b7f54b2df7773722d382f4809d65029c"
    # the path the real nginx used for this key (seen in the conformance run)
    assert file_path("/c", (1, 2), md5_key("127.0.0.9/x?a=1")) == \
        "/c/6/8a/0caa0c1fed614587278ac22dfe5d28a6"
    assert md5_key("k") == hashlib.md5(b"k").digest()


def _v(headers: list[tuple[str, str]], status: int = 200,
       valid: tuple[tuple[int, int], ...] = ((200, 60),),
       ignore: frozenset[str] = frozenset()) -> int:
    lows = [n.lower() for n, _ in headers]
    return validity(status, headers, lows, valid, ignore, NOW)[0]


def test_valid_by_status() -> None:
    table = ((200, 10), (404, 5), (0, 1))
    assert valid_for_status(200, table) == 10
    assert valid_for_status(404, table) == 5
    assert valid_for_status(500, table) == 1  # any
    assert valid_for_status(500, ((200, 10),)) == 0
    assert _v([]) == NOW + 60
    assert _v([], status=500) == 0


def test_header_precedence() -> None:
    assert _v([("X-Accel-Expires", "30")]) == NOW + 30
    assert _v([("X-Accel-Expires", "@1700000500")]) == 1_700_000_500
    assert _v([("X-Accel-Expires", "0")]) == 0
    assert _v([("X-Accel-Expires", "0")], ignore=frozenset({"x-accel-expires"})) == NOW + 60
    # X-Accel-Expires first: Cache-Control is skipped (even no-cache)
    assert _v([("X-Accel-Expires", "30"), ("Cache-Control", "no-cache")]) == NOW + 30
    assert _v([("Cache-Control", "max-age=100")]) == NOW + 100
    assert _v([("Cache-Control", "public, s-maxage=7, max-age=100")]) == NOW + 7
    assert _v([("Cache-Control", "max-age=0")]) == 0
    assert _v([("Cache-Control", "max-age=1x")]) == 0
    for v in ("no-cache", "no-store", "private", "Private, max-age=5"):
        assert _v([("Cache-Control", v)]) == 0, v
    assert _v([("Cache-Control", "no-store")], ignore=frozenset({"cache-control"})) == NOW + 60
    # Expires counts only when nothing set a time before it
    assert _v([("Expires", "Tue, 14 Nov 2023 22:23:20 GMT")]) == NOW + 600
    assert _v([("Expires", "Tue, 14 Nov 2023 22:03:20 GMT")]) == 0  # in the past
    assert _v([("Expires", "soon")]) == 0
    assert _v([("Cache-Control", "max-age=5"), ("Expires", "soon")]) == NOW + 5
    # valid from the headers applies to any status
    assert _v([("Cache-Control", "max-age=9")], status=404) == NOW + 9


def test_not_cached() -> None:
    assert _v([("Set-Cookie", "a=1")]) == 0
    assert _v([("Set-Cookie", "a=1")], ignore=frozenset({"set-cookie"})) == NOW + 60
    assert _v([("Vary", "*")]) == 0
    assert _v([("Vary", "Accept-Encoding")]) == NOW + 60
    assert _v([("Vary", "X" * 43)]) == 0


def test_http_time() -> None:
    assert http_time("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert http_time("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777
    assert http_time("Sun Nov  6 08:49:37 1994") == 784111777
    assert http_time("Sun, 06 Foo 1994 08:49:37 GMT") is None
    assert http_time("") is None


def test_file_header_round_trip() -> None:
    block = head_block("200 OK", 11, [("Content-Type", "text/plain"), ("X-A", "b")])
    assert block == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: b\r\n\r\n"
    var = variant("Accept-Encoding", {"accept-encoding": "gzip"})
    data = encode_header(NOW + 5, NOW, -1, 200, "key\u00e9", "Accept-Encoding", var, block)
    h = decode_header(data + b"body")
    assert h is not None
    assert (h.valid_sec, h.date, h.last_modified, h.status) == (NOW + 5, NOW, -1, 200)
    assert h.body_start == len(data)
    assert h.key == "key\u00e9" and h.vary == "Accept-Encoding" and h.variant == var
    assert h.head_block == block
    assert decode_header(b"not a cache file at all, nothing like one........") is None
    partial = decode_header(data[:60])
    assert partial is not None and partial.head_block == b""  # more bytes needed
    assert variant("Accept-Encoding", {}) != var
    # a variant is a key of its own: it depends on the main key too
    main = md5_key("k")
    assert variant("Accept-Encoding", {"accept-encoding": "gzip"}, main) != var
    assert variant("accept-encoding", {"accept-encoding": "gzip"}, main) == \
        variant("Accept-Encoding, ", {"accept-encoding": "gzip"}, main)
    assert variant("", {}) == bytes(16)


def test_predicates() -> None:
    assert not predicates([])
    assert not predicates(["", "0"])
    assert predicates(["", "1"])
    assert predicates(["yes"])


CONF = """events {{}}
http {{
    {http}
    server {{ listen 127.0.0.1:8080; location / {{ proxy_pass http://127.0.0.1:9; {loc} }} }}
}}
"""


def _load(http: str, loc: str = "") -> object:
    return load_text(CONF.format(http=http, loc=loc))


def test_directives_parse() -> None:
    cfg = _load("proxy_cache_path /tmp/c levels=1:2 keys_zone=one:10m inactive=1h "
                "max_size=1g use_temp_path=off;",
                "proxy_cache one; proxy_cache_valid 200 302 10m; proxy_cache_valid 404 1m; "
                "proxy_cache_use_stale error timeout updating; proxy_cache_lock on; "
                "proxy_cache_bypass $arg_nocache; proxy_cache_min_uses 2; "
                "proxy_cache_methods POST;")
    http = cfg.http  # type: ignore[attr-defined]
    cp = http.conf.extra["proxy_cache_path"]["one"]
    assert cp == CachePath("/tmp/c", "one", 10 << 20, (1, 2), 3600.0, 1 << 30,
                           use_temp_path=False)
    extra = http.servers[0].locations[0].conf.extra
    assert extra["proxy_cache"] == "one"
    assert extra["proxy_cache_valid"] == ((200, 600), (302, 600), (404, 60))
    assert extra["proxy_cache_use_stale"] == {"error", "timeout", "updating"}
    assert extra["proxy_cache_methods"] == {"GET", "HEAD", "POST"}
    assert extra["proxy_cache_min_uses"] == 2
    cfg = _load("proxy_cache_path /tmp/c keys_zone=one:1m; proxy_cache_valid 5m;",
                "proxy_cache one;")
    extra = cfg.http.servers[0].locations[0].conf.extra  # type: ignore[attr-defined]
    assert extra["proxy_cache_valid"] == ((200, 300), (301, 300), (302, 300))


@pytest.mark.parametrize(("http", "loc", "message"), [
    ("proxy_cache_path /tmp/c levels=1:2;", "",
     '"proxy_cache_path" must have "keys_zone" parameter in /tmp/nginx.conf:3'),
    ("proxy_cache_path /tmp/c levels=1:3 keys_zone=one:1m;", "",
     'invalid "levels" "levels=1:3" in /tmp/nginx.conf:3'),
    ("proxy_cache_path /tmp/c keys_zone=one:1m; proxy_cache_path /tmp/d keys_zone=one:1m;", "",
     'duplicate zone "one" in /tmp/nginx.conf:3'),
    ("proxy_cache_path /tmp/c keys_zone=one:1m bogus=1;", "",
     'invalid parameter "bogus=1" in /tmp/nginx.conf:3'),
    ("proxy_cache_path /tmp/c keys_zone=one;", "",
     'invalid keys zone size "keys_zone=one" in /tmp/nginx.conf:3'),
    ("proxy_cache_path /tmp/c keys_zone=one:1k;", "",
     'keys zone "keys_zone=one:1k" is too small in /tmp/nginx.conf:3'),
    ("proxy_cache_valid 200 abc;", "", 'invalid time value "abc" in /tmp/nginx.conf:3'),
    ("proxy_cache_use_stale bogus;", "", 'invalid value "bogus" in /tmp/nginx.conf:3'),
    ("proxy_cache_methods GET POST PUT;", "", 'invalid value "PUT" in /tmp/nginx.conf:3'),
    ("proxy_cache_path /tmp/c keys_zone=one:1m; proxy_cache_path /tmp/c keys_zone=two:1m;", "",
     'the same path name "/tmp/c" used in /tmp/nginx.conf:3 and in /tmp/nginx.conf:3'),
    ("", "proxy_cache two;", '"proxy_cache" zone "two" is unknown in /tmp/nginx.conf:5'),
    ("proxy_cache_path /tmp/c keys_zone=:1m;", "",
     '"proxy_cache_path" must have "keys_zone" parameter in /tmp/nginx.conf:3'),
    ("proxy_cache_path /tmp/c keys_zone=one:1m use_temp_path=maybe;", "",
     'invalid use_temp_path value "use_temp_path=maybe", it must be "on" or "off" in '
     "/tmp/nginx.conf:3"),
    ("proxy_ignore_headers Foo;", "", 'invalid value "Foo" in /tmp/nginx.conf:3'),
    ("proxy_cache_min_uses abc;", "",
     '"proxy_cache_min_uses" directive invalid number in /tmp/nginx.conf:3'),
    ("proxy_cache_valid 999 1m;", "", 'invalid status "999" in /tmp/nginx.conf:3'),
])
def test_config_errors(http: str, loc: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(http, loc)
    assert str(e.value).startswith(message)


def test_purge_location_form() -> None:
    cfg = load_text("""events {}
http {
    proxy_cache_path /tmp/c keys_zone=one:1m;
    server { listen 127.0.0.1:8080;
        location / { proxy_pass http://127.0.0.1:9; proxy_cache one; }
        location ~ /purge(/.*) { proxy_cache_purge one $host$1$is_args$args; }
    }
}
""")
    locs = cfg.http.servers[0].locations  # type: ignore[union-attr]
    zone, key = locs[1].conf.extra["proxy_cache_purge"]
    assert zone == "one" and key.raw == "$host$1$is_args$args"
    assert "proxy_cache_purge" not in locs[0].conf.extra


def test_purge_method_form_and_errors() -> None:
    base = """events {{}}
http {{
    proxy_cache_path /tmp/c keys_zone=one:1m;
    server {{ listen 127.0.0.1:8080;
        location / {{ proxy_pass http://127.0.0.1:9; proxy_cache one; {purge} }}
    }}
}}
"""
    cfg = load_text(base.format(purge="proxy_cache_purge on;"))
    extra = cfg.http.servers[0].locations[0].conf.extra  # type: ignore[union-attr]
    assert extra["proxy_cache_purge_method"] == ("PURGE", None)
    cfg = load_text(base.format(purge="proxy_cache_purge BAN from 127.0.0.1 10.0.0.0/8;"))
    extra = cfg.http.servers[0].locations[0].conf.extra  # type: ignore[union-attr]
    method, nets = extra["proxy_cache_purge_method"]
    assert method == "BAN" and [str(n) for n in nets] == ["127.0.0.1/32", "10.0.0.0/8"]
    # as ngx_cache_purge 2.3 reads them (messages of nginx -t with the Debian module)
    with pytest.raises(ConfigError, match=r'^invalid parameter "\$1", expected "from" '
                                          r"keyword in /tmp/nginx.conf:5"):
        load_text(base.format(purge="proxy_cache_purge one $1 x;"))
    with pytest.raises(ConfigError, match=r'^"proxy_cache" zone "on" is unknown'):
        load_text(base.format(purge="proxy_cache_purge on bogus;"))
    with pytest.raises(ConfigError, match=r'^"proxy_cache" zone "two" is unknown'):
        load_text(base.format(purge="proxy_cache_purge two $uri;"))


def test_damaged_file_headers() -> None:
    """A cache file whose fixed header lies: a body_start with no room for the key, vary and
    head is no cache file; one past the bytes given asks for more (the caller checks it against
    the file's size before reading that much)."""
    import struct

    from halb.l7.cache_rules import HEADER_MIN, MAGIC

    good = encode_header(NOW + 5, NOW, -1, 200, "k", "", bytes(16), b"HTTP/1.1 200 OK\r\n\r\n")
    fixed = struct.Struct("<qqqIHHH16s")

    def with_body_start(n: int) -> bytes:
        fields = list(fixed.unpack_from(good, len(MAGIC)))
        fields[3] = n
        return MAGIC + fixed.pack(*fields) + good[HEADER_MIN:]

    assert decode_header(good) is not None
    for n in (0, 1, HEADER_MIN, HEADER_MIN + 1):  # the key "k" and the "\n" need 2 bytes
        assert decode_header(with_body_start(n)) is None, n
    far = decode_header(with_body_start(0xFFFFFFFF))
    assert far is not None and far.body_start == 0xFFFFFFFF and far.head_block == b""
