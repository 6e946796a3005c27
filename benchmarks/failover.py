"""VIP failover time, halb against keepalived 2.2.7, in network namespaces (root).

    sudo .venv/bin/python benchmarks/failover.py [--rounds 20] [--figures kill-v2,term-v2,...]

Two LANs of network namespaces on 198.18.0.0/15 (halb.testing.netns.Lan), one running a halb
pair, one a keepalived pair: two nodes with the same priority (100, state BACKUP: whoever holds
the VIP keeps it, so the rounds alternate between the nodes without preemption), a small TCP
listener on 0.0.0.0:8080 on both nodes, and a client. A round takes down the node holding the
VIP and measures, from that instant, the time to the first TCP connection to VIP:8080 that
the other node answers (each listener sends its node's name: after a SIGTERM the old master
serves the VIP until it has sent priority 0 and removed it, those connections do not count),
with connection attempts started every 2 ms from the client (each given 0.5 s).

A killed master is replaced Master_Down_Interval after the last advert the backup heard, so
the figure depends on when, within the advert interval, the master dies. Left to chance, that
phase alone moves a median of 20 rounds by several percent; here it is controlled instead: a
sniffer in the client namespace sees the master's adverts, and round k takes the master down
at a phase of (k + 1/2)/rounds of the interval after one (the rounds' order shuffled, the same
phases for both implementations), so both are measured over the same spread of phases.

Figures (20 rounds each, alternating the halb and the keepalived pair round by round):

  kill-v2   SIGKILL of the master's processes and its cable pulled (a host that dies),
            VRRPv2 with PASS authentication, advert_int 1
  term-v2   SIGTERM to the master's daemon (a graceful stop: priority 0, VIPs removed), v2
  kill-v3   as kill-v2, VRRPv3, advert_int 0.1
  term-v3   as term-v2, VRRPv3, advert_int 0.1

Printed: median and p95 per figure and implementation, the ratio halb / keepalived, and the
split of the median into "VIP configured on the new master" and "first connect" (GARP and the
client's retry). For reference, RFC timers at priority 100: v2 Skew_Time 0.609 s, a killed
master is replaced between Master_Down_Interval - advert_int and MDI (2.61-3.61 s); v3/0.1 s:
Skew 0.061 s, 0.261-0.361 s.

Everything runs in the namespaces the script creates and removes (also on Ctrl-C or failure).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import pathlib
import random
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from halb.testing.netns import Lan, netns_socket, run_in_netns

HALB = [sys.executable, "-m", "halb"]
VIP = "198.18.0.100"
PORT = 8080
PROBE_EVERY = 0.002
PROBE_TIMEOUT = 0.5
FIGURES = {
    "kill-v2": ("kill", 2, 1.0),
    "term-v2": ("term", 2, 1.0),
    "kill-v3": ("kill", 3, 0.1),
    "term-v3": ("term", 3, 0.1),
}
LISTENER = ("import socket, sys\n"
            "name = sys.argv[1].encode()\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('0.0.0.0', {PORT})); s.listen(512)\n"
            "while True:\n"
            "    c, _ = s.accept()\n"
            "    try:\n"
            "        c.sendall(name)\n"
            "    except OSError:\n"
            "        pass\n"
            "    c.close()\n")


def conf(version: int, advert_int: float) -> str:
    auth = ("    authentication {\n        auth_type PASS\n        auth_pass 1111\n    }\n"
            if version == 2 else "")
    return f"""global_defs {{
    router_id failover_bench
    vrrp_version {version}
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    advert_int {advert_int:g}
{auth}    virtual_ipaddress {{
        {VIP}
    }}
}}
"""


class Prober:
    """TCP connection attempts to VIP:PORT from the client namespace, on a thread of its own:
    `measure(deadline, node)` starts an attempt every PROBE_EVERY until one is answered by
    `node` (each listener sends its node's name) and returns the monotonic time that
    connection was established (None: not before the deadline)."""

    def __init__(self, lan: Lan) -> None:
        self.lan = lan

    def measure(self, deadline: float, node: str | None = None) -> float | None:
        want = node.encode() if node is not None else None
        return run_in_netns(self.lan.client_ns, lambda: self._probe(deadline, want))

    @staticmethod
    def _probe(deadline: float, want: bytes | None) -> float | None:
        pending: dict[socket.socket, float] = {}  # connecting, since
        connected: dict[socket.socket, float] = {}  # waiting for the name, connected at
        sel = selectors.DefaultSelector()

        def drop(s: socket.socket) -> None:
            pending.pop(s, None)
            connected.pop(s, None)
            sel.unregister(s)
            s.close()

        next_start = time.monotonic()
        try:
            while time.monotonic() < deadline:
                now = time.monotonic()
                if now >= next_start:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    err = s.connect_ex((VIP, PORT))
                    if err in (0, errno.EINPROGRESS):
                        pending[s] = now
                        sel.register(s, selectors.EVENT_WRITE)
                    else:
                        s.close()
                    next_start = now + PROBE_EVERY
                for table in (pending, connected):
                    for s, started in list(table.items()):
                        if now - started > PROBE_TIMEOUT:
                            drop(s)
                wait = max(0.0, next_start - time.monotonic())
                events = sel.select(wait)
                at = time.monotonic()
                for key, _mask in events:
                    s = key.fileobj  # type: ignore[assignment]
                    if s in pending:
                        del pending[s]
                        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                            connected[s] = at
                            sel.modify(s, selectors.EVENT_READ)
                        else:
                            sel.unregister(s)
                            s.close()
                    elif s in connected:
                        t = connected[s]
                        try:
                            name = s.recv(64)
                        except OSError:
                            name = b""
                        drop(s)
                        if name and (want is None or name == want):
                            return t
            return None
        finally:
            for s in [*pending, *connected]:
                s.close()
            sel.close()


class Sniffer:
    """The VRRP adverts seen from the client namespace: when each source last sent one."""

    def __init__(self, lan: Lan) -> None:
        self.sock = netns_socket(lan.client_ns, socket.AF_PACKET, socket.SOCK_RAW,
                                 socket.htons(0x0800))
        self.sock.settimeout(0.2)
        self.last: dict[str, float] = {}
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            if len(frame) >= 14 + 20 + 8 and frame[14 + 9] == 112 and frame[14 + 20 + 2]:
                with self.cond:
                    self.last[socket.inet_ntoa(frame[26:30])] = now
                    self.cond.notify_all()

    def next_advert(self, src: str, timeout: float) -> float:
        """The arrival time of the next advert from `src` (priority > 0)."""
        end = time.monotonic() + timeout
        with self.cond:
            seen = self.last.get(src, 0.0)
            while self.last.get(src, 0.0) == seen:
                left = end - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no advert from {src} in {timeout}s")
                self.cond.wait(left)
            return self.last[src]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@dataclass
class Pair:
    """One implementation's pair of nodes on a LAN of its own."""

    impl: str
    lan: Lan
    tmp: pathlib.Path
    keepalived: str | None
    sniffer: Sniffer
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    listeners: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    conf_text: str = ""
    starts: int = 0

    def log_path(self, node: str) -> pathlib.Path:
        return self.tmp / f"{self.impl}-{node}.log"

    def start_listener(self, node: str) -> None:
        old = self.listeners.get(node)
        if old is not None and old.poll() is None:
            return
        self.listeners[node] = self.lan.popen(node, [sys.executable, "-c", LISTENER, node],
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL)

    def start_daemon(self, node: str) -> int:
        """Start the daemon; returns the log offset its lines start at."""
        path = self.tmp / f"{self.impl}-{node}.conf"
        path.write_text(self.conf_text)
        pids = [str(self.tmp / f"{self.impl}-{node}.{k}.pid") for k in ("main", "vrrp", "chk")]
        for p in pids:
            pathlib.Path(p).unlink(missing_ok=True)
        if self.impl == "halb":
            argv = [*HALB, "keepalived", "-n", "-l", "-P", "-f", str(path), "-p", pids[0],
                    "-r", pids[1]]
        else:
            assert self.keepalived is not None
            argv = [self.keepalived, "-n", "-l", "-P", "-f", str(path), "-p", pids[0], "-r",
                    pids[1], "-c", pids[2]]
        log = self.log_path(node)
        offset = log.stat().st_size if log.exists() else 0
        with open(log, "ab") as f:
            self.daemons[node] = self.lan.popen(node, argv, stdout=f, stderr=subprocess.STDOUT)
        self.starts += 1
        return offset

    def wait_log(self, node: str, text: str, offset: int, timeout: float) -> None:
        end = time.monotonic() + timeout
        while True:
            with open(self.log_path(node), "rb") as f:
                f.seek(offset)
                if text.encode() in f.read():
                    return
            if time.monotonic() > end:
                raise RuntimeError(f"{self.impl} {node}: no {text!r} in {timeout}s")
            time.sleep(0.02)

    def holder(self) -> str | None:
        h = self.lan.holders(VIP)
        return h[0] if len(h) == 1 else None

    def stop_daemon(self, node: str, sig: int = signal.SIGTERM) -> None:
        proc = self.daemons.pop(node, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                Lan.kill(proc)


def quantile(data: list[float], q: float) -> float:
    if len(data) == 1:
        return data[0]
    return statistics.quantiles(data, n=100, method="inclusive")[round(q * 100) - 1]


@dataclass
class Sample:
    total: float
    vip: float  # to the VIP configured on the new master


class Bench:
    def __init__(self, rounds: int, keepalived: str, tmp: pathlib.Path, seed: int) -> None:
        self.rounds = rounds
        self.keepalived = keepalived
        self.tmp = tmp
        self.rng = random.Random(seed)
        self.pairs: dict[str, Pair] = {}
        self.stack = contextlib.ExitStack()

    def __enter__(self) -> Bench:
        base = os.getpid() % 10000
        for i, impl in enumerate(("halb", "keepalived")):
            lan = self.stack.enter_context(Lan(2, "198.18.0.0/24", prefix=f"hf{base}{i}"))
            sniffer = Sniffer(lan)
            self.stack.callback(sniffer.close)
            self.pairs[impl] = Pair(impl, lan, self.tmp, self.keepalived, sniffer)
        return self

    def __exit__(self, *exc: object) -> None:
        for pair in self.pairs.values():
            for node in list(pair.daemons):
                pair.stop_daemon(node)
        self.stack.close()

    def configure(self, version: int, advert_int: float) -> None:
        """(Re)start both pairs with this version and interval; wait for one holder each."""
        for pair in self.pairs.values():
            for node in list(pair.daemons):
                pair.stop_daemon(node)
            for node in ("n1", "n2"):
                pair.start_listener(node)
            pair.conf_text = conf(version, advert_int)
            for node in ("n1", "n2"):
                pair.start_daemon(node)
        for pair in self.pairs.values():
            end = time.monotonic() + 10 + 4 * advert_int
            while pair.holder() is None:
                if time.monotonic() > end:
                    raise RuntimeError(f"{pair.impl}: no single VIP holder")
                time.sleep(0.05)

    def ready(self, pair: Pair, advert_int: float) -> str:
        """Both nodes up, one holding the VIP, the client connected through it once; the
        holder's name."""
        end = time.monotonic() + 10
        while True:
            holder = pair.holder()
            if holder is not None and Prober(pair.lan).measure(time.monotonic() + 1.0, holder):
                return holder
            if time.monotonic() > end:
                raise RuntimeError(f"{pair.impl}: VIP not served before the round")
            time.sleep(0.05)

    def round(self, pair: Pair, how: str, advert_int: float, phase: float) -> Sample:
        """Take the VIP's holder down `phase` (a fraction of advert_int) after one of its
        adverts; the time to the first connection the other node answers."""
        holder = self.ready(pair, advert_int)
        other = "n2" if holder == "n1" else "n1"
        heard = pair.sniffer.next_advert(str(pair.lan.node(holder).address.ip),
                                         advert_int * 3 + 1)
        time.sleep(max(0.0, heard + phase * advert_int - time.monotonic()))
        vip_at: list[float] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                if pair.lan.holders(VIP) == [other]:
                    vip_at.append(time.monotonic())
                    return
                time.sleep(0.002)

        watcher = threading.Thread(target=watch, daemon=True)
        if how == "kill":
            pair.daemons.pop(holder, None)
            watcher.start()
            t0 = pair.lan.crash(holder)
        else:
            proc = pair.daemons.pop(holder)
            watcher.start()
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
        done = Prober(pair.lan).measure(t0 + 10 + 4 * advert_int, other)
        stop.set()
        watcher.join(2)
        if done is None:
            raise RuntimeError(f"{pair.impl}: no connection to the VIP after {how}")
        # bring the node back as a backup
        if how == "kill":
            pair.lan.revive(holder)
            pair.start_listener(holder)
        else:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                Lan.kill(proc)
        offset = pair.start_daemon(holder)
        pair.wait_log(holder, "Entering BACKUP STATE", offset, 15)
        time.sleep(2.5 * advert_int)  # it hears the new master's adverts
        return Sample(done - t0, (vip_at[0] - t0) if vip_at else float("nan"))

    def figure(self, name: str) -> dict[str, list[Sample]]:
        how, version, adv = FIGURES[name]
        self.configure(version, adv)
        out: dict[str, list[Sample]] = {impl: [] for impl in self.pairs}
        phases = [(k + 0.5) / self.rounds for k in range(self.rounds)]
        self.rng.shuffle(phases)
        for i, phase in enumerate(phases):
            for impl in (("halb", "keepalived") if i % 2 == 0 else ("keepalived", "halb")):
                s = self.round(self.pairs[impl], how, adv, phase)
                out[impl].append(s)
                print(f"  {name} round {i + 1:2d} phase {phase:.3f} {impl:10s} "
                      f"{s.total * 1000:7.1f} ms (VIP set at {s.vip * 1000:7.1f} ms)",
                      flush=True)
        return out


def report(results: dict[str, dict[str, list[Sample]]]) -> str:
    lines = [f"{'figure':8s} {'n':>3s} | {'halb median':>11s} {'p95':>8s} | "
             f"{'keepalived median':>17s} {'p95':>8s} | {'ratio median':>12s} {'p95':>6s} | "
             f"VIP set (median) halb / keepalived",
             "-" * 118]
    for name, by_impl in results.items():
        h = [s.total for s in by_impl["halb"]]
        k = [s.total for s in by_impl["keepalived"]]
        hv = statistics.median(s.vip for s in by_impl["halb"])
        kv = statistics.median(s.vip for s in by_impl["keepalived"])
        hm, km = statistics.median(h), statistics.median(k)
        hp, kp = quantile(h, 0.95), quantile(k, 0.95)
        lines.append(f"{name:8s} {len(h):3d} | {hm * 1000:9.1f}ms {hp * 1000:6.1f}ms | "
                     f"{km * 1000:15.1f}ms {kp * 1000:6.1f}ms | {hm / km:12.3f} "
                     f"{hp / kp:6.3f} | {hv * 1000:.1f} ms / {kv * 1000:.1f} ms")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--figures", default=",".join(FIGURES))
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        print("failover.py needs root (network namespaces)", file=sys.stderr)
        return 2
    keepalived = shutil.which("keepalived") or "/usr/sbin/keepalived"
    if not os.access(keepalived, os.X_OK):
        print("keepalived is not installed (apt-get install keepalived)", file=sys.stderr)
        return 2
    names = [n.strip() for n in a.figures.split(",") if n.strip()]
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        print(f"unknown figures {unknown}; known: {', '.join(FIGURES)}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, list[Sample]]] = {}
    with tempfile.TemporaryDirectory(prefix="halb-failover-") as tmp, \
            Bench(a.rounds, keepalived, pathlib.Path(tmp), a.seed) as bench:
        for name in names:
            print(f"{name}: {a.rounds} rounds per implementation", flush=True)
            results[name] = bench.figure(name)
    print()
    print(f"time from the master's failure to the first TCP connect to the VIP "
          f"({a.rounds} rounds per cell; halb {sys.version.split()[0]}, "
          f"{subprocess.run([keepalived, '-v'], capture_output=True, text=True).stderr.split(chr(10))[0]})")
    print(report(results))
    return 0


def _interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: namespaces and daemons removed


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
