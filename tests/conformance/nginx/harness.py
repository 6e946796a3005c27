"""Side-by-side harness: the real nginx and `halb nginx` on the same config, same requests.

Both servers get the SAME configuration text and the SAME port on different loopback addresses
(nginx on 127.0.0.2:P, halb on 127.0.0.3:P), so Location headers that carry the port compare
equal; each has its own prefix directory (pid, logs). They serve the same document root, so
ETag and Last-Modified are identical.

The client is a raw socket: it sends exact bytes (one write, or several writes with a pause
between them) and parses what comes back itself — status line, headers in order with
duplicates, body by Content-Length / chunked / until close, HEAD-aware, interim 1xx responses
kept as responses of their own — then reports whether the server closed the connection after
the last response and whether a read timed out. `canonical()` turns an exchange into text with
the server token, the loopback address and Date/Server values normalized, so a mismatch reads
as a diff.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

NGINX_ADDR = "127.0.0.2"
HALB_ADDR = "127.0.0.3"
REPO = Path(__file__).resolve().parents[3]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() \
    else sys.executable

# The fixed mtime of every file in the document root: Last-Modified and ETag are predictable.
MTIME = 1_700_000_000  # Tue, 14 Nov 2023 22:13:20 GMT
MTIME_HTTP = "Tue, 14 Nov 2023 22:13:20 GMT"

# -- the document root -----------------------------------------------------------------------

BIG64 = 100_000  # > 64 KiB: streamed rather than sent with the headers
BIG1M = 1_500_000  # > 1 MiB: several sendfile/pread rounds


def _pattern(n: int, seed: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 64  # 2 KiB of noise
    return (block * (n // len(block) + 1))[:n]


def build_docroot(base: Path) -> dict[str, Path]:
    """The tree both servers serve. Returns the named directories: www (the root), alias
    (a second tree for alias), outside (target of the symlink that leaves the root)."""
    www = base / "www"
    alias = base / "aliased"
    outside = base / "outside"
    files: dict[str, bytes] = {
        "index.html": b"<html><body>root index</body></html>\n",
        "a.txt": b"hello from a.txt\n",
        "style.css": b"body { color: red; }\n",
        "app.js": b"console.log('x');\n",
        "data.json": b'{"k": 1}\n',
        "image.png": b"\x89PNG\r\n\x1a\n" + _pattern(500, 1),
        "image.JPG": _pattern(300, 2),
        "archive.tar.gz": _pattern(200, 3),
        "noext": b"no extension here\n",
        "file.unknownext": b"unknown extension\n",
        "UPPER.TXT": b"upper case extension\n",
        "empty.txt": b"",
        "range.txt": b"0123456789abcdefghijklmnopqrstuvwxyz\n",
        "big64k.bin": _pattern(BIG64, 4),
        "big1m.bin": _pattern(BIG1M, 5),
        "hello world.txt": b"spaces in the name\n",
        "caf\u00e9.txt": "caf\u00e9 \u2615\n".encode(),
        "100%.txt": b"percent sign\n",
        "dir/index.html": b"<p>dir index</p>\n",
        "dir/page.html": b"<p>dir page</p>\n",
        "dir/sub/leaf.txt": b"leaf\n",
        "dir/sub/deeper/x.txt": b"x\n",
        "dir/noidx/file.txt": b"no index here\n",
        "noindex/one.txt": b"one\n",
        "noindex/two.html": b"<b>two</b>\n",
        "noindex/a file.txt": b"spaced\n",
        "noindex/\u00fcml\u00e4ut.txt": b"umlaut\n",
        "noindex/" + "long" * 15 + ".txt": b"long name\n",
        "noindex/big.bin": _pattern(5000, 6),
        "noindex/huge.bin": _pattern(BIG1M, 7),
        "noindex/subdir/inner.txt": b"inner\n",
        "multi/index.htm": b"<p>multi htm</p>\n",
        "multi/other.txt": b"other\n",
        "both/index.html": b"<p>both html</p>\n",
        "both/index.htm": b"<p>both htm</p>\n",
        "php/index.php": b"<?php echo 1; ?>\n",
        "php/x.php": b"<?php echo 2; ?>\n",
        "images/logo.gif": b"GIF89a" + _pattern(100, 8),
        "images/photo.jpg": _pattern(400, 9),
        "images/sub/deep.png": _pattern(50, 10),
        "docs/readme.txt": b"docs readme\n",
        "docs/guide.html": b"<p>guide</p>\n",
        "docs/pic.jpg": _pattern(70, 11),
        "static/site.css": b"h1 {}\n",
        "errors/404.html": b"<p>custom not found</p>\n",
        "errors/50x.html": b"<p>custom server error</p>\n",
        "errors/generic.html": b"<p>generic error page</p>\n",
        "fallback.html": b"<p>fallback</p>\n",
        "spa/index.html": b"<p>single page app</p>\n",
        "spa/asset.js": b"var spa = 1;\n",
        "download/file.bin": _pattern(1000, 12),
        "emptydir/.keep": b"",
        "dot.dir/f.txt": b"dot dir\n",
        ".hidden": b"hidden\n",
        "internal/secret.txt": b"internal only\n",
        "encoded/a%2Fb.txt": b"literal percent two f\n",
        "encoded/a/b.txt": b"nested a slash b\n",
    }
    alias_files = {
        "hello.txt": b"from the alias tree\n",
        "index.html": b"<p>alias index</p>\n",
        "sub/inner.txt": b"alias inner\n",
        "sub/index.html": b"<p>alias sub index</p>\n",
        "img/pic.png": _pattern(64, 13),
        "img/cat.gif": _pattern(32, 14),
        "v2/data.json": b'{"v": 2}\n',
    }
    outside_files = {"secret.txt": b"outside the root\n", "dir/o.txt": b"outside dir\n"}
    for root, tree in ((www, files), (alias, alias_files), (outside, outside_files)):
        for rel, data in tree.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    (www / "emptydir" / ".keep").unlink()
    (www / "noindex" / "emptysub").mkdir()
    # symlinks inside the root: to a file and to a directory inside it
    (www / "link.txt").symlink_to("a.txt")
    (www / "dirlink").symlink_to("dir")
    # a symlink that leaves the root (halb refuses it unless `disable_symlinks off`)
    (www / "escape").mkdir()
    (www / "escape" / "out.txt").symlink_to(outside / "secret.txt")
    (www / "escape" / "in.txt").write_bytes(b"inside escape\n")
    for root in (www, alias, outside):
        for dirpath, dirnames, filenames in os.walk(root, topdown=False):
            for name in filenames + dirnames:
                os.utime(os.path.join(dirpath, name), (MTIME, MTIME), follow_symlinks=False)
            os.utime(dirpath, (MTIME, MTIME))
    return {"www": www, "alias": alias, "outside": outside}


# -- configuration ---------------------------------------------------------------------------

MAIN = """\
master_process on;
worker_processes 1;
user root;
error_log %PREFIX%/error.log info;
pid %PREFIX%/nginx.pid;
events { worker_connections 256; }
http {
    access_log %PREFIX%/access.log;
%HTTP%
}
"""


def render(http_block: str, *, prefix: Path, addr: str, ports: Sequence[int],
           dirs: dict[str, Path]) -> str:
    """The config text for one server: placeholders %ADDR% %PORT% %PORT2% (%PORT3% ... when
    more ports were asked for) %PREFIX% %WWW% %ALIAS% %OUTSIDE% filled in."""
    text = MAIN.replace("%HTTP%", http_block)
    text = text.replace("%PREFIX%", str(prefix)).replace("%ADDR%", addr)
    for i in range(len(ports), 2, -1):
        text = text.replace(f"%PORT{i}%", str(ports[i - 1]))
    text = text.replace("%PORT2%", str(ports[1])).replace("%PORT%", str(ports[0]))
    for key, path in dirs.items():
        text = text.replace(f"%{key.upper()}%", str(path))
    return text


def free_ports(n: int) -> list[int]:
    """n port numbers free on both loopback addresses."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind((NGINX_ADDR, 0))
            port = s.getsockname()[1]
        if port in ports:
            continue
        try:
            with socket.socket() as s2:
                s2.bind((HALB_ADDR, port))
        except OSError:
            continue
        ports.append(port)
    return ports


