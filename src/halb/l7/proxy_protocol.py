"""The PROXY protocol header, v1 (text) and v2 (binary), read as nginx reads it (PURE).

ngx_proxy_protocol_read: the header must be whole in the first bytes the client sent (nginx
does not wait for the rest of a header). v1 is "PROXY TCP4|TCP6 src dst sport dport\\r\\n" or
"PROXY UNKNOWN ...\\r\\n" (no addresses); addresses are taken as written (hex digits, '.' and
':'), ports 0-65535. v2 is the 12-byte signature, version/command, family/transport, length,
then the addresses; a LOCAL command, a non-STREAM transport or a family other than INET/INET6
is skipped (no addresses), as nginx does. A broken header closes the connection after the
error line nginx writes (`broken header: "<all it read>"`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER = 16  # signature, version/command, family/transport, length
MAX_HEADER = 4096  # NGX_PROXY_PROTOCOL_MAX_HEADER: what is peeked for an ssl port


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    src_addr: str
    dst_addr: str
    src_port: int
    dst_port: int
    tlvs: bytes = b""


class BrokenHeader(Exception):
    """The connection is closed; `level` and `message` are nginx's error log line."""

    def __init__(self, message: str, level: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.level = level


@dataclass(frozen=True, slots=True)
class Parsed:
    length: int  # bytes the header takes (consumed before HTTP or TLS starts)
    info: ProxyInfo | None  # None: UNKNOWN / LOCAL / unsupported (the connection's own)
    note: str | None = None  # an info line nginx logs for an unsupported v2 header


_ADDR_CHARS = frozenset(b"0123456789abcdefABCDEF:.")


def parse(buf: bytes) -> Parsed:
    """The header at the start of buf; BrokenHeader when nginx would close."""
    if len(buf) >= V2_HEADER and buf[:12] == V2_SIGNATURE:
        return _parse_v2(buf)
    if len(buf) < 8 or buf[:6] != b"PROXY ":
        raise _broken(buf)
    p = 6
    if buf[p:p + 7] == b"UNKNOWN":
        p += 7
        end = buf.find(b"\r\n", p)
        if end < 0:
            raise _broken(buf)
        return Parsed(end + 2, None)
    if buf[p:p + 3] != b"TCP" or buf[p + 3:p + 4] not in (b"4", b"6") or \
            buf[p + 4:p + 5] != b" ":
        raise _broken(buf)
    p += 5
    src, p = _read_addr(buf, p)
    dst, p = _read_addr(buf, p)
    sport, p = _read_port(buf, p, 0x20)
    dport, p = _read_port(buf, p, 0x0D)
    if p >= len(buf) or buf[p] != 0x0A:
        raise _broken(buf)
    return Parsed(p + 1, ProxyInfo(src, dst, sport, dport))


def _broken(buf: bytes) -> BrokenHeader:
    # nginx 1.22 quotes everything it read, line ends included
    return BrokenHeader(f'broken header: "{buf.decode("latin-1")}"')


def _read_addr(buf: bytes, p: int) -> tuple[str, int]:
    start = p
    while True:
        if p >= len(buf):
            raise _broken(buf)
        ch = buf[p]
        p += 1
        if ch == 0x20:
            break
        if ch not in _ADDR_CHARS:
            raise _broken(buf)
    return buf[start:p - 1].decode("latin-1"), p


def _read_port(buf: bytes, p: int, sep: int) -> tuple[int, int]:
    start = p
    while True:
        if p >= len(buf):
            raise _broken(buf)
        ch = buf[p]
        p += 1
        if ch == sep:
            break
    text = buf[start:p - 1]
    if not text or not text.isdigit() or int(text) > 65535:  # ngx_atoi
        raise _broken(buf)
    return int(text), p


def _parse_v2(buf: bytes) -> Parsed:
    version = buf[12] >> 4
    if version != 2:
        raise BrokenHeader(f"unknown PROXY protocol version: {version}")
    length = int.from_bytes(buf[14:16], "big")
    if len(buf) - V2_HEADER < length:
        raise BrokenHeader("header is too large")
    end = V2_HEADER + length
    command = buf[12] & 0x0F
    if command != 1:  # only PROXY; LOCAL keeps the connection's own addresses
        return Parsed(end, None, f"PROXY protocol v2 unsupported command {command}")
    transport = buf[13] & 0x0F
    if transport != 1:
        return Parsed(end, None, f"PROXY protocol v2 unsupported transport {transport}")
    family = buf[13] >> 4
    body = buf[V2_HEADER:end]
    if family == 1:
        if len(body) < 12:
            raise BrokenHeader("", level="")  # nginx closes without a line
        src = str(ipaddress.IPv4Address(body[0:4]))
        dst = str(ipaddress.IPv4Address(body[4:8]))
        ports, rest = body[8:12], body[12:]
    elif family == 2:
        if len(body) < 36:
            raise BrokenHeader("", level="")
        src = str(ipaddress.IPv6Address(body[0:16]))
        dst = str(ipaddress.IPv6Address(body[16:32]))
        ports, rest = body[32:36], body[36:]
    else:
        return Parsed(end, None, f"PROXY protocol v2 unsupported address family {family}")
    return Parsed(end, ProxyInfo(src, dst, int.from_bytes(ports[0:2], "big"),
                                 int.from_bytes(ports[2:4], "big"), bytes(rest)))


def build_v1(src: str, dst: str, sport: int, dport: int) -> bytes:
    """A v1 header (tests and the lab's load driver)."""
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def build_v2(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"",
             command: int = 1) -> bytes:
    """A v2 header for a STREAM connection over INET or INET6."""
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    family = 1 if a.version == 4 else 2
    body = a.packed + b.packed + sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + tlvs
    return (V2_SIGNATURE + bytes([0x20 | command, (family << 4) | 1])
            + len(body).to_bytes(2, "big") + body)
