"""The VRRP raw socket of one interface: IP protocol 112, multicast or unicast, TTL 255.

Owns the kernel side of sending and receiving adverts, as keepalived's vrrp_if.c sets it up:

* one raw socket per (interface, family), bound to the device (SO_BINDTODEVICE), shared by every
  instance on that interface (the daemon dispatches by VRID);
* IPv4: the header is built here (IP_HDRINCL, packet.encode_ipv4: TOS 0xc0, TTL 255), the
  multicast group 224.0.0.18 joined on the interface with IP_MULTICAST_ALL off and loopback of
  our own adverts off; IP_RECVTTL is asked for and the TTL read from the header as received;
* IPv6: ff02::12 joined, hop limit 255 (unicast and multicast), IPV6_RECVHOPLIMIT and
  IPV6_RECVPKTINFO so recvmsg reports the hop limit and the destination; the source is the
  interface's link-local address, set per datagram with IPV6_PKTINFO; the checksum (with the
  IPv6 pseudo-header) is computed and verified in packet.py, so a bad one is counted;
* unicast peers (unicast_peer): the same socket sends to each peer; as keepalived, the TTL /
  hop limit 255 check applies to multicast adverts only.

`read()` drains the socket and returns, in arrival order, the adverts that decode (`Received`)
and a `Rejected` for every datagram that does not: its packet.PacketError reason ("bad_ttl",
"bad_checksum", ...), keepalived's log wording and the VRID its header names (if it is long
enough to have one), so the daemon counts the drop against that instance as keepalived does;
`drops` counts them per reason too. Per-instance checks (auth, interval, address list) are the
instance's.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import socket
import struct
from collections import Counter
from dataclasses import dataclass

from halb.vrrp import packet

SIOCGIFADDR = 0x8915
IP_MULTICAST_ALL = 49
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_TTL_CMSG = getattr(socket, "IP_TTL", 2)
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IPV6_TCLASS = getattr(socket, "IPV6_TCLASS", 67)
IPPROTO_VRRP = packet.IPPROTO_VRRP
RECV_SIZE = 4096

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Received:
    """An advert that decoded: its source, destination and TTL / hop limit (None: unknown)."""

    advert: packet.Advert
    src: Address
    dst: Address
    ttl: int | None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A datagram that did not decode: why (the PacketError reason and message) and the VRID
    its VRRP header names (None when too short to have one)."""

    reason: str
    message: str
    vrid: int | None


def header_vrid(data: bytes, family: int) -> int | None:
    """The VRID byte of a received datagram (IPv4: after the IP header), if present."""
    off = 0
    if family == 4:
        if not data:
            return None
        off = (data[0] & 0x0F) * 4
    return data[off + 1] if len(data) > off + 1 else None


def interface_ipv4(ifname: str) -> ipaddress.IPv4Address | None:
    """The interface's primary IPv4 address (SIOCGIFADDR), None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), SIOCGIFADDR,
                              struct.pack("256s", ifname.encode()[:15]))
        except OSError:
            return None
    return ipaddress.IPv4Address(res[20:24])


def interface_ipv6_link_local(ifname: str) -> ipaddress.IPv6Address | None:
    """The interface's link-local IPv6 address, from /proc/net/if_inet6 (this netns)."""
    try:
        with open("/proc/net/if_inet6") as f:
            rows = f.read().split("\n")
    except OSError:
        return None
    for row in rows:
        cols = row.split()
        if len(cols) == 6 and cols[5] == ifname and cols[3] == "20":  # scope link
            return ipaddress.IPv6Address(bytes.fromhex(cols[0]))
    return None


