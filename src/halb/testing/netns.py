"""A LAN of network namespaces for VRRP tests and benchmarks (root; uses iproute2's `ip`).

`Lan` builds, on one 198.18.0.0/15 subnet only (DESIGN.md address plan):

    namespace <prefix>br   : bridge br0 (multicast snooping off)
    namespace <prefix>n1.. : one veth each (name `ifname`, e.g. eth0 or the seeds' ens33),
                             address .1, .2, ... of the subnet, plugged into br0
    namespace <prefix>c    : the client, address .200, on the same bridge

and removes all of it in `close()` (processes started through it first, then the namespaces,
which takes their veths along). `close()` is safe to call twice and after a failed build; use the
Lan as a context manager so that it runs in a finally block. Helpers read what tests assert on:
which nodes hold an address, a node's MAC, the client's neighbour entry, and can crash
(SIGKILL + host off the LAN) and revive a node. `addresses` and `holders` read the nodes'
addresses over one rtnetlink socket per namespace (no `ip` process per poll, so 10 ms polling
and 50 ms sampling cost little CPU); `add_link` / `set_link` give a node extra links (dummy
interfaces for track_interface tests).

Module helpers usable without a Lan: `run_in_netns(ns, fn)` runs fn on a thread that entered
the namespace (setns), `netns_socket(ns, ...)` creates a socket that lives in the namespace
(the creating thread exits, the socket stays there), `AddressReader` dumps a namespace's
addresses over rtnetlink.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import ipaddress
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Self, TypeVar

ALLOWED = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("127.0.0.0/8"))


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=20)


def ns_exists(name: str) -> bool:
    return name in ip("netns", "list").stdout.split()


T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def run_in_netns(ns: str, fn: Callable[[], T]) -> T:
    """fn() on a short-lived thread that entered network namespace `ns` (setns applies to the
    calling thread only, so the caller's namespace never changes)."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as e:  # handed to the caller
            error.append(e)

    thread = threading.Thread(target=target, name=f"netns-{ns}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def netns_socket(ns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created inside namespace `ns` (sockets keep the namespace they were made in)."""
    return run_in_netns(ns, lambda: socket.socket(family, kind, proto))


RTM_NEWADDR, RTM_GETADDR, NLMSG_ERROR, NLMSG_DONE = 20, 22, 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2


class AddressReader:
    """The IPv4 addresses of a namespace, per interface index, over one rtnetlink socket."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self._sock = netns_socket(ns, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock.settimeout(5)
        self._lock = threading.Lock()
        self._seq = 0
        self._index: dict[str, int] = {}

    def index(self, ifname: str) -> int:
        if ifname not in self._index:
            self._index[ifname] = run_in_netns(self.ns, lambda: socket.if_nametoindex(ifname))
        return self._index[ifname]

    def dump(self) -> list[tuple[int, ipaddress.IPv4Address]]:
        """(interface index, address) for every IPv4 address in the namespace."""
        with self._lock:
            self._seq += 1
            req = struct.pack("=IHHII", 16 + 8, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP,
                              self._seq, 0) + struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0)
            self._sock.send(req)
            out: list[tuple[int, ipaddress.IPv4Address]] = []
            while True:
                data = self._sock.recv(65536)
                off = 0
                while off + 16 <= len(data):
                    length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
                    if length < 16:
                        return out
                    if seq == self._seq:
                        if kind == NLMSG_DONE:
                            return out
                        if kind == NLMSG_ERROR:
                            raise OSError(f"netlink address dump failed in {self.ns}")
                        if kind == RTM_NEWADDR:
                            out.extend(_parse_addr(data[off + 16:off + length]))
                    off += (length + 3) & ~3

    def addresses(self, ifname: str) -> list[ipaddress.IPv4Address]:
        index = self.index(ifname)
        return [a for i, a in self.dump() if i == index]

    def close(self) -> None:
        self._sock.close()


def _parse_addr(body: bytes) -> list[tuple[int, ipaddress.IPv4Address]]:
    _family, _plen, _flags, _scope, index = struct.unpack_from("=BBBBI", body, 0)
    off, local, address = 8, None, None
    while off + 4 <= len(body):
        alen, atype = struct.unpack_from("=HH", body, off)
        if alen < 4:
            break
        value = body[off + 4:off + alen]
        if atype == IFA_LOCAL and len(value) == 4:
            local = ipaddress.IPv4Address(value)
        elif atype == IFA_ADDRESS and len(value) == 4:
            address = ipaddress.IPv4Address(value)
        off += (alen + 3) & ~3
    found = local or address  # IFA_LOCAL is the address itself (IFA_ADDRESS: the peer's)
    return [(index, found)] if found is not None else []


@dataclass(eq=False)
class Node:
    name: str  # "n1"
    ns: str
    ifname: str
    address: ipaddress.IPv4Interface
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    online: bool = True


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
               wait: float = 15.0) -> None:
    """Signal a process group (a daemon and its children), wait for its leader, and SIGKILL the
    group if it is still there after `wait` seconds."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(wait)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


class Topology(abc.ABC):
    """A set of namespaces used as a context manager: `build()` on enter (undone by `close()`
    if it fails half way), `close()` on exit, whatever happened inside."""

    @abc.abstractmethod
    def build(self) -> None:
        """Create the namespaces, links and processes."""

    @abc.abstractmethod
    def close(self) -> None:
        """Remove everything build() created (also after a partial build)."""

    def __enter__(self) -> Self:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Lan(Topology):
    def __init__(self, nodes: int = 2, subnet: str = "198.18.0.0/24", ifname: str = "eth0",
                 prefix: str | None = None, addresses: Sequence[str] | None = None,
                 client: str | None = None) -> None:
        """`addresses` (optional) gives the nodes' addresses (default .1, .2, ...), `client`
        the client's (default .200); all must be inside `subnet`."""
        self.subnet = ipaddress.ip_network(subnet)
        if not any(self.subnet.subnet_of(a) for a in ALLOWED):  # type: ignore[arg-type]
            raise ValueError(f"{subnet} is outside 198.18.0.0/15 (the test address plan)")
        self.prefix = prefix or f"hv{os.getpid() % 100000}"
        self.ifname = ifname
        self.bridge_ns = f"{self.prefix}br"
        self.client_ns = f"{self.prefix}c"
        hosts = list(self.subnet.hosts())
        chosen = list(addresses) if addresses is not None else [str(h) for h in hosts[:nodes]]
        if len(chosen) != nodes:
            raise ValueError(f"{nodes} nodes but {len(chosen)} addresses")
        client_ip = client if client is not None else str(hosts[199])
        for a in [*chosen, client_ip]:
            if ipaddress.ip_address(a) not in self.subnet:
                raise ValueError(f"{a} is outside {subnet}")
        self.nodes = [Node(f"n{i + 1}", f"{self.prefix}n{i + 1}", ifname,
                           ipaddress.IPv4Interface(f"{chosen[i]}/{self.subnet.prefixlen}"))
                      for i in range(nodes)]
        self.client_address = ipaddress.IPv4Interface(f"{client_ip}/{self.subnet.prefixlen}")
        self._made: list[str] = []
        self.client_procs: list[subprocess.Popen[bytes]] = []
        self._readers: dict[str, AddressReader] = {}
        self._readers_lock = threading.Lock()

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    # -- building -----------------------------------------------------------------------------

    def _add_ns(self, name: str) -> None:
        if ns_exists(name):
            ip("netns", "del", name, check=False)
        ip("netns", "add", name)
        self._made.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def build(self) -> None:
        self._add_ns(self.bridge_ns)
        ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0",
           "forward_delay", "0")
        ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        ends = [(n.ns, n.ifname, n.address) for n in self.nodes]
        ends.append((self.client_ns, "eth0", self.client_address))
        for i, (ns, ifname, addr) in enumerate(ends):
            self._add_ns(ns)
            port = f"p{i}"
            ip("-n", self.bridge_ns, "link", "add", port, "type", "veth", "peer", "name",
               ifname, "netns", ns)
            ip("-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
            ip("-n", ns, "addr", "add", str(addr), "dev", ifname)
            ip("-n", ns, "link", "set", ifname, "up")
        self.wait_links()

    def wait_links(self, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        for ns, ifname in [(n.ns, n.ifname) for n in self.nodes] + [(self.client_ns, "eth0")]:
            while "LOWER_UP" not in ip("-n", ns, "link", "show", ifname).stdout:
                if time.monotonic() > end:
                    raise RuntimeError(f"{ns}/{ifname} did not come up")
                time.sleep(0.02)

    # -- processes ------------------------------------------------------------------------------

    def popen(self, node: Node | str, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        """A process in the node's namespace, in its own process group (crash = killpg)."""
        n = self.node(node) if isinstance(node, str) else node
        proc = subprocess.Popen(["ip", "netns", "exec", n.ns, *argv],
                                start_new_session=True, **kw)  # type: ignore[call-overload]
        n.procs.append(proc)
        return proc

    def client(self, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["ip", "netns", "exec", self.client_ns, *argv],
                                start_new_session=True, **kw)  # type: ignore[call-overload]
        self.client_procs.append(proc)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL,
             wait: float = 10.0) -> None:
        stop_group(proc, sig, wait)

    def crash(self, node: Node | str) -> float:
        """The host dies: SIGKILL to its processes, then its cable is pulled (its VIPs stay
        configured but unreachable, as on a host that lost power). Returns the kill time."""
        n = self.node(node) if isinstance(node, str) else node
        t = time.monotonic()
        for proc in n.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        ip("-n", n.ns, "link", "set", n.ifname, "down")
        n.online = False
        for proc in n.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        n.procs = [p for p in n.procs if p.poll() is None]
        return t

    def revive(self, node: Node | str, keep: tuple[str, ...] = ()) -> None:
        """The host boots again: no address but its own (and `keep`), cable back in."""
        n = self.node(node) if isinstance(node, str) else node
        for addr in self.addresses(n):
            if addr != n.address.ip and str(addr) not in keep:
                ip("-n", n.ns, "addr", "del", f"{addr}/32", "dev", n.ifname, check=False)
                prefix = self.subnet.prefixlen
                ip("-n", n.ns, "addr", "del", f"{addr}/{prefix}", "dev", n.ifname, check=False)
        ip("-n", n.ns, "link", "set", n.ifname, "up")
        n.online = True
        self.wait_links()

    # -- extra links ----------------------------------------------------------------------------

    def add_link(self, node: Node | str, name: str) -> str:
        """Another interface in the node's namespace, up: a veth pair `name` + `name`p (this
        kernel may lack the dummy driver), so `set_link(node, name + "p", False)` takes the
        carrier away from `name` as a pulled cable would. Removed with the namespace; returns
        the peer's name."""
        n = self.node(node) if isinstance(node, str) else node
        peer = f"{name}p"
        ip("-n", n.ns, "link", "add", name, "type", "veth", "peer", "name", peer)
        for end in (peer, name):
            ip("-n", n.ns, "link", "set", end, "up")
        return peer

    def set_link(self, node: Node | str, name: str, up: bool) -> None:
        n = self.node(node) if isinstance(node, str) else node
        ip("-n", n.ns, "link", "set", name, "up" if up else "down")

    # -- views ----------------------------------------------------------------------------------

    def addresses(self, node: Node | str, ifname: str | None = None
                  ) -> list[ipaddress.IPv4Address]:
        """The IPv4 addresses on the node's LAN interface (or `ifname`)."""
        n = self.node(node) if isinstance(node, str) else node
        with self._readers_lock:  # samplers run on threads
            reader = self._readers.get(n.ns)
            if reader is None:
                reader = self._readers[n.ns] = AddressReader(n.ns)
        return reader.addresses(ifname or n.ifname)

    def holders(self, vip: str, online_only: bool = True) -> list[str]:
        target = ipaddress.IPv4Address(vip)
        return [n.name for n in self.nodes if (n.online or not online_only)
                and target in self.addresses(n)]

    def mac(self, node: Node | str) -> str:
        n = self.node(node) if isinstance(node, str) else node
        out = ip("-n", n.ns, "-o", "link", "show", n.ifname).stdout
        return out.split("link/ether ")[1].split()[0]

    def neighbour(self, address: str) -> str | None:
        """The client's neighbour entry (lladdr) for `address`."""
        out = ip("-n", self.client_ns, "neigh", "show", address).stdout
        parts = out.split()
        return parts[parts.index("lladdr") + 1] if "lladdr" in parts else None

    def touch_from_client(self, address: str, port: int = 9) -> None:
        """Make the client resolve `address` (one UDP datagram: ARP, then the datagram)."""
        code = ("import socket,time;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
                f"s.sendto(b'x',('{address}',{port}));time.sleep(0.1)")
        subprocess.run(["ip", "netns", "exec", self.client_ns, sys.executable, "-c", code],
                       capture_output=True, timeout=10)

    # -- teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        with self._readers_lock:
            for reader in self._readers.values():
                reader.close()
            self._readers = {}
        for n in self.nodes:
            for proc in n.procs:
                self.kill(proc, signal.SIGKILL, 2.0)
            n.procs = []
        for proc in self.client_procs:
            self.kill(proc, signal.SIGKILL, 2.0)
        self.client_procs = []
        for name in reversed(self._made):  # anything else still running in there
            for pid in ip("netns", "pids", name, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            ip("netns", "del", name, check=False)
        self._made = []