# -- processes -------------------------------------------------------------------------------


def server_token(argv: list[str]) -> str:
    """The Server header token a master started with argv announces ("nginx/1.22.1")."""
    if argv[-2:] == ["halb", "nginx"] or "halb" in argv:
        from halb import __version__

        return f"halb/{__version__}"
    out = subprocess.run([argv[0], "-v"], capture_output=True, text=True, check=False)
    m = re.search(r"nginx/[\d.]+", out.stderr + out.stdout)
    return m.group(0) if m else "nginx/1.22.1"


class ServerProcess:
    """One master process (nginx or halb) in its own session, stopped with QUIT then KILL."""

    def __init__(self, name: str, argv: list[str], prefix: Path, addr: str,
                 ports: Sequence[int]) -> None:
        self.name = name
        self.argv = argv
        self.prefix = prefix
        self.addr = addr
        self.ports = list(ports)
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = server_token(argv)

    def start(self) -> None:
        out = open(self.prefix / "stderr.log", "wb")  # noqa: SIM115 (the child owns it)
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.prefix,
                                         start_new_session=True)
        finally:
            out.close()

    def wait_ready(self, timeout: float = 15.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        pending = list(self.ports)
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   + self.logs())
            try:
                with socket.create_connection((self.addr, pending[0]), timeout=0.5):
                    pending.pop(0)
                    continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not listen on {self.addr}:{pending[0]}:\n"
                                   + self.logs())
            time.sleep(0.05)

    def logs(self, lines: int = 30) -> str:
        out = []
        for name in ("stderr.log", "error.log"):
            p = self.prefix / name
            if p.exists():
                text = p.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {self.name} {name}\n" + "\n".join(text))
        return "\n".join(out)

    def error_log_size(self) -> int:
        p = self.prefix / "error.log"
        return p.stat().st_size if p.exists() else 0

    def error_log_since(self, offset: int) -> str:
        p = self.prefix / "error.log"
        if not p.exists():
            return ""
        with open(p, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def stop(self, timeout: float = 5.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # the workers are in the master's session/process group: nothing may stay behind
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)


class Pair:
    """nginx and halb started on the same config (either may be left out)."""

    def __init__(self, http_block: str, workdir: Path, dirs: dict[str, Path],
                 nginx: str | None, halb: bool = True, nports: int = 2) -> None:
        self.ports = free_ports(nports)
        self.port = self.ports[0]
        self.servers: dict[str, ServerProcess] = {}
        specs = []
        if nginx is not None:
            specs.append(("nginx", NGINX_ADDR, [nginx]))
        if halb:
            specs.append(("halb", HALB_ADDR, [PYTHON, "-m", "halb", "nginx"]))
        for name, addr, cmd in specs:
            prefix = workdir / name
            prefix.mkdir(parents=True, exist_ok=True)
            text = render(http_block, prefix=prefix, addr=addr, ports=self.ports, dirs=dirs)
            (prefix / "nginx.conf").write_text(text)
            used = [p for p in self.ports if str(p) in text]
            argv = [*cmd, "-p", f"{prefix}/", "-c", f"{prefix}/nginx.conf", "-g", "daemon off;"]
            self.servers[name] = ServerProcess(name, argv, prefix, addr, used)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
        self.results: dict[str, dict[str, Exchange]] = {}  # prefetched, by case name
        self.fetched: set[str] = set()

    def start(self) -> None:
        try:
            for s in self.servers.values():
                s.start()
            for s in self.servers.values():
                s.wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for s in self.servers.values():
            s.stop()
        self.pool.shutdown(wait=True)

    def __getitem__(self, name: str) -> ServerProcess:
        return self.servers[name]

    def run(self, case: Case) -> dict[str, Exchange]:
        """The same exchange against every server, concurrently."""
        futures = {name: self.pool.submit(exchange, srv.addr, self._port(case), case)
                   for name, srv in self.servers.items()}
        return {name: f.result() for name, f in futures.items()}

    def _port(self, case: Case) -> int:
        return self.ports[case.port_index]

    def prefetch(self, cases: Iterable[Case], workers: int = 24) -> None:
        """Run many cases at once (each on its own connections); compare() then reads the
        answers. Cases are independent, so a table runs in the time of its slowest case."""
        todo = [c for c in cases if c.name not in self.fetched]
        self.fetched.update(c.name for c in todo)
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {(c.name, name): pool.submit(exchange, srv.addr, self._port(c), c)
                       for c in todo for name, srv in self.servers.items()}
            for (case_name, name), f in futures.items():
                self.results.setdefault(case_name, {})[name] = f.result()


# -- requests --------------------------------------------------------------------------------


def req(path: str = "/", *, method: str = "GET", host: str | None = "localhost",
        version: str = "HTTP/1.1", headers: Iterable[tuple[str, str] | str] = (),
        body: bytes = b"", length: bool | None = None) -> bytes:
    """One request's bytes. headers: (name, value) pairs or raw lines; Content-Length is added
    for a body unless length=False (or given in headers)."""
    lines = [f"{method} {path} {version}".encode("utf-8", "surrogateescape")]
    if host is not None:
        lines.append(b"Host: " + host.encode("latin-1"))
    for h in headers:
        if isinstance(h, tuple):
            lines.append(f"{h[0]}: {h[1]}".encode("utf-8", "surrogateescape"))
        else:
            lines.append(h.encode("utf-8", "surrogateescape"))
    if body and length is not False and not any(
            (h[0] if isinstance(h, tuple) else h).lower().startswith(
                ("content-length", "transfer-encoding")) for h in headers):
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(*parts: bytes, ext: str = "") -> bytes:
    out = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext.encode(), p) for p in parts if p)
    return out + b"0\r\n\r\n"