class VrrpSocket:
    """The raw protocol-112 socket of `ifname` for one address family (4 or 6)."""

    def __init__(self, ifname: str, family: int,
                 groups: tuple[Address, ...] = (), multicast: bool = True) -> None:
        self.ifname = ifname
        self.family = family
        self.ifindex = socket.if_nametoindex(ifname)
        self.drops: Counter[str] = Counter()
        self.received = 0
        self.sent = 0
        self.groups: set[Address] = set()
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        self.sock = socket.socket(af, socket.SOCK_RAW, IPPROTO_VRRP)
        try:
            self._setup(groups if multicast else ())
        except BaseException:
            self.sock.close()
            raise

    def _setup(self, groups: tuple[Address, ...]) -> None:
        s = self.sock
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
        if self.family == 4:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
            s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            s.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, packet.TTL)
        else:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, packet.TTL)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, packet.TTL)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_TCLASS, 0xC0)
        for group in groups:
            self.join(group)

    def join(self, group: Address) -> None:
        if group in self.groups:
            return
        if self.family == 4:
            mreq = struct.pack("4s4si", group.packed, bytes(4), self.ifindex)
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        else:
            mreq = struct.pack("16si", group.packed, self.ifindex)
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        self.groups.add(group)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    # -- sending --------------------------------------------------------------------------------

    def send(self, advert: packet.Advert, src: Address, dst: Address, ttl: int = packet.TTL,
             checksum: packet.Checksum = packet.Checksum.PSEUDO) -> bool:
        """Send one advert; False (and counted) when the kernel refused it."""
        try:
            if self.family == 4:
                assert isinstance(src, ipaddress.IPv4Address)
                assert isinstance(dst, ipaddress.IPv4Address)
                data = packet.encode_ipv4(advert, src, dst, ttl, checksum)
                self.sock.sendto(data, (str(dst), 0))
            else:
                data = packet.encode(advert, src, dst)
                info = struct.pack("16sI", src.packed, self.ifindex)
                if ttl != packet.TTL:
                    self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
                self.sock.sendmsg([data], [(socket.IPPROTO_IPV6, IPV6_PKTINFO, info)], 0,
                                  (str(dst), 0, 0, self.ifindex))
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.ENOBUFS):
                self.drops["send_" + errno.errorcode[e.errno].lower()] += 1
                return False
            self.drops["send_error"] += 1
            raise
        self.sent += 1
        return True

    # -- receiving ------------------------------------------------------------------------------

    def read(self, limit: int = 64) -> list[Received | Rejected]:
        """Drain up to `limit` datagrams, in arrival order."""
        out: list[Received | Rejected] = []
        space = socket.CMSG_SPACE(64)
        for _ in range(limit):
            try:
                data, ancdata, _flags, addr = self.sock.recvmsg(RECV_SIZE, space)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.drops["recv_error"] += 1
                break
            try:
                got = self._decode(data, ancdata, addr)
            except packet.PacketError as err:
                self.drops[err.reason] += 1
                out.append(Rejected(err.reason, str(err), header_vrid(data, self.family)))
                continue
            self.received += 1
            out.append(got)
        return out

    def _decode(self, data: bytes, ancdata: list[tuple[int, int, bytes]],
                addr: tuple[str, ...]) -> Received:
        if self.family == 4:
            ttl_cmsg = None
            for level, kind, value in ancdata:
                if level == socket.IPPROTO_IP and kind == IP_TTL_CMSG and len(value) >= 4:
                    ttl_cmsg = struct.unpack("i", value[:4])[0]
            if len(data) >= packet.IPV4_HEADER_LEN:
                dst4 = ipaddress.IPv4Address(data[16:20])
                check_ttl = dst4.is_multicast
            else:
                check_ttl = True
            advert, src4, dst4, ttl = packet.decode_ipv4(data, check_ttl=check_ttl)
            if ttl_cmsg is not None and check_ttl and ttl_cmsg != packet.TTL:
                raise packet.BadTtl(f"invalid TTL/HL. Received {ttl_cmsg} and expect "
                                    f"{packet.TTL}")
            return Received(advert, src4, dst4, ttl)
        hops: int | None = None
        dst6: ipaddress.IPv6Address | None = None
        for level, kind, value in ancdata:
            if level != socket.IPPROTO_IPV6:
                continue
            if kind == IPV6_HOPLIMIT and len(value) >= 4:
                hops = struct.unpack("i", value[:4])[0]
            elif kind == IPV6_PKTINFO and len(value) >= 16:
                dst6 = ipaddress.IPv6Address(value[:16])
        src6 = ipaddress.IPv6Address(addr[0].split("%")[0])
        if dst6 is None:
            dst6 = packet.MCAST6
        advert = packet.decode(data, src6, dst6, hops if dst6.is_multicast else None)
        return Received(advert, src6, dst6, hops)

