"""Virtual IPs on the host: add/delete over netlink (pyroute2), gratuitous ARP, unsolicited NA.

Owns what keepalived's vrrp_ipaddress.c and vrrp_arp.c / vrrp_ndisc.c do to the system:

* `Netlink.add` / `Netlink.delete` put a VirtualIp on its interface (its `dev`, else the
  instance's) the way `ip addr add ADDR[/MASK] [brd B] [scope S] [label L] dev IF` would, with
  keepalived's defaults: no mask means /32 (/128), IPv6 VIPs skip DAD (IFA_F_NODAD) so they are
  usable at once. Both are idempotent: adding a present address or deleting an absent one is not
  an error. The request is pyroute2's ifaddrmsg, sent on a plain rtnetlink socket and answered
  at once: the kernel handles an address request inside sendmsg(), so the ACK is already queued
  when it returns, and the gratuitous ARPs that follow go out within microseconds (through
  pyroute2's asyncio API the same request took 1.5-2 ms of event-loop round trips, measured
  between the new master's first advert and its first gratuitous ARP). Dumps (`present`, at
  start only) use pyroute2's AsyncIPRoute, which needs the stdlib event loop (not uvloop).
* `Announcer` sends gratuitous ARPs (IPv4: an ARP request from VIP to VIP, broadcast, sender
  MAC = the interface's, over an AF_PACKET socket) and unsolicited neighbour advertisements
  (IPv6: to ff02::1, Override flag, target link-layer option, hop limit 255) for a set of VIPs,
  `repeat` times, `interval` apart (vrrp_garp_interval / vrrp_gna_interval; 0: back to back).
  When and how often a burst goes out (garp_master_delay / _repeat / _refresh) is decided by the
  state machine (machine.SendGratuitous); this module only sends.

  The ARP socket is opened with the announcer (at the daemon's start, as keepalived registers
  its "gratuitous ARP shared channel"), not at the first takeover, and with protocol 0 and no
  bind: a packet socket bound to a protocol registers a receive hook, and that bind waits for an
  RCU grace period (synchronize_net, 8-16 ms measured) - a delay that would sit between the VIP
  being configured and the first gratuitous ARP of every first takeover. Frames are sent with
  sendto() naming the interface and ETH_P_ARP, so nothing is ever received on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable

from pyroute2 import AsyncIPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELADDR, RTM_NEWADDR
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

from halb.config.keepalived_model import VirtualIp
from halb.vrrp.socket import interface_ipv6_link_local

SIOCGIFHWADDR = 0x8927
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
IFA_F_NODAD = 0x02
SCOPES = {"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
ALL_NODES = ipaddress.IPv6Address("ff02::1")
BROADCAST = b"\xff" * 6

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def interface_mac(ifname: str) -> bytes:
    """The interface's hardware address (SIOCGIFHWADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        res = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", ifname.encode()[:15]))
    return res[18:24]


def scope_number(scope: str | None) -> int:
    if scope is None:
        return 0
    if scope.isdigit():
        return int(scope)
    return SCOPES.get(scope, 0)


def broadcast(vip: VirtualIp) -> str | None:
    """`brd ADDR`, `brd +` (host bits set) or `brd -` (host bits clear), as ip(8) reads it."""
    if vip.brd is None or vip.address.version != 4:
        return None
    net = vip.address.network
    if vip.brd == "+":
        return str(net.broadcast_address)
    if vip.brd == "-":
        return str(net.network_address)
    return vip.brd


NLMSG_ERROR = 2


def address_request(kind: int, flags: int, seq: int, vip: VirtualIp, dev: str) -> bytes:
    """An RTM_NEWADDR / RTM_DELADDR message for `vip` on `dev` (as `ip addr` builds it)."""
    iface = vip.address
    msg = ifaddrmsg()
    msg["family"] = socket.AF_INET if iface.version == 4 else socket.AF_INET6
    msg["index"] = socket.if_nametoindex(vip.dev or dev)
    msg["prefixlen"] = iface.network.prefixlen
    msg["flags"] = 0
    msg["scope"] = 0
    local = str(iface.ip)
    peer = vip.peer
    attrs: list[tuple[str, object]] = []
    if peer is not None:
        msg["prefixlen"] = peer.network.prefixlen
        attrs += [("IFA_LOCAL", local), ("IFA_ADDRESS", str(peer.ip))]
    elif iface.version == 4:
        attrs += [("IFA_LOCAL", local), ("IFA_ADDRESS", local)]
    else:
        attrs.append(("IFA_ADDRESS", local))
    if kind == RTM_NEWADDR:
        if iface.version == 4:
            brd = broadcast(vip)
            if brd:
                attrs.append(("IFA_BROADCAST", brd))
            if vip.label:
                attrs.append(("IFA_LABEL", vip.label))
        else:
            msg["flags"] = IFA_F_NODAD
        if vip.scope is not None:
            msg["scope"] = scope_number(vip.scope)
    msg["attrs"] = attrs
    msg["header"]["type"] = kind
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = 0
    msg.encode()
    return bytes(msg.data)


def ack_errno(data: bytes, seq: int) -> int | None:
    """The errno of the netlink ACK for `seq` in `data` (0: success), None if not there."""
    off = 0
    while off + 16 <= len(data):
        length, kind, _flags, got_seq, _pid = struct.unpack_from("=IHHII", data, off)
        if length < 16:
            break
        if kind == NLMSG_ERROR and got_seq == seq and length >= 20:
            return -struct.unpack_from("=i", data, off + 16)[0]
        off += (length + 3) & ~3
    return None