@dataclass(frozen=True)
class Case:
    """One row of a conformance table.

    send: bytes (one write) or a tuple of writes with `pause` seconds between them.
    requests: how many final responses to wait for (default: the requests found in `send`).
    heads: which of those answer a HEAD (default: from the request lines found in `send`).
    expect: extra checks on nginx's answer, to pin the oracle's behaviour: "status" (of the
    last response), "statuses", "closed", "timed_out", "header:<name>" (value or None).
    """

    name: str
    send: bytes | tuple[bytes, ...]
    expect: dict[str, object] = field(default_factory=dict)
    requests: int | None = None
    heads: tuple[bool, ...] | None = None
    pause: float = 0.05
    wait: float = 3.0  # how long a read may wait for the server
    port_index: int = 0
    close_wait: float | None = None  # after the answers, how long to wait for a close
    half_close: bool = False  # shut down the sending side after the last write
    tls: str | None = None  # a TLS client: the SNI name to send ("" for none); None: plain
    preamble: bytes = b""  # raw bytes sent before TLS starts (a PROXY protocol header)

    @property
    def payload(self) -> bytes:
        return self.send if isinstance(self.send, bytes) else b"".join(self.send)

    def methods(self) -> list[str]:
        return scan_methods(self.payload)


def scan_methods(data: bytes) -> list[str]:
    """The methods of the requests in `data`, skipping bodies by Content-Length or chunked."""
    out: list[str] = []
    i = 0
    while i < len(data):
        end = data.find(b"\r\n\r\n", i)
        if end < 0:
            if data[i:].strip():
                out.append(data[i:].split(b" ", 1)[0].decode("latin-1"))
            break
        head = data[i:end]
        out.append(head.split(b" ", 1)[0].decode("latin-1"))
        i = end + 4
        m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
        if re.search(rb"(?im)^transfer-encoding:\s*chunked\s*$", head):
            term = data.find(b"\r\n0\r\n", i - 2)  # the last chunk, then trailers
            end = -1 if term < 0 else data.find(b"\r\n\r\n", term + 2)
            i = len(data) if end < 0 else end + 4
        elif m:
            i += int(m.group(1))
    return out


