"""proxy_next_upstream side by side: which backends each proxy tried, in which order (the
backends log what they received; refused and timed-out attempts show in $upstream_addr), the
final status (502 for errors, 504 for timeouts, the backend's own answer for http_* statuses),
`off`, _tries, _timeout, non-idempotent requests, connect and read timeouts; failures after the
response header was sent (the client connection closes); the access log's $upstream_*
variables."""

from __future__ import annotations

import concurrent.futures

import pytest
from backends import BackendSet
from harness import HALB_ADDR, NGINX_ADDR, Case, Pair, compare, req, same_access_logs

pytestmark = pytest.mark.peer

BACKENDS = ["n1", "n2", "n3"]
DOWN = ("d1",)
BLACKHOLE = ("bh",)

CONFIG = r"""
    default_type text/plain;
    proxy_bind %ADDR%;
    proxy_connect_timeout 300ms;
    proxy_read_timeout 600ms;
    log_format up '$request_uri|$status|$upstream_addr|$upstream_status|'
                  '$upstream_response_time|$upstream_connect_time|$upstream_header_time|'
                  '$upstream_response_length|$upstream_bytes_received|'
                  '$upstream_bytes_sent';
    upstream three { server %B_n1% max_fails=0; server %B_n2% max_fails=0; server %B_n3% max_fails=0; }
    upstream err { server %B_d1%; server %B_n1%; }
    upstream tmo { server %B_bh%; server %B_n2%; }
    upstream tmo2 { server %B_bh%; server %B_n2%; }
    upstream onlydead { server %B_d1%; }
    upstream onlyhole { server %B_bh%; }
    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        access_log %PREFIX%/up.log up;
        error_page 599 /x;
        location /three/ { proxy_pass http://three; }
        location /three-503/ { proxy_next_upstream error timeout http_503; proxy_pass http://three; }
        location /three-5xx/ {
            proxy_next_upstream error timeout http_500 http_502 http_503 http_504 http_429;
            proxy_pass http://three;
        }
        location /three-4xx/ { proxy_next_upstream http_403 http_404; proxy_pass http://three; }
        location /three-off/ { proxy_next_upstream off; proxy_pass http://three; }
        location /three-tries/ {
            proxy_next_upstream error timeout http_502;
            proxy_next_upstream_tries 2;
            proxy_pass http://three;
        }
        location /three-nt/ {
            proxy_next_upstream error timeout http_502;
            proxy_next_upstream_timeout 500ms;
            proxy_pass http://three;
        }
        location /three-nonidem/ {
            proxy_next_upstream error timeout http_502 non_idempotent;
            proxy_pass http://three;
        }
        location /err/ { proxy_pass http://err; }
        location /err-off/ { proxy_next_upstream off; proxy_pass http://err; }
        location /err-timeout-only/ { proxy_next_upstream timeout; proxy_pass http://err; }
        location /tmo/ { proxy_pass http://tmo; }
        location /tmo-error-only/ { proxy_next_upstream error; proxy_pass http://tmo2; }
        location /onlydead/ { proxy_pass http://onlydead; }
        location /onlyhole/ { proxy_pass http://onlyhole; }
        location /direct-dead/ { proxy_pass http://%B_d1%; }
        location /ep/ {
            proxy_pass http://onlydead;
            error_page 502 = /three/after-502;
        }
        location /ep504/ {
            proxy_pass http://onlyhole;
            error_page 504 /three/after-504;
        }
        location /noread/ { proxy_buffering off; proxy_pass http://three; }
        location /three-requnbuf/ { proxy_request_buffering off; proxy_pass http://three; }
        location /three-ih/ { proxy_next_upstream error invalid_header; proxy_pass http://three; }
    }
"""

SLOW = {"wait": 5.0}


def _hits(backends: BackendSet, marker: str) -> dict[str, list[str]]:
    return {name: [h.backend for h in backends.hits_for(addr, marker)]
            for name, addr in (("nginx", NGINX_ADDR), ("halb", HALB_ADDR))}


