"""proxy_cache side by side with nginx (and the ngx_cache_purge module, loaded with `-g
load_module`): the same requests in the same order to both; each answer compared, each access
log line with $upstream_cache_status compared, and the number of requests the upstream saw from
each proxy compared (the backend counts per proxy source address: `proxy_bind %ADDR%`).

The backend answers by query arguments: cc= (Cache-Control), xae= (X-Accel-Expires), cookie=1
(Set-Cookie), vary=, status=, chunked=1, fail=N (500 after N answers), drop=N (close without
an answer after N answers); its body names the path and how many requests it has seen for it
from that proxy, so a HIT shows an old count.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import socketserver
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from harness import (
    HALB_ADDR,
    NGINX_ADDR,
    Case,
    Pair,
    canonical,
    compare,
    exchange,
    req,
    same_access_logs,
)

pytestmark = pytest.mark.peer

PURGE_MODULE = "/usr/lib/nginx/modules/ngx_http_cache_purge_module.so"

CONFIG = r"""
    proxy_cache_path %PREFIX%/cache levels=1:2 keys_zone=z:1m;
    log_format cs 'CS $request_method $request_uri $status $upstream_cache_status';
    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        access_log %PREFIX%/cs.log cs;
        proxy_bind %ADDR%;
        proxy_cache z;
        proxy_cache_valid 200 1m;
        location / { proxy_pass http://%UP%; }
        location /valid404/ { proxy_cache_valid 404 1m; proxy_pass http://%UP%; }
        location /stale/ {
            proxy_cache_use_stale error timeout http_500;
            proxy_pass http://%UP%;
        }
        location /bypass/ {
            proxy_cache_key $scheme$proxy_host$uri;
            proxy_cache_bypass $arg_nocache;
            proxy_no_cache $arg_nostore;
            proxy_pass http://%UP%;
        }
        location /minuses/ { proxy_cache_min_uses 2; proxy_pass http://%UP%; }
        location /keyed/ {
            proxy_cache_key $host$uri$is_args$args;
            proxy_pass http://%UP%;
        }
        location /ignore/ {
            proxy_ignore_headers Set-Cookie Cache-Control;
            proxy_pass http://%UP%;
        }
        location /reval/ { proxy_cache_revalidate on; proxy_pass http://%UP%; }
        location /pm/ { proxy_cache_purge on; proxy_pass http://%UP%; }
        location /pmdeny/ { proxy_cache_purge PURGE from 10.0.0.1; proxy_pass http://%UP%; }
        location /bg/ {
            proxy_cache_use_stale updating;
            proxy_cache_background_update on;
            proxy_pass http://%UP%;
        }
        location /postc/ { proxy_cache_methods POST; proxy_pass http://%UP%; }
        location /lock/ { proxy_cache_lock on; proxy_pass http://%UP%; }
        location /var/ { proxy_cache $arg_zone; proxy_pass http://%UP%; }
        location /xc/ {
            add_header X-Cache-Status $upstream_cache_status;
            proxy_pass http://%UP%;
        }
        location ~ /purge(/.*) { proxy_cache_purge z $host$1$is_args$args; }
    }
"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    counts: dict[tuple[str, str], int] = {}
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self.lock:
            key = (self.client_address[0], url.path)
            n = self.counts[key] = self.counts.get(key, 0) + 1
        if "delay" in q:
            time.sleep(float(q["delay"]))
        if "drop" in q and n > int(q["drop"]):
            self.close_connection = True
            return
        status = int(q.get("status", "200"))
        body = f"{url.path} n={n}\n".encode()
        if n == 1 and "xae1" in q:  # the first answer only
            q["xae"] = q["xae1"]
        if (q.get("etag") and self.headers.get("If-None-Match") == q["etag"]) or (
                q.get("lm") and self.headers.get("If-Modified-Since") == q["lm"]):
            status, body = 304, b""
        if "fail" in q and n > int(q["fail"]):
            status, body = 500, b"broken\n"
        self.send_response(status)
        if status != 304:
            self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")
        for arg, name in (("cc", "Cache-Control"), ("xae", "X-Accel-Expires"),
                          ("vary", "Vary"), ("etag", "ETag"), ("lm", "Last-Modified")):
            if arg in q:
                self.send_header(name, q[arg])
        if q.get("cookie"):
            self.send_header("Set-Cookie", "a=1")
        if q.get("chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        else:
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        self.close_connection = True

    do_GET = do_HEAD = do_POST = _answer


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def seen(addr: str, path: str) -> int:
    """How many requests for `path` the backend got from the proxy on `addr`."""
    return _Handler.counts.get((addr, path), 0)


_UP_PORT: list[int] = []


class _Holder:
    def __init__(self, workdir: Path, dirs: dict[str, Path]) -> None:
        self.workdir = workdir
        self.dirs = dirs
        self.pair: Pair | None = None
        self.failed: BaseException | None = None


@pytest.fixture(scope="module")
def _holder(tmp_path_factory: pytest.TempPathFactory, docroot: dict[str, Path]
            ) -> Iterator[_Holder]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    holder = _Holder(tmp_path_factory.mktemp("cache"), docroot)
    holder.dirs = {**docroot, "up": Path(f"127.0.0.1:{server.server_address[1]}")}
    _UP_PORT[:] = [server.server_address[1]]
    try:
        yield holder
    finally:
        try:
            if holder.pair is not None:
                holder.pair.stop()
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture
def cpair(nginx_binary: str, _holder: _Holder) -> Pair:
    if not os.path.exists(PURGE_MODULE):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("libnginx-mod-http-cache-purge is not installed")
        pytest.skip("libnginx-mod-http-cache-purge is not installed (make peers)")
    if _holder.failed is not None:
        raise RuntimeError("the servers did not start") from _holder.failed
    if _holder.pair is None:
        pair = Pair(CONFIG, _holder.workdir, _holder.dirs, nginx_binary)
        for srv in pair.servers.values():
            srv.argv[-1] = f"daemon off; load_module {PURGE_MODULE};"
        try:
            pair.start()
        except BaseException as e:
            _holder.failed = e
            raise
        _holder.pair = pair
    return _holder.pair


# (path, the statuses nginx must log for it): checked by the last test, so that the logs
# (halb flushes its access log once a second) are waited for once
EXPECTED: list[tuple[str, list[str]]] = []


def _statuses(pair: Pair, path: str, want: list[str]) -> None:
    EXPECTED.append((path, want))


def _run(pair: Pair, name: str, *targets: str, method: str = "GET") -> None:
    for i, target in enumerate(targets):
        compare(pair, Case(f"{name}-{i}", req(target, method=method)))


def _cached(cache: Path, tail: bytes) -> bool:
    """Some file of a cache directory ends with `tail` (an answer's body)."""
    for f in cache.rglob("*"):
        try:
            if f.is_file() and f.read_bytes().endswith(tail):
                return True
        except OSError:  # renamed or removed meanwhile
            continue
    return False


def _same_upstream_count(path: str) -> int:
    n = seen(NGINX_ADDR, path)
    assert seen(HALB_ADDR, path) == n, f"{path}: nginx went upstream {n} times, halb " \
                                       f"{seen(HALB_ADDR, path)}"
    return n


def test_miss_then_hit(cpair: Pair) -> None:
    _run(cpair, "hit", *["/hit/a?cc=max-age%3D60"] * 3)
    _statuses(cpair, "/hit/a", ["MISS", "HIT", "HIT"])
    assert _same_upstream_count("/hit/a") == 1


@pytest.mark.parametrize("query", ["cookie=1", "cc=no-store", "cc=private", "xae=0",
                                   "vary=*", "status=404", "cc=max-age%3D0"])
def test_not_cached(cpair: Pair, query: str) -> None:
    path = f"/nc/{query.replace('=', '-').replace('%', '')}"
    _run(cpair, path, *[f"{path}?{query}"] * 2)
    _statuses(cpair, path, ["MISS", "MISS"])
    assert _same_upstream_count(path) == 2


def test_validity_from_status_and_headers(cpair: Pair) -> None:
    _run(cpair, "v404", *["/valid404/a?status=404"] * 2)
    _statuses(cpair, "/valid404/a", ["MISS", "HIT"])
    # a time from the upstream's headers caches a status proxy_cache_valid does not list
    _run(cpair, "v500", *["/v500?status=500&cc=max-age%3D60"] * 2)
    _statuses(cpair, "/v500", ["MISS", "HIT"])
    _run(cpair, "vxae", *["/vxae?status=403&xae=60"] * 2)
    _statuses(cpair, "/vxae", ["MISS", "HIT"])
    # proxy_ignore_headers: Set-Cookie and Cache-Control do not count
    _run(cpair, "ign", *["/ignore/a?cookie=1&cc=no-store"] * 2)
    _statuses(cpair, "/ignore/a", ["MISS", "HIT"])


def test_expired(cpair: Pair) -> None:
    # X-Accel-Expires: @1 stores a response that is already expired
    _run(cpair, "exp", *["/exp?xae=@1"] * 3)
    _statuses(cpair, "/exp", ["MISS", "EXPIRED", "EXPIRED"])
    assert _same_upstream_count("/exp") == 3


def test_stale_on_500_and_error(cpair: Pair) -> None:
    _run(cpair, "st500", *["/stale/a?xae=@1&fail=1"] * 3)
    _statuses(cpair, "/stale/a", ["MISS", "STALE", "STALE"])
    _run(cpair, "sterr", *["/stale/b?xae=@1&drop=1"] * 2)
    _statuses(cpair, "/stale/b", ["MISS", "STALE"])
    # without proxy_cache_use_stale the failure is passed on
    _run(cpair, "nostale", *["/nostale?xae=@1&fail=1"] * 2)
    _statuses(cpair, "/nostale", ["MISS", "EXPIRED"])


def test_bypass_and_no_cache(cpair: Pair) -> None:
    _run(cpair, "byp", "/bypass/a?cc=max-age%3D60", "/bypass/a?cc=max-age%3D60&nocache=1",
         "/bypass/a?cc=max-age%3D60", "/bypass/a?cc=max-age%3D60&nocache=1&nostore=1",
         "/bypass/a?cc=max-age%3D60")
    _statuses(cpair, "/bypass/a", ["MISS", "BYPASS", "HIT", "BYPASS", "HIT"])
    assert _same_upstream_count("/bypass/a") == 3


def test_min_uses(cpair: Pair) -> None:
    _run(cpair, "mu", *["/minuses/a?cc=max-age%3D60"] * 3)
    _statuses(cpair, "/minuses/a", ["MISS", "MISS", "HIT"])


def test_methods_head_and_chunked(cpair: Pair) -> None:
    _run(cpair, "post", *["/post?cc=max-age%3D60"] * 2, method="POST")
    _statuses(cpair, "/post", ["-", "-"])
    # proxy_cache_methods POST: the key has no body, the body goes up on a MISS only
    for i, body in enumerate([b"one", b"two" * 5000, b"three"]):
        compare(cpair, Case(f"postc-{i}", req("/postc/a?cc=max-age%3D60", method="POST",
                                              body=body)))
    # the body still arriving when the answer comes from the cache: read and dropped
    raw = req("/postc/a?cc=max-age%3D60", method="POST", body=b"x" * 40000)
    compare(cpair, Case("postc-slow", (raw[:len(raw) - 30000], raw[len(raw) - 30000:]),
                        pause=0.2))
    _statuses(cpair, "/postc/a", ["MISS", "HIT", "HIT", "HIT"])
    assert _same_upstream_count("/postc/a") == 1
    # a HEAD goes up as a GET (proxy_cache_convert_head): the GET after it is a HIT
    _run(cpair, "head", "/head?cc=max-age%3D60", method="HEAD")
    _run(cpair, "head-get", "/head?cc=max-age%3D60")
    _statuses(cpair, "/head", ["MISS", "HIT"])
    # a chunked answer is stored de-chunked and served from the cache with its length
    _run(cpair, "chunked", *["/chunked?cc=max-age%3D60&chunked=1"] * 2)
    _statuses(cpair, "/chunked", ["MISS", "HIT"])


def test_purge(cpair: Pair) -> None:
    _run(cpair, "pg", *["/keyed/p?cc=max-age%3D60"] * 2)
    answers = cpair.run(Case("purge", req("/purge/keyed/p?cc=max-age%3D60")))
    pages = []
    for name, ex in answers.items():
        last = ex.last
        assert last is not None and last.status == 200, (name, ex)
        body = last.body.decode().replace(str(cpair[name].prefix), "PREFIX")
        pages.append(re.sub(r"(nginx|halb)/[\d.]+", "SERVER", body))
    assert pages[0] == pages[1]
    assert "Successful purge" in pages[0] and "Key : localhost/keyed/p?cc=max-age%3D60" \
        in pages[0]
    # a second purge finds nothing (404); the next request goes upstream
    _run(cpair, "pg-after", "/purge/keyed/p?cc=max-age%3D60", "/keyed/p?cc=max-age%3D60",
         "/purge/keyed/none")
    _statuses(cpair, "/keyed/p", ["MISS", "HIT", "MISS"])
    assert _same_upstream_count("/keyed/p") == 2


def _purge_page(pair: Pair, target: str, method: str = "GET") -> str:
    answers = pair.run(Case(f"purge-{method}-{target}", req(target, method=method)))
    pages = []
    for name, ex in answers.items():
        last = ex.last
        assert last is not None and last.status == 200, (name, ex)
        body = last.body.decode().replace(str(pair[name].prefix), "PREFIX")
        pages.append(re.sub(r"(nginx|halb)/[\d.]+", "SERVER", body))
    assert pages[0] == pages[1]
    return pages[0]


def test_purge_method(cpair: Pair) -> None:
    """`proxy_cache_purge on|METHOD [from ...]` in the caching location. The Debian module
    (ngx_cache_purge 2.3 on nginx 1.22) kills its worker (signal 11) when it should purge, so
    only the refusal is compared; the purge itself is checked on halb against the module's
    documented answer (the page of the location form)."""
    _run(cpair, "pmd", "/pmdeny/a?cc=max-age%3D60")
    compare(cpair, Case("pmd-403", req("/pmdeny/a?cc=max-age%3D60", method="PURGE")))
    _run(cpair, "pmd-hit", "/pmdeny/a?cc=max-age%3D60")
    _statuses(cpair, "/pmdeny/a", ["MISS", "-", "HIT"])
    halb = cpair["halb"]
    target = "/pm/a?cc=max-age%3D60"
    for _ in range(2):
        exchange(halb.addr, cpair.port, Case("pm", req(target)))
    ex = exchange(halb.addr, cpair.port, Case("pm-purge", req(target, method="PURGE")))
    assert ex.last is not None and ex.last.status == 200
    assert b"Successful purge" in ex.last.body
    assert f"Key : http127.0.0.1:{_UP_PORT[0]}{target}".encode() in ex.last.body
    ex = exchange(halb.addr, cpair.port, Case("pm-again", req(target, method="PURGE")))
    assert ex.last is not None and ex.last.status == 404
    assert seen(HALB_ADDR, "/pm/a") == 1
    ex = exchange(halb.addr, cpair.port, Case("pm-get", req(target)))
    assert ex.last is not None and ex.last.body == b"/pm/a n=2\n"


def test_add_header_and_conditional_hits(cpair: Pair) -> None:
    """The seeds' `add_header X-Cache-Status $upstream_cache_status`; conditional requests
    answered from the cache (the upstream is never asked for them: the conditions are not
    sent up)."""
    target = "/xc/c?cc=max-age%3D60&etag=%22v1%22&lm=Tue,%2014%20Nov%202023%2022:13:20%20GMT"
    _run(cpair, "xc", target, target)
    for i, extra in enumerate([("If-None-Match", '"v1"'), ("If-None-Match", '"v2"'),
                               ("If-Modified-Since", "Tue, 14 Nov 2023 22:13:20 GMT"),
                               ("If-Modified-Since", "Tue, 14 Nov 2023 22:13:19 GMT"),
                               ("Range", "bytes=0-3"), ("If-Match", '"v2"'),
                               ("If-Match", '"v1"')]):
        compare(cpair, Case(f"xc-cond-{i}", req(target, headers=[extra])))
    _statuses(cpair, "/xc/c", ["MISS"] + ["HIT"] * 8)
    assert _same_upstream_count("/xc/c") == 1


def test_vary_variants(cpair: Pair) -> None:
    """Vary: each variant of the request headers it names is cached on its own."""
    target = "/vary?cc=max-age%3D60&vary=Accept-Encoding"
    gz = [("Accept-Encoding", "gzip")]
    for i, headers in enumerate([gz, [], gz, [], [("Accept-Encoding", "br")], gz, []]):
        compare(cpair, Case(f"vary-{i}", req(target, headers=headers)))
    _statuses(cpair, "/vary", ["MISS", "MISS", "HIT", "HIT", "MISS", "HIT", "HIT"])


def test_revalidate(cpair: Pair) -> None:
    """proxy_cache_revalidate: an expired copy is checked with If-None-Match /
    If-Modified-Since; the backend's 304 makes it REVALIDATED (and fresh again when the 304
    says for how long)."""
    _run(cpair, "rv-etag", *["/reval/a?xae=@1&etag=%22v1%22"] * 3)
    _statuses(cpair, "/reval/a", ["MISS", "REVALIDATED", "REVALIDATED"])
    lm = "Tue,%2014%20Nov%202023%2022:13:20%20GMT"
    _run(cpair, "rv-lm", *[f"/reval/b?xae1=@1&cc=max-age%3D60&lm={lm}"] * 3)
    _statuses(cpair, "/reval/b", ["MISS", "REVALIDATED", "HIT"])
    assert _same_upstream_count("/reval/a") == 3
    assert _same_upstream_count("/reval/b") == 2
    # without proxy_cache_revalidate the conditions are not sent: a full answer each time
    _run(cpair, "rv-off", *["/norv?xae=@1&etag=%22v1%22"] * 2)
    _statuses(cpair, "/norv", ["MISS", "EXPIRED"])


def test_background_update(cpair: Pair) -> None:
    """proxy_cache_background_update: the expired copy answers at once (STALE), a background
    request refreshes it; the next request is a HIT on the new copy."""
    target = "/bg/a?xae1=@1&cc=max-age%3D60"
    _run(cpair, "bg", target, target)
    # the refresh is stored once it has the whole answer: wait for the new copy's file in
    # both caches (a fixed pause after the backend saw the request was too short under load)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(
            _cached(srv.prefix / "cache", b"\n/bg/a n=2\n") for srv in cpair.servers.values()):
        time.sleep(0.05)
    _run(cpair, "bg-after", target)
    _statuses(cpair, "/bg/a", ["MISS", "STALE", "HIT"])
    assert _same_upstream_count("/bg/a") == 2


def test_lock(cpair: Pair) -> None:
    """proxy_cache_lock: of five requests at once, one goes upstream, the others wait for its
    answer and take it from the cache."""
    case = Case("lock", req("/lock/a?cc=max-age%3D60&delay=0.4"))
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(exchange, srv.addr, cpair.port, case)
                   for srv in cpair.servers.values() for _ in range(5)]
        answers = [f.result() for f in futures]
    assert {canonical(ex) for ex in answers[:5]} == {canonical(ex) for ex in answers[5:]}
    assert len({canonical(ex) for ex in answers}) == 1
    assert _same_upstream_count("/lock/a") == 1
    _statuses(cpair, "/lock/a", ["MISS", "HIT", "HIT", "HIT", "HIT"])


def test_zone_from_a_variable(cpair: Pair) -> None:
    """proxy_cache $variable: the zone is chosen per request; none (or "off") is no caching,
    an unknown one is a 500."""
    _run(cpair, "var", *["/var/a?cc=max-age%3D60&zone=z"] * 2, "/var/b?cc=max-age%3D60",
         "/var/b?cc=max-age%3D60&zone=off", "/var/c?cc=max-age%3D60&zone=nope")
    _statuses(cpair, "/var/a", ["MISS", "HIT"])
    _statuses(cpair, "/var/b", ["-", "-"])
    assert _same_upstream_count("/var/c") == 0


def test_cache_status_logs(cpair: Pair) -> None:  # keep this test last
    """$upstream_cache_status of every request above: the same in both access logs, and what
    the tests expect of nginx."""
    if not EXPECTED:  # run apart from them (as xdist's worksteal may): some of them here
        test_miss_then_hit(cpair)
        test_bypass_and_no_cache(cpair)
        assert EXPECTED
    same_access_logs(cpair, r"CS \S+ ((?!/pm/)\S+) ", "cs.log")  # /pm/: halb only
    text = (cpair["nginx"].prefix / "cs.log").read_text()
    for path, want in EXPECTED:
        got = [ln.split()[-1] for ln in text.splitlines()
               if ln.split()[2].split("?")[0] == path]
        assert got == want, f"{path}: nginx logged {got}, expected {want}"
    errors = (cpair["halb"].prefix / "error.log").read_text()
    assert "[alert]" not in errors and "Traceback" not in errors, errors[-3000:]