# -- the client ------------------------------------------------------------------------------


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    framing: str = "length"  # length | chunked | close | none
    complete: bool = True

    def header(self, name: str) -> str | None:
        low = name.lower()
        for k, v in self.headers:
            if k.lower() == low:
                return v
        return None


@dataclass
class Exchange:
    responses: list[Response]
    closed: bool  # the server closed the connection after the last response
    timed_out: bool  # a read waited `wait` seconds for data that never came
    error: str | None = None  # reset, malformed response, ...
    trailing: bytes = b""  # bytes after the last response (none expected)
    send_error: str | None = None
    tls: str = ""  # TLS client mode: "<version> <cipher> cert=<sha256 of the DER>"

    @property
    def last(self) -> Response | None:
        return self.responses[-1] if self.responses else None

    @property
    def finals(self) -> list[Response]:
        return [r for r in self.responses if not 100 <= r.status < 200]


class _Timeout(Exception):
    pass


class _Closed(Exception):
    pass


class _Reader:
    def __init__(self, sock: socket.socket, wait: float) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.wait = wait
        self.eof = False
        self.reset = False

    def _fill(self, timeout: float | None = None) -> None:
        if self.eof:
            raise _Closed
        self.sock.settimeout(self.wait if timeout is None else timeout)
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            raise _Timeout from None
        except ConnectionResetError:
            self.eof = self.reset = True
            raise _Closed from None
        if not data:
            self.eof = True
            raise _Closed
        self.buf += data

    def line(self) -> bytes:
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                out = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return out
            if len(self.buf) > 1 << 20:
                raise ValueError("header line too long")
            self._fill()

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def rest(self) -> bytes:
        with contextlib.suppress(_Closed):
            while True:
                self._fill()
        out = bytes(self.buf)
        self.buf.clear()
        return out