def check(pair: Pair, backends: BackendSet, tag: str, path: str, *, method: str = "GET",
          body: bytes = b"", expect: dict[str, object] | None = None,
          tried: int | None = None, extra: dict[str, object] | None = None) -> None:
    """One request to both; the answers, the backends that saw it and the log lines agree."""
    marker = f"m={tag}~"
    sep = "&" if "?" in path else "?"
    data = req(f"{path}{sep}{marker}", method=method, body=body)
    send: bytes | tuple[bytes, ...] = data
    if path.startswith("/three-requnbuf/"):  # the body after the header: sent as it comes
        send = (data[:len(data) - len(body)], data[len(data) - len(body):])
    case = Case(tag, send, expect or {}, **{"pause": 0.2, **(extra or {})})
    compare(pair, case)
    hits = _hits(backends, marker)
    assert hits["nginx"] == hits["halb"], f"{tag}: backends tried differ: {hits}"
    if tried is not None:  # round robin carries over from row to row: count, not names
        assert len(hits["nginx"]) == tried, f"{tag}: nginx tried {hits['nginx']}"


# (tag, path, method, expected nginx status, how many backends nginx tried)
TABLE = [
    # status-based retries: only for listed statuses
    ("s503-listed", "/three-503/failfirst/1/503", "GET", 200, 2),
    ("s503-not-listed", "/three/failfirst/1/503", "GET", 503, 1),
    ("s502-listed", "/three-5xx/failfirst/2/502", "GET", 200, 3),
    ("s500-listed", "/three-5xx/failfirst/1/500", "GET", 200, 2),
    ("s504-listed", "/three-5xx/failfirst/1/504", "GET", 200, 2),
    ("s429-listed", "/three-5xx/failfirst/1/429", "GET", 200, 2),
    ("s403-not-listed", "/three-5xx/failfirst/1/403", "GET", 403, 1),
    ("s404-listed", "/three-4xx/failfirst/1/404", "GET", 200, 2),
    ("s403-listed-all", "/three-4xx/failfirst/3/403", "GET", 403, 3),
    ("s404-listed-all", "/three-4xx/failfirst/3/404", "GET", 404, 3),
    ("all-503", "/three-5xx/failfirst/3/503", "GET", 503, 3),
    ("all-502", "/three-5xx/failfirst/3/502", "GET", 502, 3),
    ("all-500", "/three-5xx/failfirst/3/500", "GET", 500, 3),
    ("all-504", "/three-5xx/failfirst/3/504", "GET", 504, 3),
    ("all-429", "/three-5xx/failfirst/3/429", "GET", 429, 3),
    ("off-503", "/three-off/failfirst/1/503", "GET", 503, 1),
    ("off-drop", "/three-off/dropfirst/1", "GET", 502, 1),
    ("tries-2", "/three-tries/failfirst/3/502", "GET", 502, 2),
    ("tries-2-drop", "/three-tries/dropfirst/3", "GET", 502, 2),
    # errors: a connection closed or reset without an answer is retried
    ("drop", "/three/dropfirst/1", "GET", 200, 2),
    ("reset", "/three/resetfirst/1", "GET", 200, 2),
    ("drop-all", "/three/dropfirst/3", "GET", 502, 3),
    ("reset-all", "/three/resetfirst/3", "GET", 502, 3),
    ("bad-header-not-retried", "/three-5xx/bad-header", "GET", None, 1),
    ("big-header-not-listed", "/three/bighdr/10k", "GET", 502, 1),
    ("big-header-listed", "/three-ih/bighdr/10k", "GET", 502, 3),
    ("invalid-header-listed", "/three-ih/failfirst/1/200/bighdr/5k", "GET", 502, 3),
    # non-idempotent methods are not retried once sent
    ("post-drop", "/three/dropfirst/1", "POST", 502, 1),
    ("post-502", "/three-5xx/failfirst/1/502", "POST", 502, 1),
    ("patch-drop", "/three/dropfirst/1", "PATCH", 502, 1),
    ("lock-drop", "/three/dropfirst/1", "LOCK", 502, 1),
    ("put-drop", "/three/dropfirst/1", "PUT", 200, 2),
    ("delete-drop", "/three/dropfirst/1", "DELETE", 200, 2),
    ("post-nonidem", "/three-nonidem/failfirst/1/502", "POST", 200, 2),
    ("post-nonidem-drop", "/three-nonidem/dropfirst/1", "POST", 200, 2),
    ("post-connect-refused", "/err/x", "POST", 200, 1),
    # connection refused
    ("refused", "/err/x", "GET", 200, 1),
    ("refused-2", "/err/x", "GET", 200, 1),
    ("refused-off", "/err-off/x", "GET", None, None),
    ("refused-timeout-only", "/err-timeout-only/x", "GET", None, None),
    ("refused-single", "/onlydead/x", "GET", 502, 0),
    ("refused-direct", "/direct-dead/x", "GET", 502, 0),
    ("refused-error-page", "/ep/x", "GET", 200, 0),  # the redirect drops the arguments
    # read timeouts (proxy_read_timeout 600ms)
    ("read-timeout-retry", "/three/slowfirst/1/2s", "GET", 200, 2),
    ("read-timeout-off", "/three-off/slowfirst/1/2s", "GET", 504, 1),
    ("read-timeout-all", "/three/slow-header/2s", "GET", 504, 3),
    ("read-timeout-post", "/three/slowfirst/1/2s", "POST", 504, 1),
    ("next-timeout", "/three-nt/slowfirst/1/2s/failfirst/2/502", "GET", 504, 1),
    ("next-timeout-in-time", "/three-nt/failfirst/2/502", "GET", 200, 3),
    ("slow-but-in-time", "/three/slow-header/200ms", "GET", 200, 1),
    # proxy_request_buffering off: once the body started to go, no other server is tried
    ("put-unbuffered-drop", "/three-requnbuf/dropfirst/1", "PUT", 502, 1),
    ("put-unbuffered-refused-first", "/three-requnbuf/failfirst/1/502", "PUT", 502, 1),
    ("slow-body-in-time", "/three/slow-body/300ms", "GET", 200, 1),
]

