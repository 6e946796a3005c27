"""halb's nginx balancers against the real nginx: same upstream, same requests, same backend.

Four tiny HTTP backends (threads in this process, 127.0.0.1, free ports) answer with their own
name; a query string makes one of them answer 502 (`fail=a`), 404 (`nf=a`) or slowly
(`slow=1`). nginx runs single-process (`master_process off`), so its per-worker balancer state
is the whole state, with one `upstream` block per scenario and proxy_next_upstream covering 502
and 404. Each scenario sends sequential requests to nginx and replays the same requests through
halb's balancer (pick, the backend's outcome, release, retry while tries remain); the answering
backend of every request must be the same. `random` draws from nginx's own random() stream, so
only its shares are compared (they tell which draw `two` keeps on a tie); `least_time` is not in
nginx 1.22.
"""

from __future__ import annotations

import contextlib
import http.server
import random as stdlib_random
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from halb.balancing import Balancer, Outcome, Peer, PickContext, create

pytestmark = pytest.mark.peer

NAMES = "abcd"


# -- backends --------------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Backend

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        me = self.server.label
        self.server.hits += 1
        status = 200
        if me in query.get("drop", [""])[0].split(","):
            self.close_connection = True  # no response at all: nginx counts an error
            return
        if me in query.get("fail", [""])[0].split(","):
            status = 502
        elif me in query.get("nf", [""])[0].split(","):
            status = 404
        if query.get("slow"):
            self.server.slow_started.set()
            self.server.release_slow.wait(10)
        body = me.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Backend(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, label: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.label = label
        self.hits = 0
        self.slow_started = threading.Event()
        self.release_slow = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


# -- the scenarios' upstream blocks ---------------------------------------------------------

@dataclass
class Server:
    label: str
    params: dict[str, Any] = field(default_factory=dict)  # weight, max_fails, down, backup...

    def directive(self, addr: str) -> str:
        flags = []
        for k, v in self.params.items():
            if v is True:
                flags.append(k)
            elif k == "fail_timeout":
                flags.append(f"{k}={v}s")
            else:
                flags.append(f"{k}={v}")
        return " ".join(["server", addr, *flags]) + ";"


@dataclass
class Upstream:
    method: str  # nginx directive ("" for round robin)
    servers: list[Server]
    algorithm: str  # halb's name
    params: dict[str, Any] = field(default_factory=dict)


def _s(spec: str) -> list[Server]:
    """"a:5 b c:2:backup d:down" -> servers."""
    out = []
    for item in spec.split():
        label, *rest = item.split(":")
        params: dict[str, Any] = {}
        for r in rest:
            if r in ("down", "backup"):
                params[r] = True
            elif "=" in r:
                k, v = r.split("=")
                params[k] = int(v)
            else:
                params["weight"] = int(r)
        out.append(Server(label, params))
    return out


UPSTREAMS: dict[str, Upstream] = {
    "rr531": Upstream("", _s("a:5 b c"), "round_robin"),
    "rr321": Upstream("", _s("a:3 b:2 c"), "round_robin"),
    "rrbackup": Upstream("", _s("a:down b:down c:backup d:2:backup"), "round_robin"),
    "rrfail": Upstream("", _s("a:2:max_fails=1:fail_timeout=1 b:max_fails=1:fail_timeout=1"),
                       "round_robin"),
    "rrallfail": Upstream("", _s("a b"), "round_robin"),
    "rralldrop": Upstream("", _s("a b"), "round_robin"),
    "iphash": Upstream("ip_hash;", _s("a b c"), "ip_hash"),
    "iphashw": Upstream("ip_hash;", _s("a:3 b c:2 d"), "ip_hash"),
    "iphashdown": Upstream("ip_hash;", _s("a b:down c d"), "ip_hash"),
    "hash": Upstream("hash $arg_k;", _s("a b c"), "hash"),
    "hashw": Upstream("hash $arg_k;", _s("a:2 b c"), "hash"),
    "hashdown": Upstream("hash $arg_k;", _s("a b:down c d"), "hash"),
    "chash": Upstream("hash $arg_k consistent;", _s("a b c"), "hash", {"consistent": True}),
    "chashw": Upstream("hash $arg_k consistent;", _s("a:2 b c"), "hash", {"consistent": True}),
    "chashdown": Upstream("hash $arg_k consistent;", _s("a b:down c d"), "hash",
                          {"consistent": True}),
    "rnd": Upstream("random;", _s("a:3 b"), "random"),
    "rnd2": Upstream("random two least_conn;", _s("a:3 b"), "random", {"two": True}),
    "lc321": Upstream("least_conn;", _s("a:3 b:2 c"), "least_conn"),
    "lcslow": Upstream("least_conn;", _s("a b c:2"), "least_conn"),
    "lcbackup": Upstream("least_conn;", _s("a:down b:down c:backup d:3:backup"), "least_conn"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(prefix: Path, port: int, backends: dict[str, _Backend]) -> str:
    ups, locs = [], []
    for name, up in UPSTREAMS.items():
        lines = [f"    upstream {name} {{"]
        if up.method:
            lines.append(f"        {up.method}")
        lines += [f"        {s.directive(backends[s.label].addr)}" for s in up.servers]
        lines.append("    }")
        ups.append("\n".join(lines))
        locs.append(f"        location /{name}/ {{ proxy_pass http://{name}; }}")
    temp = "\n".join(f"    {d}_temp_path {prefix}/tmp/{d};"
                     for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
master_process off;
worker_processes 1;
error_log {prefix}/error.log info;
pid {prefix}/nginx.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
{temp}
    proxy_next_upstream error timeout http_502 http_404;
{chr(10).join(ups)}
    server {{
        listen 127.0.0.1:{port};
{chr(10).join(locs)}
    }}
}}
"""


class Lab:
    """The backends and nginx, started once per module on first use."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.backends: dict[str, _Backend] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.failed: BaseException | None = None

    def start(self, nginx: str) -> None:
        if self.proc is not None:
            return
        if self.failed is not None:
            raise RuntimeError("nginx did not start (see the first failure)") from self.failed
        try:
            for label in NAMES:
                b = _Backend(label)
                self.backends[label] = b
                b.thread.start()
            prefix = self.workdir
            (prefix / "tmp").mkdir(exist_ok=True)
            self.port = _free_port()
            (prefix / "nginx.conf").write_text(_config(prefix, self.port, self.backends))
            with open(prefix / "stderr.log", "wb") as out:
                self.proc = subprocess.Popen(
                    [nginx, "-p", f"{prefix}/", "-c", f"{prefix}/nginx.conf"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True)
            deadline = time.monotonic() + 10
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError("nginx exited: " + (prefix / "stderr.log").read_text()
                                       + (prefix / "error.log").read_text())
                with contextlib.suppress(OSError), \
                        socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not listen")
                time.sleep(0.05)
        except BaseException as e:
            self.failed = e
            raise

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None
        for b in self.backends.values():
            b.release_slow.set()
            b.shutdown()
            b.server_close()
            b.thread.join(5)
        self.backends.clear()

    # -- requests to nginx ---------------------------------------------------------------

    def get(self, upstream: str, query: str = "", source: str | None = None) -> str:
        """One request through nginx; the answer as a token (see `token`)."""
        path = f"/{upstream}/x" + (f"?{query}" if query else "")
        src = (source, 0) if source else None
        with socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                      source_address=src) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: t\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        text = body.decode(errors="replace")
        return token(status, text if text in NAMES else None)

    def hits(self) -> dict[str, int]:
        return {k: b.hits for k, b in self.backends.items()}


def token(status: int, label: str | None) -> str:
    """'a' (200 from a), 'a!' (502 from a), 'a?' (404 from a), '-' (nginx's own 502)."""
    if label is None:
        return "-"
    return label + {200: "", 502: "!", 404: "?"}[status]


# -- halb's side -----------------------------------------------------------------------------

class Sim:
    """halb's balancer for one scenario, fed the same requests."""

    def __init__(self, lab: Lab, name: str) -> None:
        up = UPSTREAMS[name]
        self.labels: dict[int, str] = {}
        primary: list[Peer] = []
        backup: list[Peer] = []
        for s in up.servers:
            addr = lab.backends[s.label].addr
            host, port = addr.rsplit(":", 1)
            p = dict(s.params)
            is_backup = p.pop("backup", False)
            peer = Peer(addr, host=host, port=int(port), **p)
            self.labels[id(peer)] = s.label
            (backup if is_backup else primary).append(peer)
        self.balancer: Balancer = create(up.algorithm, primary, backup, **up.params)
        self.rng = stdlib_random.Random(2024)

    def get(self, query: str = "", client: bytes | None = None, key: str | None = None,
            now: float | None = None) -> str:
        """nginx's proxy side as far as balancing sees it: an error (no response) is freed as
        FAILED; a 502 (404) is freed as FAILED (NEXT) and retried while tries remain, but on
        the last try it is passed to the client and freed as a success (state 0)."""
        q = urllib.parse.parse_qs(query)
        drop = q.get("drop", [""])[0].split(",")
        fail = q.get("fail", [""])[0].split(",")
        nf = q.get("nf", [""])[0].split(",")
        t = time.time() if now is None else now
        ctx = PickContext(now=t, rng=self.rng, client=client, key=key)
        tries = self.balancer.tries()
        while tries:
            peer = self.balancer.pick(ctx)
            if peer is None:
                return "-"
            label = self.labels[id(peer)]
            last = tries == 1
            if label in drop:
                self.balancer.release(peer, Outcome.FAILED, t)
                answer = "-"
            elif label in fail or label in nf:
                answer = label + ("!" if label in fail else "?")
                if last:
                    self.balancer.release(peer, Outcome.SUCCESS, t)
                    return answer
                self.balancer.release(peer, Outcome.FAILED if label in fail else Outcome.NEXT, t)
            else:
                self.balancer.release(peer, Outcome.SUCCESS, t)
                return label
            tries -= 1
        return answer


# -- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def _lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("balancing"))
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def lab(nginx_binary: str, _lab: Lab) -> Lab:
    _lab.start(nginx_binary)
    return _lab


def both(lab: Lab, name: str, requests: Sequence[dict[str, Any]],
         halb_args: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
         sim: Sim | None = None) -> tuple[list[str], list[str]]:
    """The same requests to nginx and to halb's balancer: (nginx's answers, halb's)."""
    sim = sim or Sim(lab, name)
    got, want = [], []
    for r in requests:
        got.append(lab.get(name, r.get("query", ""), r.get("source")))
        want.append(sim.get(r.get("query", ""), **(halb_args(r) if halb_args else {})))
    return got, want


# -- the comparisons -------------------------------------------------------------------------

@pytest.mark.parametrize("name,n", [("rr531", 21), ("rr321", 18), ("rrbackup", 9),
                                    ("lc321", 18), ("lcbackup", 12)])
def test_sequence_is_nginx_s(lab: Lab, name: str, n: int) -> None:
    got, want = both(lab, name, [{}] * n)
    assert "".join(got) == "".join(want)


def test_round_robin_5_1_1_is_the_smooth_sequence(lab: Lab) -> None:
    got, _ = both(lab, "rr531", [{}] * 7)
    assert "".join(got) == "aabacaa"


def test_failure_fail_timeout_and_404_recovery(lab: Lab) -> None:
    """a fails (502) and sits out fail_timeout; after it, a 404 from a (NGX_PEER_NEXT) marks it
    live again as a success does, so a is chosen at once afterwards."""
    sim = Sim(lab, "rrfail")
    got, want = [], []

    def step(query: str) -> None:
        got.append(lab.get("rrfail", query))
        want.append(sim.get(query))

    step("fail=a")
    step("")
    step("")
    time.sleep(2.5)  # > fail_timeout (1 s) in whole seconds, whatever the fraction
    for _ in range(3):
        step("nf=a")
    for _ in range(6):
        step("")
    assert got == want
    assert "a" in got[-6:]


def test_last_try_502_is_not_a_failure(lab: Lab) -> None:
    """A 502 on the last try goes to the client and is freed as a success: b stays live."""
    got, want = both(lab, "rrallfail", [{"query": "fail=a,b"}, {}, {}])
    assert got == want == ["b!", "b", "b"]


def test_all_failed_stays_failed(lab: Lab) -> None:
    """Both peers fail (no response): the next request finds no live upstream (nginx 1.22 no
    longer resets fails when every peer failed) and no backend is contacted."""
    sim = Sim(lab, "rralldrop")
    got, want = both(lab, "rralldrop", [{"query": "drop=a,b"}], sim=sim)
    before = lab.hits()
    more, more_want = both(lab, "rralldrop", [{}, {}], sim=sim)
    assert lab.hits() == before
    assert got + more == want + more_want == ["-", "-", "-"]


CLIENTS = [f"127.{(i * 37) % 256}.{(i * 91 + 7) % 256}.{1 + i % 250}" for i in range(32)]


@pytest.mark.parametrize("name", ["iphash", "iphashw", "iphashdown"])
def test_ip_hash_maps_clients_like_nginx(lab: Lab, name: str) -> None:
    got, want = both(lab, name, [{"source": c} for c in CLIENTS],
                     lambda r: {"client": socket.inet_aton(r["source"])})
    assert got == want
    assert len(set(got)) > 1


# 1000 keys (issue 3): generated words of several shapes, plus hand-picked awkward ones
KEYS = [f"key{i}" for i in range(600)] + [f"user/{i * 7919 % 100000}" for i in range(300)] + [
    f"/static/{i:x}.png" for i in range(90)] + [
    "user/42", "a%20b", "x", "0", "/index.html", "A-much-longer-key-with-dashes", "42", "ζ",
    "k=v", ";"]


@pytest.mark.parametrize("name", ["hash", "hashw", "hashdown", "chash", "chashw", "chashdown"])
def test_hash_maps_keys_like_nginx(lab: Lab, name: str) -> None:
    requests = [{"query": "k=" + urllib.parse.quote(k, safe="/%=;"), "key": k} for k in KEYS]
    got, want = both(lab, name, requests, lambda r: {"key": r["query"][2:]})
    assert got == want
    assert len(set(got)) > 1


@pytest.mark.parametrize("name", ["hash", "chash"])
def test_hash_empty_key_is_round_robin(lab: Lab, name: str) -> None:
    got, want = both(lab, name, [{"query": "k="}] * 6, lambda r: {"key": ""})
    assert got == want


def test_least_conn_with_a_request_in_flight(lab: Lab) -> None:
    """One slow request holds a connection while sequential ones are balanced around it."""
    sim = Sim(lab, "lcslow")
    ctx = PickContext(now=time.time(), rng=stdlib_random.Random(0))
    slow_peer = sim.balancer.pick(ctx)
    assert slow_peer is not None
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(lab.get("lcslow", "slow=1")))
    thread.start()
    try:
        slow_backend = lab.backends[sim.labels[id(slow_peer)]]
        assert slow_backend.slow_started.wait(5), "nginx sent the slow request elsewhere"
        got = [lab.get("lcslow") for _ in range(8)]
        want = [sim.get() for _ in range(8)]
    finally:
        for b in lab.backends.values():
            b.release_slow.set()
        thread.join(10)
        for b in lab.backends.values():
            b.release_slow.clear()
            b.slow_started.clear()
    sim.balancer.release(slow_peer, Outcome.SUCCESS, time.time())
    assert got == want
    assert result == [sim.labels[id(slow_peer)]]
    got_after = [lab.get("lcslow") for _ in range(8)]
    assert got_after == [sim.get() for _ in range(8)]


@pytest.mark.parametrize("name,share", [("rnd", 0.75), ("rnd2", 0.25)])
def test_random_shares(lab: Lab, name: str, share: float) -> None:
    """Weights 3:1 with sequential requests (conns always equal). Plain random gives a 3/4 of
    the requests; `two` ties on every request and nginx keeps the SECOND draw, which is b
    whenever the first was a: a gets only 1/4 (3/4 if the first draw were kept)."""
    got, want = both(lab, name, [{}] * 300)
    for answers in (got, want):
        assert abs(answers.count("a") / len(answers) - share) < 0.1, answers
