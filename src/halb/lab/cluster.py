"""The lab's processes: start, stop, crash and observe the roles of the cluster (root).

`Cluster(state_dir)` drives the lab recorded in `<state_dir>/state.json` (halb.lab.topology):
`up(mode)` builds the namespaces and starts every role, `down()` removes everything, and the
scenarios use `start(role)`, `stop(role)`, `crash(host)` / `revive(host)` and the views
(`holders`, `lvs`, `status`). Roles (process names in the state file):

    web1..3.backend     halb backend on :8080 (both modes: the seeds' Tomcats)
    ngx1/2.nginx        `halb nginx` | nginx (daemonized through the node's start-nginx.sh,
                        which the check script also runs; tracked by logs/nginx.pid)
    ngx1/2.keepalived   chapter 3's dual master + check_nginx: `halb keepalived -P` | keepalived
    dir1/2.keepalived   halb mode: `halb keepalived` with the seed's whole file (VRRP + the
                        virtual_server on the nftables DR data plane);
                        peers mode: keepalived -P with the VRRP half only (this kernel has no
                        IPVS), and beside it
    dir1/2.director     `halb keepalived -C` (checkers + the L4 director, nftables DR)

Files live in `<state_dir>/<host>/` (configs, logs, pid files, the ipvsadm socket).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from halb.lab import plan
from halb.lab import topology as topo
from halb.testing.netns import AddressReader, ip, run_in_netns

HALB = [sys.executable, "-m", "halb"]


def peer_binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"{name} is not installed (make peers installs it)")


def wait_for(what: Callable[[], object], timeout: float, step: float = 0.05,
             why: str = "") -> object:
    end = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > end:
            raise TimeoutError(f"not reached after {timeout:g}s: {why or what}")
        time.sleep(step)


class Cluster:
    def __init__(self, state_dir: str = topo.DEFAULT_DIR, prefix: str | None = None) -> None:
        loaded = topo.State.load(state_dir)
        self.state = loaded or topo.State(dir=state_dir, prefix=prefix or plan.DEFAULT_PREFIX)
        self.dir = pathlib.Path(state_dir)
        self._readers: dict[str, AddressReader] = {}
        self.offline: set[str] = set()  # hosts whose cable is pulled (crash)

    @property
    def mode(self) -> str:
        return self.state.mode

    def ns(self, host: str) -> str:
        return self.state.ns(host)

    def path(self, host: str, name: str = "") -> pathlib.Path:
        p = self.dir / host
        p.mkdir(parents=True, exist_ok=True)
        return p / name if name else p

    def is_up(self) -> bool:
        return bool(self.state.namespaces)

    # -- up / down ------------------------------------------------------------------------------

    def up(self, mode: str = "halb", wait: bool = True) -> None:
        if mode not in plan.MODES:
            raise ValueError(f"mode must be one of {plan.MODES}")
        if mode == "peers":
            peer_binary("keepalived")
            peer_binary("nginx")
        if self.is_up():
            raise RuntimeError(f"a lab is already up (state {self.state.path}); "
                               "`halb lab down` first")
        self.state.mode = mode
        self.state.created = time.time()
        self.state.save()
        try:
            topo.build(self.state)
            self.write_configs()
            for h in plan.BACKENDS:
                self.start(f"{h.name}.backend")
            for h in plan.NGINX:
                self.start(f"{h.name}.nginx")
            for h in plan.NGINX:
                self.start(f"{h.name}.keepalived")
            for h in plan.DIRECTORS:
                if mode == "peers":
                    self.start(f"{h.name}.director")
                self.start(f"{h.name}.keepalived")
            if wait:
                self.wait_baseline()
        except BaseException:
            self.down()
            raise

    def down(self) -> list[str]:
        self.close_readers()
        removed = topo.teardown(self.state)
        with contextlib.suppress(FileNotFoundError):
            self.state.path.unlink()
        for h in plan.HOSTS:
            shutil.rmtree(self.dir / h.name, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.dir.rmdir()
        return removed

    def close_readers(self) -> None:
        for r in self._readers.values():
            r.close()
        self._readers = {}

    # -- configuration files --------------------------------------------------------------------

    def write_configs(self) -> None:
        for h in plan.DIRECTORS:
            self.path(h.name, "keepalived.conf").write_text(plan.director_conf(h.name))
            self.path(h.name, "vrrp.conf").write_text(plan.director_vrrp(h.name))
        for h in plan.NGINX:
            base = self.path(h.name)
            (base / "logs").mkdir(exist_ok=True)
            (base / "nginx.conf").write_text(plan.nginx_conf(h.name))
            start = base / "start-nginx.sh"
            start.write_text(plan.start_nginx_script(self.nginx_argv(h.name),
                                                     str(base / "broken")))
            check = base / "check_nginx_alive_or_dead.sh"
            check.write_text(plan.check_nginx_script(str(start), str(base / "ka.pid")))
            for script in (start, check):
                script.chmod(0o755)
            (base / "keepalived.conf").write_text(plan.nginx_keepalived_conf(h.name, str(check)))

    def nginx_argv(self, host: str) -> list[str]:
        base = str(self.path(host)) + "/"
        binary = [*HALB, "nginx"] if self.mode == "halb" else [peer_binary("nginx")]
        return [*binary, "-p", base, "-e", "logs/error.log", "-c", "nginx.conf"]

    def _keepalived_argv(self, host: str, conf: str, tag: str, halves: list[str],
                         extra: list[str]) -> list[str]:
        base = self.path(host)
        pids = ["-p", str(base / f"{tag}.pid"), "-r", str(base / f"{tag}.vrrp.pid"),
                "-c", str(base / f"{tag}.check.pid")]
        return [*halves, "-n", "-l", "-D", "-f", str(base / conf), *pids, *extra]

    def argv(self, role: str) -> tuple[list[str], str | None]:
        """(argv, pid file or None) of a role."""
        host, kind = role.split(".")
        h = plan.host(host)
        base = self.path(host)
        if kind == "backend":
            return [*HALB, "backend", "--listen", f"{h.addr}:{plan.BACKEND_PORT}", "--name",
                    host, "-q", "--health-file", str(base / "unhealthy")], None
        if kind == "nginx":
            return [str(base / "start-nginx.sh")], str(base / "logs" / "nginx.pid")
        sock = ["--dataplane", "nftables", "--ipvsadm-socket", str(base / "ipvsadm.sock")]
        if kind == "director":  # peers mode: halb's checkers + L4 director beside keepalived
            return [*HALB, "keepalived", *self._keepalived_argv(
                host, "keepalived.conf", "director", ["-C"], sock)], None
        if h.role == "director":
            if self.mode == "halb":
                return [*HALB, "keepalived", *self._keepalived_argv(
                    host, "keepalived.conf", "ka", [], sock)], None
            return [peer_binary("keepalived"), *self._keepalived_argv(
                host, "vrrp.conf", "ka", ["-P"], [])], None
        binary = [*HALB, "keepalived"] if self.mode == "halb" else [peer_binary("keepalived")]
        return [*binary, *self._keepalived_argv(host, "keepalived.conf", "ka", ["-P"], [])], None

    # -- processes ------------------------------------------------------------------------------

    def start(self, role: str, timeout: float = 15.0) -> topo.Proc:
        host = role.split(".")[0]
        old = self.state.procs.get(role)
        if old is not None and old.alive():
            return old
        argv, pidfile = self.argv(role)
        ns = self.ns(host)
        log = open(self.path(host, f"{role.split('.')[1]}.log"), "ab")  # noqa: SIM115
        env = {**os.environ, "TMPDIR": str(self.path(host))}
        if pidfile:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pidfile)
        try:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=log, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        finally:
            log.close()
        if pidfile:  # a daemon: the start script exits, the pid file names the master
            code = proc.wait(timeout)
            if code != 0:
                raise RuntimeError(f"{role} did not start (exit {code}); see "
                                   f"{self.path(host)}")
            wait_for(lambda: _read_pid(pidfile), timeout, why=f"{role} pid file")
            pid = _read_pid(pidfile) or 0
            p = topo.Proc(role, ns, pid, topo.proc_start(pid), pid)
        else:
            p = topo.Proc(role, ns, proc.pid, topo.proc_start(proc.pid), proc.pid)
            # a daemon that outlives this controller: topology.stop_proc reaps it by pid
            # (os.waitpid) when it is ours; Popen must not (nor warn that it still runs)
            proc.returncode = 0
        self.state.procs[role] = p
        self.state.save()
        return p

    def adopt(self, role: str) -> bool:
        """Re-read a daemon's pid file (a check script may have restarted it)."""
        _argv, pidfile = self.argv(role)
        pid = _read_pid(pidfile) if pidfile else None
        if pid is None or topo.proc_start(pid) is None:
            return False
        self.state.procs[role] = topo.Proc(role, self.ns(role.split(".")[0]), pid,
                                           topo.proc_start(pid), pid)
        self.state.save()
        return True

    def alive(self, role: str) -> bool:
        p = self.state.procs.get(role)
        return p is not None and p.alive()

    def stop(self, role: str, sig: int = signal.SIGTERM) -> bool:
        p = self.state.procs.get(role)
        if p is None:
            return False
        return topo.stop_proc(p, sig)

    def roles(self, host: str) -> list[str]:
        return [r for r in self.state.procs if r.split(".")[0] == host]

    def crash(self, host: str) -> float:
        """The host loses power: SIGKILL to all its processes, its cable pulled."""
        t = time.monotonic()
        for role in self.roles(host):
            p = self.state.procs[role]
            if p.alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pgid, signal.SIGKILL)
        ip("-n", self.ns(host), "link", "set", "eth0", "down")
        self.offline.add(host)
        for role in self.roles(host):
            self.stop(role, signal.SIGKILL)
        return t

    def revive(self, host: str) -> None:
        """The host boots again: no VIP, no nft table, no pid files; cable in; roles started."""
        ns = self.ns(host)
        h = plan.host(host)
        for addr in self.addresses(host):
            if addr != h.addr:
                ip("-n", ns, "addr", "del", f"{addr}/32", "dev", "eth0", check=False)
        for family in ("ip", "netdev"):
            subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", family, "halb"],
                           capture_output=True, timeout=10)
        for f in self.path(host).glob("*.pid"):
            f.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.path(host) / "ipvsadm.sock").unlink()
        ip("-n", ns, "link", "set", "eth0", "up")
        self.offline.discard(host)
        roles = self.roles(host)
        for role in ["director", "keepalived"]:
            full = f"{host}.{role}"
            if full in roles:
                self.start(full)

    # -- views ----------------------------------------------------------------------------------

    def addresses(self, host: str) -> list[str]:
        ns = self.ns(host)
        reader = self._readers.get(ns)
        if reader is None:
            reader = self._readers[ns] = AddressReader(ns)
        return [str(a) for a in reader.addresses("eth0")]

    def holders(self, vip: str, hosts: tuple[plan.Host, ...] | None = None) -> list[str]:
        """The hosts on the LAN that have `vip` (a crashed host's stale VIP does not count)."""
        hosts = hosts or (*plan.DIRECTORS, *plan.NGINX)
        return [h.name for h in hosts if h.name not in self.offline
                and vip in self.addresses(h.name)]

    def ipvsadm(self, host: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HALB_IPVSADM_SOCKET": str(self.path(host, "ipvsadm.sock"))}
        return subprocess.run([*HALB, "ipvsadm", *args], capture_output=True, text=True,
                              timeout=30, env=env)

    def lvs(self, host: str) -> list[str]:
        """The real servers in a director's table ("198.18.0.11:80"), [] when unreachable."""
        out = self.ipvsadm(host, "-L", "-n")
        if out.returncode != 0:
            return []
        return sorted(line.split()[1] for line in out.stdout.splitlines()
                      if line.startswith("  -> ") and not line.startswith("  -> RemoteAddress"))

    def get(self, target: str, path: str = "/", source: str | None = None,
            timeout: float = 2.0) -> tuple[int | str, str | None, str | None]:
        """One GET from the client namespace: (status, backend, nginx node address)."""
        from halb.lab.load import parse_answer

        host, port = target.rsplit(":", 1)

        def fetch() -> bytes:
            with socket.socket() as s:
                s.settimeout(timeout)
                if source:
                    s.bind((source, 0))
                s.connect((host, int(port)))
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                          .encode())
                out = b""
                while chunk := s.recv(65536):
                    out += chunk
                return out

        try:
            return parse_answer(run_in_netns(self.ns("client"), fetch))
        except OSError as e:
            return f"error:{e}", None, None

    def baseline_problems(self) -> list[str]:
        """What differs from the cluster at rest (empty when it is at rest)."""
        problems = [f"{r} is not running" for r, p in self.state.procs.items() if not p.alive()]
        want = {plan.VIP: ["dir1"], plan.VIP1: ["ngx1"], plan.VIP2: ["ngx2"]}
        for vip, holders in want.items():
            got = self.holders(vip)
            if got != holders:
                problems.append(f"{vip} is held by {got or 'nobody'}, not {holders}")
        servers = sorted(f"{h.addr}:{plan.PORT}" for h in plan.NGINX)
        for d in plan.DIRECTORS:
            table = self.lvs(d.name)
            if table != servers:
                problems.append(f"{d.name}'s LVS table has {table}")
        if not problems:
            status = self.get(f"{plan.VIP}:{plan.PORT}")[0]
            if status != 200:
                problems.append(f"GET http://{plan.VIP}/ from the client: {status}")
        return problems

    def wait_baseline(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while True:
            problems = self.baseline_problems()
            if not problems:
                return
            if time.monotonic() > end:
                raise TimeoutError("the lab did not settle: " + "; ".join(problems))
            time.sleep(0.2)

    def restore(self) -> None:
        """Back to rest after a scenario: repaired nodes, every role running, settled."""
        for h in plan.HOSTS:
            if h.role == "client":
                continue
            if "LOWER_UP" not in ip("-n", self.ns(h.name), "link", "show", "eth0").stdout:
                self.revive(h.name)
        for h in plan.NGINX:
            with contextlib.suppress(FileNotFoundError):
                (self.path(h.name) / "broken").unlink()
            self.adopt(f"{h.name}.nginx")
        for h in plan.BACKENDS:
            with contextlib.suppress(FileNotFoundError):
                (self.path(h.name) / "unhealthy").unlink()
        order = sorted(self.state.procs, key=lambda r: ("keepalived" in r, "director" in r))
        for role in order:
            if not self.alive(role):
                self.start(role)
        self.wait_baseline()

    def status(self) -> str:
        if not self.is_up():
            return "no lab is up\n"
        lines = [f"halb lab ({self.mode} mode), state {self.state.path}", "", "processes:"]
        for role, p in sorted(self.state.procs.items()):
            lines.append(f"  {role:<20} {'running' if p.alive() else 'STOPPED':<8} pid {p.pid}"
                         f"  ns {p.ns}")
        lines += ["", "virtual addresses:"]
        for vip, what in ((plan.VIP, "LVS (directors)"), (plan.VIP1, "VI_1 (nginx nodes)"),
                          (plan.VIP2, "VI_2 (nginx nodes)")):
            lines.append(f"  {vip:<14} {what:<20} held by {', '.join(self.holders(vip)) or '-'}")
        lines += ["", "LVS tables:"]
        for d in plan.DIRECTORS:
            lines.append(f"  {d.name}: {', '.join(self.lvs(d.name)) or '(no director)'}")
        status, backend, peer = self.get(f"{plan.VIP}:{plan.PORT}")
        lines += ["", f"GET http://{plan.VIP}/ from the client: {status} "
                      f"(backend {backend or '-'}, nginx {plan.node_of(peer or '') or '-'})"]
        return "\n".join(lines) + "\n"


def _read_pid(path: str | None) -> int | None:
    if not path:
        return None
    try:
        text = pathlib.Path(path).read_text().split()
    except OSError:
        return None
    return int(text[0]) if text and text[0].isdigit() else None