# connect timeouts (proxy_connect_timeout 300ms against a full accept queue)
CONNECT = [
    ("connect-timeout-retry", "/tmo/x", 200, 1),
    ("connect-timeout-error-only", "/tmo-error-only/x", None, None),
    ("connect-timeout-single", "/onlyhole/x", 504, 0),
    ("connect-timeout-error-page", "/ep504/x", 504, 0),
]


@pytest.mark.parametrize("row", TABLE, ids=[r[0] for r in TABLE])
def test_next_upstream(pair: Pair, backends: BackendSet,
                       row: tuple[str, str, str, int | None, int | None]) -> None:
    """The rows run one after the other: round robin state carries over, so both proxies
    must have picked alike all along."""
    tag, path, method, status, tried = row
    body = b"payload" if method in ("POST", "PUT", "PATCH") else b""
    check(pair, backends, tag, path, method=method, body=body,
          expect={"status": status} if status is not None else {}, extra=SLOW, tried=tried)


def test_connect_timeouts(pair: Pair, backends: BackendSet) -> None:
    """The rows run at once: each round-robin group serves one row."""
    def one(row: tuple[str, str, int | None, int | None]) -> None:
        tag, path, status, tried = row
        check(pair, backends, tag, path, expect={"status": status} if status else {},
              tried=tried, extra=SLOW)

    with concurrent.futures.ThreadPoolExecutor(len(CONNECT)) as pool:
        for f in [pool.submit(one, row) for row in CONNECT]:
            f.result()


FAILURES = [
    # the header has gone out: the client connection is closed
    Case("reset-mid-body", req("/three/reset-mid-body"), {"closed": True}),
    Case("close-mid-body", req("/three/close-mid-body"), {"closed": True}),
    Case("close-mid-body-chunked", req("/three/close-mid-body/chunked"), {"closed": True}),
    Case("reset-mid-body-http10", req("/three/reset-mid-body", version="HTTP/1.0"),
         {"closed": True}),
    Case("read-timeout-mid-body", req("/three/slow-body/2s"), {"closed": True}, **SLOW),
    Case("reset-mid-body-unbuffered", req("/noread/reset-mid-body"), {"closed": True}),
    Case("reset-mid-body-big", req("/three/big/2m/reset-mid-body"), {"closed": True}),
]


@pytest.mark.parametrize("case", FAILURES, ids=[c.name for c in FAILURES])
def test_failure_after_header(pair: Pair, case: Case) -> None:
    compare(pair, case)


def test_zz_access_logs(pair: Pair, backends: BackendSet) -> None:
    """$upstream_addr, _status, _response_time, _connect_time, _header_time,
    _response_length, _bytes_received and _bytes_sent of every row above, in both logs
    (one wait for halb's buffered log instead of one per row). (Run apart from them, as
    xdist's worksteal may, it runs the table's rows itself.)"""
    if not same_access_logs(pair, r"[?&]m=([^~ |]+)~", "up.log"):
        for row in TABLE:
            test_next_upstream(pair, backends, row)
        assert same_access_logs(pair, r"[?&]m=([^~ |]+)~", "up.log")
