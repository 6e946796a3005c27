"""HTTP_GET (and SSL_GET through ssl.py): one url checked as keepalived's check_http.c does it
(I/O only; the parsing helpers are plain functions).

The request is keepalived's, byte for byte:

    GET <path> HTTP/1.<0|1>\\r\\nUser-Agent: KeepAliveClient\\r\\n[Connection: close\\r\\n]
    Host: <virtualhost, or connect_ip:connect_port>\\r\\n\\r\\n

The response is read until the server closes the connection, each read within connect_timeout
(as keepalived; HTTP/1.0 servers close, 1.0C and 1.1 ask them to). The status code comes from
the status line ("HTTP/1.1 200 OK": three digits between spaces), must be one of the url's
status_code set (2xx by default), and with `digest` the MD5 of the body (the first
Content-Length bytes when the header is there) must match. Failures carry keepalived's words
("Timeout connecting", "HTTP status code error to", "MD5 digest error to", ...).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl as _ssl

from halb.config.keepalived_lvs_model import Checker, Url
from halb.health.events import ProbeResult
from halb.health.probes.tcp import Unavailable, close_stream, connect

MAX_HEADER = 64 * 1024
CONTENT_LENGTH = b"Content-Length: "


def request(checker: Checker, url: Url) -> bytes:
    host = checker.host_for(url)
    if host is None:
        addr = str(checker.connect_ip)
        addr = f"[{addr}]" if ":" in addr else addr
        host = f"{addr}:{checker.connect_port}"
    minor = 1 if checker.http_protocol == "1.1" else 0
    close = "Connection: close\r\n" if checker.http_protocol in ("1.0C", "1.1") else ""
    return (f"GET {url.path} HTTP/1.{minor}\r\nUser-Agent: KeepAliveClient\r\n{close}"
            f"Host: {host}\r\n\r\n").encode("latin-1")


def status_code(head: bytes) -> int:
    """keepalived's extract_status_code: 0 unless "<version> NNN ..."."""
    i = 0
    while i < len(head) and head[i:i + 1] not in (b" ", b"\r"):
        i += 1
    if head[i:i + 1] != b" ":
        return 0
    i += 1
    code = head[i:i + 3]
    if i + 3 >= len(head) or head[i:i + 1] == b" " or head[i + 3:i + 4] != b" ":
        return 0
    return int(code) if code.isdigit() else 0


def content_length(head: bytes) -> int | None:
    at = head.find(CONTENT_LENGTH)
    if at < 0:
        return None
    rest = head[at + len(CONTENT_LENGTH):]
    digits = len(rest) - len(rest.lstrip(b"0123456789"))
    if digits == 0 or rest[digits:digits + 1] not in (b"\r", b"\n", b""):
        return None
    return int(rest[:digits])


class Response:
    """The response as it streams in: the head, then the body's MD5."""

    def __init__(self) -> None:
        self.buffer = b""
        self.head: bytes | None = None
        self.length: int | None = None
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.body_bytes = 0

    def feed(self, data: bytes) -> None:
        if self.head is None:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = self.buffer[-MAX_HEADER:]
                return
            self.head, data = self.buffer[:end + 4], self.buffer[end + 4:]
            self.buffer = b""
            self.length = content_length(self.head)
        if self.length is not None:
            data = data[:max(0, self.length - self.body_bytes)]
        self.md5.update(data)
        self.body_bytes += len(data)


def judge(url: Url, resp: Response) -> ProbeResult:
    """http_handle_response."""
    if resp.head is None:
        return ProbeResult(ok=False, message="Read, no data received from ")
    if status_code(resp.head) not in url.status_codes:
        return ProbeResult(ok=False, message="HTTP status code error to")
    if url.digest is not None:
        if resp.md5.hexdigest() != url.digest:
            return ProbeResult(ok=False, message="MD5 digest error to")
        return ProbeResult(ok=True, message="MD5 digest")
    return ProbeResult(ok=True, message="HTTP status code")


async def http_get(checker: Checker, url_index: int,
                   tls: _ssl.SSLContext | None = None) -> ProbeResult:
    url = checker.urls[url_index]
    timeout = checker.connect_timeout
    proto = "SSL" if tls is not None else "HTTP"
    try:
        sock = await connect(checker)
    except Unavailable as e:
        return ProbeResult(unavailable=True, message=f"WEB {e}. Rescheduling.")
    except TimeoutError:
        return ProbeResult(ok=False, message="Timeout connecting")
    except OSError:
        return ProbeResult(ok=False, message="Connection failed")
    writer: asyncio.StreamWriter | None = None
    try:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    sock=sock, ssl=tls, server_hostname=(checker.sni_for(url) or "")
                    if tls is not None else None)
        except TimeoutError:
            return ProbeResult(ok=False, message="Timeout connecting")
        except (OSError, _ssl.SSLError):
            return ProbeResult(ok=False, message="SSL handshake/communication error "
                                                 "connecting to")
        try:
            writer.write(request(checker, url))
            async with asyncio.timeout(timeout):
                await writer.drain()
        except TimeoutError:
            return ProbeResult(ok=False, message="Timeout WEB write")
        except OSError:
            return ProbeResult(ok=False, message="Cannot send get request to")
        resp = Response()
        first = True
        while True:
            try:
                async with asyncio.timeout(timeout):
                    data = await reader.read(65536)
            except TimeoutError:
                return ProbeResult(ok=False, message="Timeout WEB read" if first
                                   else f"Timeout {proto} read")
            except (OSError, _ssl.SSLError):
                return ProbeResult(ok=False, message="SSL read error from" if tls is not None
                                   else "Read error with")
            first = False
            if not data:
                break
            resp.feed(data)
        return judge(url, resp)
    finally:
        if writer is not None:
            await close_stream(writer)
        else:
            sock.close()