class Netlink:
    """The VRRP process's rtnetlink handles for addresses: a request socket for add / delete
    (answered synchronously) and pyroute2's AsyncIPRoute for dumps."""

    def __init__(self) -> None:
        self._ipr: AsyncIPRoute | None = None
        self._req: socket.socket | None = None
        self._seq = 0

    async def open(self) -> None:
        if self._ipr is None:
            self._ipr = AsyncIPRoute()
            await self._ipr.setup_endpoint()
        self._request_socket()

    def _request_socket(self) -> socket.socket:
        if self._req is None:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            s.bind((0, 0))
            s.settimeout(2.0)  # the ACK is queued before send() returns; this never waits
            self._req = s
        return self._req

    async def close(self) -> None:
        if self._ipr is not None:
            with contextlib.suppress(Exception):
                self._ipr.close()
            self._ipr = None
        if self._req is not None:
            self._req.close()
            self._req = None

    def request(self, kind: int, vip: VirtualIp, dev: str) -> int:
        """Send one address request and read its ACK; the errno (0: done)."""
        s = self._request_socket()
        self._seq = self._seq % 0x7FFFFFFF + 1
        flags = NLM_F_REQUEST | NLM_F_ACK
        if kind == RTM_NEWADDR:
            flags |= NLM_F_CREATE | NLM_F_EXCL
        s.send(address_request(kind, flags, self._seq, vip, dev))
        while True:
            code = ack_errno(s.recv(65536), self._seq)  # older ACKs (timed out) are skipped
            if code is not None:
                return code

    async def _handle(self) -> AsyncIPRoute:
        await self.open()
        assert self._ipr is not None
        return self._ipr

    async def add(self, vip: VirtualIp, dev: str) -> bool:
        """Add one VIP; False when it was already there."""
        return self.add_now(vip, dev)

    async def delete(self, vip: VirtualIp, dev: str) -> bool:
        """Delete one VIP; False when it was not there."""
        return self.delete_now(vip, dev)

    def add_now(self, vip: VirtualIp, dev: str) -> bool:
        """`add`, synchronously (the kernel answers within the send)."""
        code = self.request(RTM_NEWADDR, vip, dev)
        if code == errno.EEXIST:
            return False
        if code:
            raise NetlinkError(code, os.strerror(code))
        return True

    def delete_now(self, vip: VirtualIp, dev: str) -> bool:
        """`delete`, synchronously."""
        try:
            code = self.request(RTM_DELADDR, vip, dev)
        except OSError as e:  # the interface is gone: nothing left to delete
            if e.errno == errno.ENODEV:
                return False
            raise
        if code in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ESRCH):
            return False
        if code:
            raise NetlinkError(code, os.strerror(code))
        return True

    async def present(self, dev: str) -> set[Address]:
        """The addresses configured on `dev`."""
        ipr = await self._handle()
        out: set[Address] = set()
        with contextlib.suppress(OSError):
            index = socket.if_nametoindex(dev)
            async for msg in await ipr.addr("dump", index=index):
                addr = msg.get("local") or msg.get("address")  # IFA_LOCAL: ours (peer)
                if addr:
                    out.add(ipaddress.ip_address(addr))
        return out


# -- announcements -----------------------------------------------------------------------------


def arp_frame(mac: bytes, vip: ipaddress.IPv4Address) -> bytes:
    """A gratuitous ARP request as keepalived sends it: broadcast, sender = target = VIP."""
    eth = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, vip.packed, BROADCAST,
                      vip.packed)
    return eth + arp


def na_message(mac: bytes, vip: ipaddress.IPv6Address, router: bool = False) -> bytes:
    """An unsolicited neighbour advertisement (ICMPv6 136, Override set) with the target
    link-layer address option; the kernel fills in the checksum."""
    flags = 0x20000000 | (0x80000000 if router else 0)
    return struct.pack("!BBHI16s", 136, 0, 0, flags, vip.packed) + struct.pack("!BB6s", 2, 1,
                                                                               mac)


class Announcer:
    """Gratuitous ARP / unsolicited NA sender for the VIPs of one interface."""

    def __init__(self, ifname: str, ipv4: bool = True) -> None:
        self.ifname = ifname
        self.ifindex = socket.if_nametoindex(ifname)
        self.sent = 0
        self._arp: socket.socket | None = None
        self._icmp6: socket.socket | None = None
        if ipv4:
            self._arp_socket()

    def _arp_socket(self) -> socket.socket:
        if self._arp is None:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # 0: no receive hook
            s.setblocking(False)
            self._arp = s
        return self._arp

    def _na_socket(self) -> socket.socket:
        if self._icmp6 is None:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
            s.setblocking(False)
            self._icmp6 = s
        return self._icmp6

    def send_once(self, vips: Iterable[Address]) -> None:
        mac = interface_mac(self.ifname)
        for vip in vips:
            try:
                if isinstance(vip, ipaddress.IPv4Address):
                    self._arp_socket().sendto(arp_frame(mac, vip), (self.ifname, ETH_P_ARP))
                else:
                    ll = interface_ipv6_link_local(self.ifname)
                    cmsg = []
                    if ll is not None:
                        cmsg = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
                                 struct.pack("16sI", ll.packed, self.ifindex))]
                    self._na_socket().sendmsg([na_message(mac, vip)], cmsg, 0,
                                              (str(ALL_NODES), 0, 0, self.ifindex))
            except (BlockingIOError, OSError):
                continue
            self.sent += 1

    async def announce(self, vips: Iterable[Address], repeat: int, interval: float = 0.0) -> None:
        """`repeat` rounds over the VIPs, `interval` seconds apart."""
        vips = list(vips)
        for i in range(repeat):
            if i and interval > 0:
                await asyncio.sleep(interval)
            self.send_once(vips)

    def close(self) -> None:
        for s in (self._arp, self._icmp6):
            if s is not None:
                s.close()
        self._arp = self._icmp6 = None
