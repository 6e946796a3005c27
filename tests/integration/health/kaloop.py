"""What the loopback `halb keepalived -C` tests share: real servers (`halb.testing.l4peers
serve`), the processes a test starts (all stopped by the `procs` fixture in conftest.py, also
when the test fails), a port free on the VIP, and a wait that says why it gave up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

PY = sys.executable


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(what: Callable[[], object], timeout: float, why: Callable[[], str]) -> None:
    end = time.monotonic() + timeout
    while not what():
        if time.monotonic() > end:
            raise AssertionError(f"still false after {timeout}s\n{why()}")
        time.sleep(0.05)


def listing(sock: str) -> str:
    """`halb ipvsadm -L -n` against the checker's control socket."""
    env = dict(os.environ, HALB_IPVSADM_SOCKET=sock)
    return subprocess.run([PY, "-m", "halb", "ipvsadm", "-L", "-n"], capture_output=True,
                          text=True, env=env, timeout=30).stdout


def names(vip: str, port: int, n: int) -> list[str | None]:
    """The real servers that answered n new connections to vip:port (None: no answer)."""
    out = subprocess.run([PY, "-m", "halb.testing.l4peers", "probe", "--to", f"{vip}:{port}",
                          "--count", str(n), "--timeout", "2"],
                         capture_output=True, text=True, timeout=60)
    return list(json.loads(out.stdout)["names"])


class Procs:
    """The processes of one test, in start order."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, start_new_session=True, **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def serve(self, name: str, host: str, port: int) -> subprocess.Popen[bytes]:
        """A real server answering `name` on host:port, once it is ready."""
        proc = self.start([PY, "-m", "halb.testing.l4peers", "serve", "--name", name,
                           "--host", host, "--port", str(port)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()

    def stop_all(self) -> None:
        from halb.testing.netns import stop_group

        for proc in reversed(self.procs):
            if proc.poll() is None:
                stop_group(proc)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
