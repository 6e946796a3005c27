"""gzip, add_header and expires on proxied responses, side by side with nginx (gzip bodies
compared decompressed, see filters_common.py).

The backend (backends.py) answers with the request it received as text/plain, and with the
headers the path asks for (hdr/NAME/VALUE, chunked, big/SIZE, status/NNN, no-ctype, hdrs, lm):
upstream Content-Encoding, lengths known or not, large bodies streamed with and without
proxy_buffering, statuses gzip skips, HEAD, 204/304, gzip_proxied's decisions on Expires /
Cache-Control / Last-Modified / ETag / Authorization when the request came through a proxy
(Via), charset parameters in Content-Type, ETag weakened and Accept-Ranges dropped, and
add_header / expires replacing or adding the upstream's Expires and Cache-Control.
"""

from __future__ import annotations

import concurrent.futures
import socket
import time
import zlib

import pytest
from filters_common import compare_filtered, g
from harness import Case, Pair, ids, req

pytestmark = pytest.mark.peer

BACKENDS = ["h1"]

CONFIG = r"""
    default_type text/plain;
    proxy_bind %ADDR%;
    upstream up { server %B_h1%; }
    gzip on;
    gzip_types text/plain application/json;
    gzip_vary on;
    proxy_cache_path %PREFIX%/fcache keys_zone=fz:1m;
    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        location / {
            proxy_pass http://up;
            add_header X-P 1;
        }
        location /exp/ {
            proxy_pass http://up;
            expires 1h;
            add_header Cache-Control public;
            add_header X-Always a always;
        }
        location /unbuf/ { proxy_pass http://up; proxy_buffering off; }
        location /prox/ {
            proxy_pass http://up;
            gzip_proxied expired no-cache no-store private auth;
        }
        location /lmetag/ { proxy_pass http://up; gzip_proxied no_last_modified no_etag; }
        location /any/ { proxy_pass http://up; gzip_proxied any; gzip_min_length 1000; }
        location /etag/ { proxy_pass http://up; add_header ETag ""; add_header X-E e; }
        location /http10/ { proxy_pass http://up; chunked_transfer_encoding off; }
        location /cached/ {
            proxy_pass http://up;
            proxy_cache fz;
            proxy_cache_valid 200 1m;
            add_header X-Cache $upstream_cache_status;
            expires 10m;
        }
    }
"""

GZ = ("Accept-Encoding", "gzip")
VIA = ("Via", "1.1 cache")
PAST = "hdr/Expires/Thu%2C%2001%20Jan%201998%2000%3A00%3A00%20GMT"
FUTURE = "hdr/Expires/Thu%2C%2001%20Jan%202037%2000%3A00%3A00%20GMT"