def _read_response(rd: _Reader, head: bool) -> Response:
    line = rd.line()
    if not line.startswith(b"HTTP/"):  # an HTTP/0.9 answer: the bare body, ended by the close
        return Response("HTTP/0.9", 0, "", [], line + rd.rest(), framing="close")
    m = re.match(rb"(HTTP/\d\.\d) (\d{3})(?: (.*))?\r?\n$", line)
    if not m:
        raise ValueError(f"bad status line {line[:80]!r}")
    resp = Response(m.group(1).decode(), int(m.group(2)),
                    (m.group(3) or b"").decode("latin-1"), [])
    while True:
        hl = rd.line()
        if hl in (b"\r\n", b"\n"):
            break
        name, _, value = hl.decode("latin-1").rstrip("\r\n").partition(":")
        resp.headers.append((name, value.strip()))
    te = (resp.header("transfer-encoding") or "").lower()
    cl = resp.header("content-length")
    if head or resp.status in (204, 304) or 100 <= resp.status < 200:
        resp.framing = "none"
        return resp
    if te == "chunked":
        resp.framing = "chunked"
        body = bytearray()
        while True:
            size_line = rd.line()
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while rd.line() not in (b"\r\n", b"\n"):
                    pass
                break
            body += rd.exactly(size)
            rd.exactly(2)
        resp.body = bytes(body)
    elif cl is not None:
        resp.body = rd.exactly(int(cl))
    else:
        resp.framing = "close"
        resp.body = rd.rest()
    return resp


