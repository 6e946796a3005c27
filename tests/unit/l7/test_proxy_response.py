"""The upstream response parser (l7/proxy_response.py): nginx's status line and header rules,
and the body framings, fed whole and byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halb.l7.proxy_response import (
    CHUNKED,
    DONE,
    EMPTY,
    HTTP09,
    INVALID,
    LENGTH,
    NEED_MORE,
    TOO_BIG,
    UNTIL_CLOSE,
    BodyReader,
    ResponseHead,
    parse_head,
)


@pytest.mark.parametrize(("data", "line"), [
    (b"HTTP/1.1 200 OK\r\n\r\n", "200 OK"),
    (b"HTTP/1.1 200\r\n\r\n", "200"),
    (b"HTTP/1.0 404 Not  Found \r\n\r\n", "404 Not  Found "),
    (b"HTTP/1.1  599 Custom\r\n\r\n", "599 Custom"),
    (b"HTTP/1.1 403.1 Forbidden\r\n\r\n", "403.1 Forbidden"),
    (b"HTTP/1.1 200 OK\n\n", "200 OK"),
    (b"HTTP/12.34 200 OK\r\n\r\n", "200 OK"),
])
def test_status_lines(data: bytes, line: str) -> None:
    status, head, _ = parse_head(data, 4096)
    assert status == DONE and head is not None
    assert head.status_line == line
    assert head.size == len(data)


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 2OO Nope\r\n\r\n", b"ICY 200 OK\r\n\r\n", b"http/1.1 200 OK\r\n\r\n",
    b"HTTP/0.9 200 OK\r\n\r\n", b"HTTP/1.1 20\r\n\r\n", b"HTTP/1.1 2000\r\n\r\n",
    b"HTTP/1.1 200 OK\rX\r\n\r\n", b"<html>", b"HX",
])
def test_not_http_is_http09(data: bytes) -> None:
    assert parse_head(data, 4096)[0] == HTTP09


@pytest.mark.parametrize("data", [b"H", b"HTTP/1", b"HTTP/1.1 20", b"HTTP/1.1 200 OK\r\n",
                                  b"HTTP/1.1 200 OK\r\nA: b\r\n"])
def test_partial_needs_more(data: bytes) -> None:
    assert parse_head(data, 4096)[0] == NEED_MORE


def test_headers_and_their_meaning() -> None:
    data = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  spaced  \r\nNoColon\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: Keep-Alive, Close\r\n"
            b"X_Under: 1\r\n\r\nbody")
    status, head, _ = parse_head(data, 4096)
    assert status == DONE and head is not None
    assert head.headers == [("Content-Length", "5"), ("X-A", "spaced"), ("NoColon", ""),
                            ("Content-Length", "7"), ("Connection", "Keep-Alive, Close"),
                            ("X_Under", "1")]
    assert head.content_length == 7 and head.connection_close
    assert head.get("x-a") == "spaced" and head.get("nope") is None
    assert data[head.size:] == b"body"


def test_framing_headers() -> None:
    _, head, _ = parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: x\r\n\r\n", 4096)
    assert head is not None and head.content_length == -1 and head.connection_close
    _, head, _ = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n"
                            b"Transfer-Encoding: gzip, chunked\r\n\r\n", 4096)
    assert head is not None and head.chunked and head.content_length == -1
    assert not head.connection_close


@pytest.mark.parametrize("line", [b"Bad Header: x", b": x", b"A\x01B: x", b"A: b\rc",
                                  b"A: b\x00"])
def test_invalid_header_lines(line: bytes) -> None:
    status, _, message = parse_head(b"HTTP/1.1 200 OK\r\n" + line + b"\r\n\r\n", 4096)
    assert status == INVALID and message.startswith("upstream sent invalid header")


def test_too_big() -> None:
    data = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n"
    status, head, _ = parse_head(data, 4096)
    assert status == TOO_BIG and head is not None and head.get("x-a") == "1"
    assert parse_head(data[:4000], 4096)[0] == NEED_MORE
    assert parse_head(data[:5000], 4096)[0] == TOO_BIG


def _feed(reader: BodyReader, data: bytes, step: int) -> bytes:
    out = b""
    for i in range(0, len(data), step):
        out += reader.feed(data[i:i + step])
    return out


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_chunked(step: int) -> None:
    data = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: t\r\n\r\n"
    reader = BodyReader(CHUNKED)
    assert _feed(reader, data, step) == b"hello0123456789"
    assert reader.done and not reader.extra and not reader.error


def test_chunked_lf_only_and_extra() -> None:
    reader = BodyReader(CHUNKED)
    assert reader.feed(b"3\nabc\n0\n\nMORE") == b"abc"
    assert reader.done and reader.extra


@pytest.mark.parametrize("data", [b"x\r\n", b"\r\n", b"3\r\nabcX", b"3\r\nabc\r\r"])
def test_chunked_invalid(data: bytes) -> None:
    reader = BodyReader(CHUNKED)
    reader.feed(data)
    assert reader.error == "upstream sent invalid chunked response" and reader.done


def test_length_and_close() -> None:
    reader = BodyReader(LENGTH, 5)
    assert reader.feed(b"abc") == b"abc" and not reader.done
    assert reader.feed(b"defg") == b"de" and reader.done and reader.extra
    reader = BodyReader(UNTIL_CLOSE)
    assert reader.feed(b"anything") == b"anything" and not reader.done
    reader = BodyReader(EMPTY)
    assert reader.done and reader.feed(b"x") == b"" and reader.extra


# -- the fast path (whole-block regular expressions, heads remembered) agrees with the reader --

_NAME_CHARS = "abXY-_!~:09 \t\x00é"
_VALUE_CHARS = "ab ,;:\t\x00\x01é\x7f"


_NAMES = st.one_of(st.sampled_from(["Content-Length", "connection", "Transfer-Encoding",
                                     "X-Accel-Redirect", "Server", "x_u", "Set-Cookie"]),
                   st.text(_NAME_CHARS, max_size=6))
_VALUES = st.one_of(st.sampled_from(["5", " 12 ", "chunked", " close", "x", "keep-alive"]),
                    st.text(_VALUE_CHARS, max_size=8))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=6),
       st.sampled_from(["200 OK", "204", "404 Not Found", "302 x"]))
def test_fast_path_agrees_with_line_reader(lines: list[tuple[str, str]], status: str) -> None:
    block = "".join(f"{n}:{v}\r\n" if ":" not in n else f"{n}\r\n" for n, v in lines)
    crlf = f"HTTP/1.1 {status}\r\n{block}\r\n".encode("latin-1")
    lf = crlf.replace(b"\r\n", b"\n")  # bare LF: always the line-by-line reader
    for _ in range(2):  # the second parse of the same bytes is remembered
        fast, slow = parse_head(crlf, 4096), parse_head(lf, 4096)
        assert fast[0] == slow[0]
        if fast[0] == DONE:
            a, b = fast[1], slow[1]
            assert a is not None and b is not None
            assert (a.status, a.status_line, a.version, a.headers, a.lows, a.accel,
                    a.content_length, a.chunked, a.connection_close) == \
                (b.status, b.status_line, b.version, b.headers, b.lows, b.accel,
                 b.content_length, b.chunked, b.connection_close)
            assert a.size == len(crlf)


def test_remembered_heads_are_fresh() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Accel-Buffering: no\r\n\r\n"
    _, first, _ = parse_head(data + b"abc", 4096)
    _, second, _ = parse_head(bytearray(data), 4096)
    assert first is not None and second is not None and first is not second
    assert second.headers == first.headers and second.headers is not first.headers
    assert second.lows is not first.lows
    assert all(hasattr(second, name) for name in ResponseHead.__slots__)  # every slot set
    assert (second.content_length, second.accel, second.size) == (3, True, len(data))
    second.headers.append(("X", "y"))
    _, third, _ = parse_head(data, 4096)
    assert third is not None and third.headers == first.headers
    assert parse_head(data, len(data) - 1)[0] == TOO_BIG  # the limit is checked first
