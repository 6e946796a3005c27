"""An LVS topology in network namespaces for the L4 tests and benchmarks (root, iproute2).

`L4Net(mode)` builds a client, a director and real servers on 198.18.0.0/15 only (DESIGN.md
address plan), named like the seeds' set-ups:

    front LAN 198.18.0.0/24 (bridge namespace <p>bf)
        client    <p>c   eth0 198.18.0.200 (+ 198.18.0.201.. as extra client addresses)
        director  <p>d   eth0 198.18.0.1, the VIP 198.18.0.100/32 (the seeds' ens192:0)
    mode "nat" (classic LVS-NAT, two-armed): back LAN 198.18.1.0/24 (bridge <p>bb)
        director  eth1 198.18.1.1, ip_forward on
        rsN       <p>rN  eth0 198.18.1.1N, default route via 198.18.1.1 (replies come back
                         through the director, which un-NATs them)
        client    eth1 198.18.1.200 with client_on_back=True (benchmarks: the backends
                  straight, without the director)
    mode "onearm" (NAT with masquerade): the real servers sit on the front LAN
        rsN       eth0 198.18.0.1N (replies would bypass the director: it must SNAT)
    mode "dr" (the seeds' DR set-up): the real servers sit on the front LAN
        rsN       eth0 198.18.0.1N, the VIP on lo (/32), and the seeds' sysctls
                  arp_ignore=1 / arp_announce=2 on all, lo and eth0

Every real server runs `halb.testing.l4peers serve` (TCP, and UDP on the same port) answering
its name ("rs1"...) on port 80. `close()` kills every process started through the topology,
then deletes the namespaces (their veths go with them); it is safe after a failed build and
twice. Use it as a context manager.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from halb.testing.netns import Topology, ip, ns_exists

VIP = "198.18.0.100"
DIRECTOR = "198.18.0.1"
DIRECTOR_BACK = "198.18.1.1"
CLIENT = "198.18.0.200"
CLIENT_BACK = "198.18.1.200"
MODES = ("nat", "onearm", "dr")
ARP_SYSCTLS = ("arp_ignore=1", "arp_announce=2")


def sysctl(ns: str, key: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"],
                   check=True, capture_output=True, timeout=10)


@dataclass(eq=False)
class Server:
    name: str  # "rs1"
    ns: str
    addr: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


class L4Net(Topology):
    def __init__(self, mode: str = "nat", servers: int = 3, clients: int = 4,
                 prefix: str | None = None, port: int = 80, serve: bool = True,
                 client_on_back: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self.prefix = prefix or f"l4{os.getpid() % 100000}"
        self.port = port
        self.serve = serve
        self.client_on_back = client_on_back and mode == "nat"
        self.client_ns = f"{self.prefix}c"
        self.director_ns = f"{self.prefix}d"
        self.front_ns = f"{self.prefix}bf"
        self.back_ns = f"{self.prefix}bb"
        back = mode == "nat"
        self.servers = [Server(f"rs{i}", f"{self.prefix}r{i}",
                               f"198.18.{1 if back else 0}.{10 + i}")
                        for i in range(1, servers + 1)]
        self.clients = [CLIENT] + [f"198.18.0.{201 + i}" for i in range(clients - 1)]
        self.vip = VIP
        self._made: list[str] = []
        self._ports = 0
        self.procs: list[subprocess.Popen[bytes]] = []

    # -- building -----------------------------------------------------------------------------

    def _ns(self, name: str) -> None:
        if ns_exists(name):
            self._kill_ns(name)
            ip("netns", "del", name, check=False)
        ip("netns", "add", name)
        self._made.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def _bridge(self, ns: str) -> None:
        self._ns(ns)
        ip("-n", ns, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
        ip("-n", ns, "link", "set", "br0", "up")

    def _plug(self, bridge_ns: str, ns: str, ifname: str, cidrs: list[str]) -> None:
        self._ports += 1
        port = f"p{self._ports}"
        ip("-n", bridge_ns, "link", "add", port, "type", "veth", "peer", "name", ifname,
           "netns", ns)
        ip("-n", bridge_ns, "link", "set", port, "master", "br0", "up")
        for cidr in cidrs:
            ip("-n", ns, "addr", "add", cidr, "dev", ifname)
        ip("-n", ns, "link", "set", ifname, "up")

    def build(self) -> None:
        self._bridge(self.front_ns)
        self._ns(self.client_ns)
        self._plug(self.front_ns, self.client_ns, "eth0", [f"{a}/24" for a in self.clients])
        self._ns(self.director_ns)
        self._plug(self.front_ns, self.director_ns, "eth0", [f"{DIRECTOR}/24", f"{VIP}/32"])
        sysctl(self.director_ns, "net.ipv4.ip_forward", "1")
        if self.mode == "nat":
            self._bridge(self.back_ns)
            self._plug(self.back_ns, self.director_ns, "eth1", [f"{DIRECTOR_BACK}/24"])
            if self.client_on_back:  # "straight to a backend", without the director
                self._plug(self.back_ns, self.client_ns, "eth1", [f"{CLIENT_BACK}/24"])
        for s in self.servers:
            self._ns(s.ns)
            bridge = self.back_ns if self.mode == "nat" else self.front_ns
            self._plug(bridge, s.ns, "eth0", [f"{s.addr}/24"])
            if self.mode == "nat":
                ip("-n", s.ns, "route", "add", "default", "via", DIRECTOR_BACK)
            if self.mode == "dr":  # the seeds' lvs_dr_rs.sh
                ip("-n", s.ns, "addr", "add", f"{VIP}/32", "dev", "lo")
                for dev in ("all", "lo", "eth0"):
                    for kv in ARP_SYSCTLS:
                        key, value = kv.split("=")
                        sysctl(s.ns, f"net.ipv4.conf.{dev}.{key}", value)
        self.wait_links()
        if self.serve:
            for s in self.servers:
                self.start_server(s)

    def wait_links(self, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        ends = [(self.client_ns, "eth0"), (self.director_ns, "eth0")]
        ends += [(s.ns, "eth0") for s in self.servers]
        if self.mode == "nat":
            ends.append((self.director_ns, "eth1"))
        if self.client_on_back:
            ends.append((self.client_ns, "eth1"))
        for ns, ifname in ends:
            while "LOWER_UP" not in ip("-n", ns, "link", "show", ifname).stdout:
                if time.monotonic() > end:
                    raise RuntimeError(f"{ns}/{ifname} did not come up")
                time.sleep(0.02)

    # -- processes ------------------------------------------------------------------------------

    def popen(self, ns: str, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        """A process in namespace `ns`, in its own session (killed by close())."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], start_new_session=True,
                                **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def run(self, ns: str, argv: list[str], timeout: float = 60.0,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True,
                              text=True, timeout=timeout, input=input)

    def start_server(self, s: Server) -> None:
        argv = [sys.executable, "-m", "halb.testing.l4peers", "serve", "--name", s.name,
                "--port", str(self.port), "--udp"]
        proc = self.popen(s.ns, argv, stdout=subprocess.PIPE)
        s.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"{s.name} did not start: {line!r}")

    def probe(self, count: int, *, sources: list[str] | None = None, port: int | None = None,
              udp: bool = False, to: str | None = None, timeout: float = 5.0) -> dict[str, object]:
        """`count` connections from the client to VIP:port, one after the other: the names
        answered (None for a failure) and the bytes sent and received."""
        argv = [sys.executable, "-m", "halb.testing.l4peers", "probe",
                "--to", f"{to or self.vip}:{port or self.port}", "--count", str(count),
                "--timeout", str(timeout)]
        for src in sources or []:
            argv += ["--source", src]
        if udp:
            argv.append("--udp")
        out = self.run(self.client_ns, argv, timeout=60 + count * timeout)
        if out.returncode != 0:
            raise RuntimeError(f"probe failed: {out.stderr}")
        result: dict[str, object] = json.loads(out.stdout)
        return result

    def hold(self, count: int, *, sources: list[str] | None = None
             ) -> tuple[subprocess.Popen[bytes], list[str | None]]:
        """`count` connections kept open until the returned process's stdin is closed."""
        argv = [sys.executable, "-m", "halb.testing.l4peers", "probe",
                "--to", f"{self.vip}:{self.port}", "--count", str(count), "--hold"]
        for src in sources or []:
            argv += ["--source", src]
        proc = self.popen(self.client_ns, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("hold probe failed")
        names: list[str | None] = json.loads(line)["names"]
        return proc, names

    @staticmethod
    def again(proc: subprocess.Popen[bytes]) -> list[str | None]:
        """One more request on every connection `hold` keeps: the names that answer."""
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"again\n")
        proc.stdin.flush()
        names: list[str | None] = json.loads(proc.stdout.readline())["names"]
        return names

    @staticmethod
    def release(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            if proc.stdin:
                proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)

    def director(self, argv: list[str], timeout: float = 30.0
                 ) -> subprocess.CompletedProcess[str]:
        """A command in the director's namespace (e.g. `halb ipvsadm ...`)."""
        return self.run(self.director_ns, argv, timeout=timeout)

    # -- teardown -------------------------------------------------------------------------------

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    @staticmethod
    def _kill_ns(name: str) -> None:
        for pid in ip("netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.kill(int(pid), signal.SIGKILL)

    def close(self) -> None:
        for proc in self.procs:
            self._kill(proc)
        self.procs = []
        for s in self.servers:
            s.procs = []
        for name in reversed(self._made):
            self._kill_ns(name)
            ip("netns", "del", name, check=False)
        self._made = []
