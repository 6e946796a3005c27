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
(SIGKILL + host off the LAN) and revive a node.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

ALLOWED = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("127.0.0.0/8"))


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=20)


def ns_exists(name: str) -> bool:
    return name in ip("netns", "list").stdout.split()


@dataclass(eq=False)
class Node:
    name: str  # "n1"
    ns: str
    ifname: str
    address: ipaddress.IPv4Interface
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    online: bool = True


class Lan:
    def __init__(self, nodes: int = 2, subnet: str = "198.18.0.0/24", ifname: str = "eth0",
                 prefix: str | None = None) -> None:
        self.subnet = ipaddress.ip_network(subnet)
        if not any(self.subnet.subnet_of(a) for a in ALLOWED):  # type: ignore[arg-type]
            raise ValueError(f"{subnet} is outside 198.18.0.0/15 (the test address plan)")
        self.prefix = prefix or f"hv{os.getpid() % 100000}"
        self.ifname = ifname
        self.bridge_ns = f"{self.prefix}br"
        self.client_ns = f"{self.prefix}c"
        hosts = list(self.subnet.hosts())
        self.nodes = [Node(f"n{i + 1}", f"{self.prefix}n{i + 1}", ifname,
                           ipaddress.IPv4Interface(f"{hosts[i]}/{self.subnet.prefixlen}"))
                      for i in range(nodes)]
        self.client_address = ipaddress.IPv4Interface(f"{hosts[199]}/{self.subnet.prefixlen}")
        self._made: list[str] = []
        self.client_procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Lan:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

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

    # -- views ----------------------------------------------------------------------------------

    def addresses(self, node: Node | str) -> list[ipaddress.IPv4Address]:
        n = self.node(node) if isinstance(node, str) else node
        out = ip("-n", n.ns, "-4", "-o", "addr", "show", "dev", n.ifname, check=False).stdout
        return [ipaddress.IPv4Interface(line.split()[3]).ip for line in out.splitlines()
                if " inet " in line]

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