CASES = [
    g("p-gzip", "/x", GZ, header__content_encoding="gzip", header__x_p="1"),
    g("p-plain", "/x", header__vary="Accept-Encoding"),
    g("p-head", "/x", GZ, method="HEAD"),
    g("p-http10", "/x", GZ, version="HTTP/1.0"),
    g("p-chunked", "/chunked", GZ),
    g("p-chunked-http10", "/http10/chunked", GZ, version="HTTP/1.0"),
    g("p-chunked-off", "/http10/x", GZ),
    g("p-http10-keepalive", "/x", GZ, "Connection: keep-alive", version="HTTP/1.0"),
    g("p-empty", "/empty", GZ),
    g("p-empty-chunked", "/empty/chunked", GZ),
    g("p-big", "/big/300k", GZ, header__content_encoding="gzip"),
    g("p-big-unbuffered", "/unbuf/big/300k", GZ),
    g("p-big-slow-unbuffered", "/unbuf/slow-body/100ms/chunked", GZ),
    g("p-encoded", "/hdr/Content-Encoding/br", GZ, header__content_encoding="br"),
    g("p-encoded-empty", "/hdr/Content-Encoding/", GZ),
    g("p-html-charset", "/no-ctype/hdr/Content-Type/text%2Fhtml%3B%20charset%3Dutf-8", GZ),
    g("p-html-param", "/no-ctype/hdr/Content-Type/text%2Fhtml%3B%20q%3D1", GZ),
    g("p-json", "/no-ctype/hdr/Content-Type/application%2Fjson", GZ),
    g("p-no-ctype", "/no-ctype", GZ),
    g("p-hdrs", "/hdrs", GZ),
    g("p-hdrs-plain", "/hdrs"),
    g("p-404", "/status/404", GZ),
    g("p-403", "/status/403", GZ),
    g("p-500", "/status/500", GZ),
    g("p-206", "/status/206", GZ),
    g("p-204", "/status/204", GZ),
    g("p-304", "/status/304", GZ),
    g("p-301", "/redirect-absolute", GZ),
    # a backend that fails mid-body while the answer is being compressed
    g("p-reset-mid-body", "/big/100k/reset-mid-body", GZ),
    g("p-close-mid-body", "/big/100k/close-mid-body", GZ),
    g("p-close-mid-body-unbuf", "/unbuf/big/100k/close-mid-body", GZ),
    Case("p-cache-miss-hit", req("/cached/big/50k", headers=[GZ])
         + req("/cached/big/50k", headers=[GZ]) + req("/cached/big/50k"),
         expect={"header:x-cache": "HIT", "header:content-encoding": None}),
    Case("p-pipelined", req("/x", headers=[GZ]) + req("/chunked", headers=[GZ])
         + req("/big/200k", headers=[GZ]) + req("/y", method="HEAD", headers=[GZ])),
    # gzip_proxied (the request has Via)
    g("px-off", "/x", GZ, VIA, header__content_encoding=None),
    g("px-none", "/prox/x", GZ, VIA),
    g("px-expired-past", f"/prox/{PAST}", GZ, VIA, header__content_encoding="gzip"),
    g("px-expired-future", f"/prox/{FUTURE}", GZ, VIA),
    g("px-expired-bad", "/prox/hdr/Expires/soon", GZ, VIA),
    g("px-no-cache", "/prox/hdr/Cache-Control/no-cache", GZ, VIA),
    g("px-no-store", "/prox/hdr/Cache-Control/max-age%3D0%2C%20no-store", GZ, VIA),
    g("px-private", "/prox/hdr/Cache-Control/private", GZ, VIA),
    g("px-public", "/prox/hdr/Cache-Control/public", GZ, VIA),
    g("px-no-cache-field", "/prox/hdr/Cache-Control/no-cache%3D%22x%22", GZ, VIA),
    g("px-auth", "/prox/x", GZ, VIA, ("Authorization", "Basic eDp5")),
    g("px-lm", "/lmetag/lm", GZ, VIA),
    g("px-etag", "/lmetag/hdr/ETag/%22t%22", GZ, VIA),
    g("px-neither", "/lmetag/x", GZ, VIA),
    g("px-any", "/any/big/5k", GZ, VIA),
    g("px-any-short", "/any/x", GZ, VIA),
    # add_header, expires on proxied answers
    g("pe-replace", "/exp/hdrs", GZ, header__cache_control="max-age=3600"),
    g("pe-multi", "/exp/multi"),
    g("pe-plain", "/exp/x", header__cache_control="max-age=3600"),
    g("pe-404", "/exp/status/404", header__expires=None, header__x_always="a"),
    g("pe-etag-removed", "/etag/hdrs", GZ, header__etag=None),
    g("pe-etag-weak", "/hdr/ETag/%22abc%22", GZ, header__etag='W/"abc"'),
    g("pe-etag-unquoted", "/hdr/ETag/abc", GZ, header__etag=None),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_filters_proxy(pair, case: Case) -> None:  # type: ignore[no-untyped-def]
    compare_filtered(pair, case)


def _early_bytes(addr: str, port: int, window: float) -> int:
    """How much of a compressed, chunked answer decompresses within `window` seconds."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    got = 0
    buf = b""
    deadline = time.monotonic() + window
    with socket.create_connection((addr, port), timeout=window) as s:
        s.sendall(req("/unbuf/slow-body/3s/big/20k", headers=[GZ]))
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = s.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            buf += data
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            body = buf[head_end + 4:]
            payload = b""
            while True:  # whole chunks so far
                eol = body.find(b"\r\n")
                if eol < 0:
                    break
                size = int(body[:eol].split(b";")[0], 16)
                if size == 0 or len(body) < eol + 2 + size + 2:
                    break
                payload += body[eol + 2:eol + 2 + size]
                body = body[eol + 2 + size + 2:]
            buf = buf[:head_end + 4] + body
            got += len(d.decompress(payload))
    return got


def test_unbuffered_gzip_streams(pair: Pair) -> None:
    """proxy_buffering off: the first half of a slow body reaches the client compressed while
    the backend still holds the second half (each piece is flushed through zlib, as nginx
    flushes it), so nothing waits for the whole body."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(_early_bytes, srv.addr, pair.port, 2.5)
                   for name, srv in pair.servers.items()}
        got = {name: f.result() for name, f in futures.items()}
    assert got["nginx"] == 10 * 1024, got  # the oracle: half, before the second half is sent
    assert got["halb"] == got["nginx"], got
