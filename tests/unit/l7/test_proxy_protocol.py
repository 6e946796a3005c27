"""PROXY protocol v1/v2 parsing as nginx 1.22 reads it (l7/proxy_protocol.py, PURE)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from halb.l7.proxy_protocol import V2_SIGNATURE, BrokenHeader, ProxyInfo, build_v1, build_v2, parse


def test_v1_tcp4() -> None:
    buf = b"PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\nGET / HTTP/1.1\r\n"
    p = parse(buf)
    assert p.info == ProxyInfo("192.0.2.1", "198.51.100.2", 40000, 443)
    assert buf[p.length:] == b"GET / HTTP/1.1\r\n"


def test_v1_tcp6_addresses_as_written() -> None:
    p = parse(b"PROXY TCP6 2001:DB8::1 ::1 1 2\r\n")
    assert p.info is not None and p.info.src_addr == "2001:DB8::1" and p.info.dst_port == 2


def test_v1_unknown_keeps_the_connection_address() -> None:
    p = parse(b"PROXY UNKNOWN ffff:f... whatever\r\nGET")
    assert p.info is None and p.length == len(b"PROXY UNKNOWN ffff:f... whatever\r\n")


@pytest.mark.parametrize("buf", [
    b"GET / HTTP/1.1\r\n\r\n",
    b"PROXY",  # shorter than 8
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2",  # no CRLF yet: nginx does not wait
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
    b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.z 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 x 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n",
    b"PROXY UNKNOWN",
])
def test_v1_broken(buf: bytes) -> None:
    with pytest.raises(BrokenHeader) as e:
        parse(buf)
    assert e.value.level == "error"
    assert e.value.message == f'broken header: "{buf.decode("latin-1")}"'


def test_v2_inet_and_tlvs() -> None:
    hdr = build_v2("192.0.2.9", "192.0.2.10", 5000, 80, tlvs=b"\x04\x00\x01x")
    p = parse(hdr + b"GET /")
    assert p.length == len(hdr)
    assert p.info == ProxyInfo("192.0.2.9", "192.0.2.10", 5000, 80, b"\x04\x00\x01x")


def test_v2_inet6() -> None:
    p = parse(build_v2("2001:db8::7", "2001:db8::1", 1, 2))
    assert p.info is not None and p.info.src_addr == "2001:db8::7"


@pytest.mark.parametrize("hdr,note", [
    (build_v2("192.0.2.1", "192.0.2.2", 1, 2, command=0), "unsupported command 0"),
    (V2_SIGNATURE + b"\x21\x12\x00\x0c" + bytes(12), "unsupported transport 2"),
    (V2_SIGNATURE + b"\x21\x31\x00\x04" + bytes(4), "unsupported address family 3"),
])
def test_v2_skipped(hdr: bytes, note: str) -> None:
    p = parse(hdr + b"GET")
    assert p.info is None and p.length == len(hdr) and p.note is not None and note in p.note


@pytest.mark.parametrize("buf,message", [
    (V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12), "unknown PROXY protocol version: 3"),
    (V2_SIGNATURE + b"\x21\x11\x00\x40" + bytes(12), "header is too large"),
    (V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4), ""),  # short INET: closed, no line
])
def test_v2_broken(buf: bytes, message: str) -> None:
    with pytest.raises(BrokenHeader) as e:
        parse(buf)
    assert e.value.message == message


@given(st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(0, 65535),
       st.integers(0, 65535), st.booleans())
def test_round_trip(src: object, dst: object, sport: int, dport: int, v2: bool) -> None:
    hdr = (build_v2 if v2 else build_v1)(str(src), str(dst), sport, dport)
    p = parse(hdr + b"rest")
    assert p.length == len(hdr)
    assert p.info == ProxyInfo(str(src), str(dst), sport, dport)


@given(st.binary(max_size=120))
def test_never_crashes(buf: bytes) -> None:
    try:
        p = parse(buf)
    except BrokenHeader:
        return
    assert 0 < p.length <= len(buf)
