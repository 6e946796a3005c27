"""Virtual IPs on the host: add/delete over netlink (pyroute2), gratuitous ARP, unsolicited NA.

Owns what keepalived's vrrp_ipaddress.c and vrrp_arp.c / vrrp_ndisc.c do to the system:

* `Netlink.add` / `Netlink.delete` put a VirtualIp on its interface (its `dev`, else the
  instance's) the way `ip addr add ADDR[/MASK] [brd B] [scope S] [label L] dev IF` would, with
  keepalived's defaults: no mask means /32 (/128), IPv6 VIPs skip DAD (IFA_F_NODAD) so they are
  usable at once. Both are idempotent: adding a present address or deleting an absent one is not
  an error. pyroute2's asyncio API (AsyncIPRoute) is used, so the VRRP loop never blocks on it;
  it needs the stdlib event loop (pyroute2 0.9 cannot run on uvloop).
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
import socket
import struct
from collections.abc import Iterable

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

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


class Netlink:
    """The VRRP process's rtnetlink handle for addresses."""

    def __init__(self) -> None:
        self._ipr: AsyncIPRoute | None = None

    async def open(self) -> None:
        if self._ipr is None:
            self._ipr = AsyncIPRoute()
            await self._ipr.setup_endpoint()

    async def close(self) -> None:
        if self._ipr is not None:
            with contextlib.suppress(Exception):
                self._ipr.close()
            self._ipr = None

    async def _handle(self) -> AsyncIPRoute:
        await self.open()
        assert self._ipr is not None
        return self._ipr

    @staticmethod
    def _args(vip: VirtualIp, dev: str) -> dict[str, object]:
        iface = vip.address
        args: dict[str, object] = {
            "index": socket.if_nametoindex(vip.dev or dev),
            "address": str(iface.ip),
            "prefixlen": iface.network.prefixlen,
        }
        if iface.version == 4:
            if vip.label:
                args["label"] = vip.label
            brd = broadcast(vip)
            if brd:
                args["broadcast"] = brd
        else:
            args["flags"] = IFA_F_NODAD
        if vip.scope is not None:
            args["scope"] = scope_number(vip.scope)
        if vip.peer is not None:
            args["local"] = str(iface.ip)
            args["address"] = str(vip.peer.ip)
            args["prefixlen"] = vip.peer.network.prefixlen
        return args

    async def add(self, vip: VirtualIp, dev: str) -> bool:
        """Add one VIP; False when it was already there."""
        ipr = await self._handle()
        try:
            await ipr.addr("add", **self._args(vip, dev))
        except NetlinkError as e:
            if e.code == errno.EEXIST:
                return False
            raise
        return True

    async def delete(self, vip: VirtualIp, dev: str) -> bool:
        """Delete one VIP; False when it was not there."""
        ipr = await self._handle()
        args = self._args(vip, dev)
        args.pop("label", None)
        args.pop("broadcast", None)
        args.pop("flags", None)
        args.pop("scope", None)
        try:
            await ipr.addr("del", **args)
        except NetlinkError as e:
            if e.code in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ESRCH):
                return False
            raise
        except OSError as e:  # the interface is gone: nothing left to delete
            if e.errno == errno.ENODEV:
                return False
            raise
        return True

    async def present(self, dev: str) -> set[Address]:
        """The addresses configured on `dev`."""
        ipr = await self._handle()
        out: set[Address] = set()
        with contextlib.suppress(OSError):
            index = socket.if_nametoindex(dev)
            async for msg in await ipr.addr("dump", index=index):
                addr = msg.get("address")
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