def cert_id(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()[:12]


def tls_wrap(sock: socket.socket, server_name: str, ex: Exchange) -> socket.socket:
    """The client side of TLS (no verification: the test looks at which certificate came),
    SNI `server_name` unless empty; notes the version, cipher and certificate in ex.tls."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(sock, server_hostname=server_name or None)
    der = tls.getpeercert(binary_form=True) or b""
    cipher = tls.cipher()
    ex.tls = f"{tls.version()} {cipher[0] if cipher else '-'} cert={cert_id(der)}"
    return tls


def exchange(addr: str, port: int, case: Case) -> Exchange:
    """Send a case's bytes, read the answers, and see whether the connection stays open."""
    methods = case.methods()
    expected = case.requests if case.requests is not None else max(1, len(methods))
    heads = case.heads if case.heads is not None else tuple(m == "HEAD" for m in methods)
    sock = socket.create_connection((addr, port), timeout=case.wait)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ex = Exchange([], closed=False, timed_out=False)
    if case.preamble:
        sock.sendall(case.preamble)
    if case.tls is not None:
        try:
            sock = tls_wrap(sock, case.tls, ex)
        except OSError as e:  # ssl.SSLError too
            sock.close()
            ex.error = f"TLS handshake: {type(e).__name__}"
            ex.closed = True
            return ex
    try:
        writes = [case.send] if isinstance(case.send, bytes) else list(case.send)
        for i, w in enumerate(writes):
            if i:
                time.sleep(case.pause)
            try:
                if w:
                    sock.sendall(w)
            except OSError as e:
                ex.send_error = type(e).__name__
                break
        if case.half_close:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        rd = _Reader(sock, case.wait)
        finals = 0
        try:
            while finals < expected:
                is_head = heads[finals] if finals < len(heads) else False
                resp = _read_response(rd, is_head)
                ex.responses.append(resp)
                if not 100 <= resp.status < 200:
                    finals += 1
        except _Timeout:
            ex.timed_out = True
            return ex
        except _Closed:
            ex.closed = True
            if ex.responses and ex.responses[-1] is not None and rd.buf:
                ex.trailing = bytes(rd.buf)
            if rd.reset:
                ex.error = "reset"
            elif rd.buf:
                ex.error = "incomplete response"
            return ex
        except ValueError as e:
            ex.error = str(e)
            ex.trailing = bytes(rd.buf)
            return ex
        # answered: does the connection stay open? (a close follows its response at once)
        last = ex.responses[-1] if ex.responses else None
        closing = last is None or (last.header("connection") or "").lower() != "keep-alive"
        if case.close_wait is not None:
            rd.wait = case.close_wait
        try:
            rd._fill(case.close_wait or (1.5 if closing else 0.05))
        except _Closed:
            ex.closed = True
            if rd.reset:
                ex.error = "reset"
        except _Timeout:
            pass
        ex.trailing = bytes(rd.buf)
    finally:
        sock.close()
    return ex


# -- comparison ------------------------------------------------------------------------------

_TOKENS = (
    (re.compile(rb"nginx/1\.\d+\.\d+"), b"SERVER/VERSION"),
    (re.compile(rb"halb/\d+\.\d+\.\d+"), b"SERVER/VERSION"),
    (re.compile(rb"<center>(?:nginx|halb)</center>"), b"<center>SERVER</center>"),
    (re.compile(rb"127\.0\.0\.[23]\b"), b"ADDR"),
    # multipart/byteranges boundaries: a counter nginx shares with its temp files
    (re.compile(rb"(boundary=|--)\d{20}"), rb"\1BOUNDARY"),
    # a Date header line inside bytes compared as a body (a proxied raw response)
    (re.compile(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n"),
     b"\r\nDate: DATE\r\n"),
)
IGNORED_VALUES = {"date", "server"}


def normalize_body(body: bytes) -> bytes:
    for rx, rep in _TOKENS:
        body = rx.sub(rep, body)
    return body


def _text(body: bytes) -> str:
    if len(body) <= 4096:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return f"<{len(body)} bytes sha256={hashlib.sha256(body).hexdigest()[:16]}>"


def canonical(ex: Exchange, page_delta: int = 0) -> str:
    """An exchange as text; equal text means equal answers.

    A body's Content-Length is compared as the length of the normalized body. A HEAD answer
    has no body to measure: page_delta is what normalizing the server token changes in a
    built-in page (see TOKEN_DELTAS), applied to html answers of 300 and above."""
    out: list[str] = []
    for r in ex.responses:
        body = normalize_body(r.body)
        delta = len(r.body) - len(body)
        if r.framing == "none" and r.status >= 300 and \
                (r.header("content-type") or "").startswith("text/html"):
            delta = page_delta
        out.append(f"{r.version} {r.status} {r.reason}")
        for name, value in r.headers:
            low = name.lower()
            if low in IGNORED_VALUES:
                out.append(f"{name}: *")
                continue
            if low == "content-length" and value.isdigit() and r.framing in ("length", "none"):
                value = str(int(value) - delta)
            out.append(f"{name}: {normalize_body(value.encode('latin-1')).decode('latin-1')}")
        out.append(f"[framing: {r.framing}]")
        out.append(_text(body))
        out.append("----")
    out.append(f"closed: {ex.closed}")
    if ex.tls:
        out.append(f"tls: {ex.tls}")
    if ex.timed_out:
        out.append("timed out")
    if ex.error:
        out.append(f"error: {ex.error}")
    if ex.trailing:
        out.append(f"trailing bytes: {_text(normalize_body(ex.trailing))}")
    return "\n".join(out)


def check_expect(case: Case, ex: Exchange, port: int = 0) -> None:
    """The table's own expectations, checked on nginx's answer (pins the oracle). "%PORT%" in
    an expected string is the port the pair listens on."""
    for key, want in case.expect.items():
        if isinstance(want, str):
            want = want.replace("%PORT%", str(port))
        finals = ex.finals
        if key == "status":
            got: object = finals[-1].status if finals else None
        elif key == "statuses":
            got = tuple(r.status for r in ex.responses)
        elif key == "closed":
            got = ex.closed
        elif key == "timed_out":
            got = ex.timed_out
        elif key.startswith("header:"):
            got = finals[-1].header(key[7:]) if finals else None
            if isinstance(got, str):
                got = normalize_body(got.encode("latin-1")).decode("latin-1")
        elif key == "body":
            got = normalize_body(finals[-1].body) if finals else None
        elif key == "body_contains":
            body = normalize_body(finals[-1].body) if finals else b""
            assert isinstance(want, bytes)
            assert want in body, f"{case.name}: body lacks {want!r}: {body[:300]!r}"
            continue
        else:
            raise KeyError(key)
        assert got == want, f"{case.name}: nginx gave {key}={got!r}, the table says {want!r}"


def _page_delta(token: str, full: bool) -> int:
    """How much normalizing changes a built-in page's length: "<hr><center>nginx/1.22.1"
    becomes "SERVER/VERSION", and "<center>nginx</center>" (server_tokens off) "SERVER"."""
    if full:
        return len(token) - len("SERVER/VERSION")
    return len(token.split("/")[0]) - len("SERVER")


def compare(pair: Pair, case: Case) -> dict[str, Exchange]:
    """Run a case on both servers (or take its prefetched answers) and assert they are the
    same."""
    got = pair.results.pop(case.name, None) or pair.run(case)
    n, h = canonical(got["nginx"]), canonical(got["halb"])
    if n != h:  # a HEAD answer carrying a built-in page's length: with server_tokens on/off
        for full in (True, False):
            nd, hd = (_page_delta(pair["nginx"].token, full),
                      _page_delta(pair["halb"].token, full))
            if canonical(got["nginx"], nd) == canonical(got["halb"], hd):
                n = h
                break
    if n != h:
        time.sleep(0.1)  # the halb worker may still be writing its error log line
        first = case.payload.split(b"\r\n", 1)[0].decode("latin-1")[:200]
        log = [ln for ln in pair["halb"].error_log_since(0).splitlines()
               if f'request: "{first}' in ln][-5:]
        raise AssertionError(
            f"{case.name}: halb differs from nginx\n"
            f"request: {case.payload[:600]!r}\n"
            f"=== nginx\n{n}\n=== halb\n{h}\n"
            f"--- halb error.log lines about this request line:\n" + "\n".join(log))
    check_expect(case, got["nginx"], pair.ports[case.port_index])
    return got


def ids(cases: Iterable[object]) -> list[str]:
    """Test ids: the case names (also of cases wrapped in pytest.param)."""
    out = []
    for c in cases:
        case = c.values[0] if hasattr(c, "values") else c  # type: ignore[attr-defined]
        assert isinstance(case, Case)
        out.append(case.name)
    return out


# -- proxy tests: access log lines -----------------------------------------------------------

_LOG_TIMES = re.compile(r"\b\d+\.\d{3}\b")


def access_lines(server: ServerProcess, marker: str, name: str = "access.log",
                 want: int = 1, timeout: float = 3.0) -> list[str]:
    """The lines of a server's access log that contain `marker` (waiting up to `timeout` for
    `want` of them: a worker logs after it has answered), with times ("0.012") as "T"."""
    path = server.prefix / name
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        lines = [_LOG_TIMES.sub("T", ln) for ln in text.splitlines() if marker in ln]
        if len(lines) >= want or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def same_access_logs(pair: Pair, pattern: str, name: str = "access.log",
                     unordered: bool = False) -> int:
    """Every line of both servers' access logs matching `pattern` (a regex capturing the
    line's marker), compared marker by marker (sorted when `unordered`), times as "T".
    Waits for halb's buffered log (flushed at least once a second) to hold every marker
    nginx logged. Returns how many markers nginx logged."""
    rx = re.compile(pattern)

    def read(srv: ServerProcess) -> dict[str, list[str]]:
        path = srv.prefix / name
        out: dict[str, list[str]] = {}
        for ln in (path.read_text(errors="replace") if path.exists() else "").splitlines():
            m = rx.search(ln)
            if m:
                out.setdefault(m.group(1), []).append(_LOG_TIMES.sub("T", ln))
        if unordered:  # requests that ran concurrently log in any order
            for lines in out.values():
                lines.sort()
        return out

    want = read(pair["nginx"])
    deadline = time.monotonic() + 3.0
    while True:
        got = read(pair["halb"])
        if all(len(got.get(k, ())) >= len(v) for k, v in want.items()) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.1)
    diffs = [f"{k}:\n  nginx {want.get(k)}\n  halb  {got.get(k)}"
             for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
    assert not diffs, "access logs differ:\n" + "\n".join(diffs)
    return len(want)
