"""A request head still open after a read (l7/http_lenient.py _head_open), in process with a
fake transport. HTTP/0.9 requests (a request line without a version): the line ends the request
however the reads split it, the answer is the bare body, nothing after it is read, and a line that
has a version is never taken for one. A header line longer than a large header buffer: 494 once
it fills one, what is kept between reads bounded. A chunked body's framing without data
(_chunked_open): bounded. Side by side with nginx: tests/conformance/nginx/test_side_bad_input.py
(http09-*, *-unended, *-trickled), test_side_connection.py (chunked-*-40k)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from halb.testing.l7_rig import ServerRig

CONFIG = """events {{}} http {{ log_format t '$request|$server_protocol|$status|$bytes_sent';
 access_log {log} t;
 server {{ listen 127.0.0.1:9; server_name localhost;
   location / {{ return 200 "uri=$uri args=$args proto=[$server_protocol]\\n"; }}
   location /r404 {{ return 404; }} }} }}"""

BODY = b"uri=/a args=x=1 proto=[]\n"


class Rig(ServerRig):
    def __init__(self, tmp: Path) -> None:
        self.log = tmp / "access.log"
        super().__init__(CONFIG.format(log=self.log))

    def feed(self, *pieces: bytes) -> bytes:
        for p in pieces:
            if not self.client.closed:
                self.conn.data_received(p)
        self.turn()
        return self.client.take()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with Rig(tmp_path) as r:
        yield r


@pytest.mark.parametrize("pieces", [
    (b"GET /a?x=1\r\n",),
    (b"GET /a?x=1\n",),
    (b"GET /a?x=1", b"\r\n"),
    (b"GET /a", b"?x=1\r", b"\n"),
    (b"G", b"ET /a?x", b"=1", b"\r\n"),
    (b"GET /a?x=1\r\n\r\n",),  # more after the line: read again line by line
    (b"GET /a?x=1\r\nHost: localhost\r\n\r\n",),
    (b"GET /a?x=1  \r\n",),  # spaces before the end (llhttp refuses them, nginx does not)
], ids=["whole", "bare-lf", "split-before-crlf", "split-cr-lf", "split-four", "then-crlf",
        "then-header", "trailing-spaces"])
def test_the_line_ends_the_request_and_the_body_comes_bare(rig: Rig,
                                                           pieces: tuple[bytes, ...]) -> None:
    assert rig.feed(*pieces) == BODY
    assert rig.client.closed


def test_the_access_log_line(rig: Rig) -> None:
    rig.feed(b"GET /a?x=1\r\n")
    assert rig.log.read_text() == f"GET /a?x=1||200|{len(BODY)}\n"  # ($request: no version)


def test_nothing_after_it_is_read(rig: Rig) -> None:
    assert rig.feed(b"GET /a?x=1\r\n", b"GET /b HTTP/1.1\r\nHost: localhost\r\n\r\n") == BODY
    assert rig.client.closed


def test_after_a_keepalive_request(rig: Rig) -> None:
    out = rig.feed(b"GET /k HTTP/1.1\r\nHost: localhost\r\n\r\nGET /a?x=1\r\n")
    first, _, rest = out.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK")
    assert rest == b"uri=/k args= proto=[HTTP/1.1]\n" + BODY
    assert rig.client.closed


def test_only_get(rig: Rig) -> None:
    out = rig.feed(b"POST /a\r\n")
    assert out.startswith(b"<html>") and b"400 Bad Request" in out  # the page, no header
    assert rig.client.closed or rig.client.eof  # (closed, or lingering after a FIN)


def test_an_error_page_comes_bare(rig: Rig) -> None:
    out = rig.feed(b"GET /r404\r\n")
    assert out.startswith(b"<html>") and b"404 Not Found" in out


@pytest.mark.parametrize("pieces", [
    (b"GET /a HTTP/1.1", b"\r\nHost: localhost\r\n\r\n"),
    (b"GET /a HTTP/1.1\r\n", b"Host: localhost\r\n\r\n"),
    (b"GET /a HTTP/1.1\r\nHo", b"st: localhost\r\n", b"\r\n"),
    (b"GET /a ", b"HTTP/1.1\r\n", b"Host: localhost\r\n\r\n"),
])
def test_a_line_with_a_version_is_not_http09(rig: Rig, pieces: tuple[bytes, ...]) -> None:
    out = rig.feed(*pieces)
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"proto=[HTTP/1.1]\n")
    assert not rig.client.closed


def test_a_version_split_off_after_an_earlier_request(rig: Rig) -> None:
    """llhttp keeps the previous message's version: the bytes decide, not get_http_version."""
    out = rig.feed(b"GET /k HTTP/1.1\r\nHost: localhost\r\n\r\nGET /a HTTP/1.0",
                   b"\r\n", b"\r\n")
    assert out.count(b"HTTP/1.1 200 OK") == 2
    assert out.endswith(b"uri=/a args= proto=[HTTP/1.0]\n")


def test_explicit_http09_is_400_with_a_header(rig: Rig) -> None:
    out = rig.feed(b"GET /a HTTP/0.9\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_byte_by_byte(rig: Rig) -> None:
    line = b"GET /a?x=1\r\n"
    assert rig.feed(*(line[i:i + 1] for i in range(len(line)))) == BODY


def test_a_trickled_header_line_is_answered_once_it_fills_a_buffer(rig: Rig) -> None:
    """nginx's 494 as soon as the line is longer than a large header buffer, not at its end
    (llhttp would gather it whole); what is kept of it between reads stays bounded."""
    rig.feed(b"GET /a HTTP/1.1\r\nX-Long: ")
    limit = rig.conn.conf.large_client_header_buffers[1]
    for _ in range(limit // 1000):
        rig.conn.data_received(b"v" * 1000)
        part = rig.conn.line_part
        assert part is not None and len(part[2]) <= limit
    assert rig.client.take() == b""
    out = rig.feed(b"v" * 1000)
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Request Header Or Cookie Too Large" in out


CHUNKED = b"POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_a_trickled_trailer_line_is_refused_after_the_framing_bound(rig: Rig) -> None:
    """httptools gathers a trailer line again on every read: more than CHUNK_QUIET bytes of
    framing in a row without data are refused, so the copying stays bounded."""
    from halb.l7.http_lenient import CHUNK_QUIET

    assert rig.feed(CHUNKED + b"3\r\nabc\r\n0\r\nX-Trailer: ").startswith(b"HTTP/1.1 200")
    sent = 0
    while not rig.client.closed and sent <= 2 * CHUNK_QUIET:
        rig.conn.data_received(b"v" * 1000)
        sent += 1000
    assert rig.client.closed and CHUNK_QUIET < sent <= CHUNK_QUIET + 2000


def test_many_small_chunks_in_many_reads_are_not_framing_alone(rig: Rig) -> None:
    """Reads of chunk headers alone between reads of data: the data resets the count."""
    rig.conn.data_received(CHUNKED)
    for _ in range(3000):  # 3000 x 40 bytes of chunk extensions: 120 KB of framing in all
        rig.conn.data_received(b"1;" + b"e" * 35 + b"\r\n")
        rig.conn.data_received(b"x\r\n")
    out = rig.feed(b"0\r\nX-T: 1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and not rig.client.closed
