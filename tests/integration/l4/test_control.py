"""The control socket and `halb ipvsadm` end to end, on a unix socket in a temporary directory
(no root, no traffic): a fake director (halb.testing.fake_director) served in a thread, the CLI
run as a subprocess, as `ipvsadm` through a link, and `--start-director` in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import pathlib
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest

from halb.l4 import wire
from halb.l4.control import ControlClient, ControlError, ControlServer, NoDirector
from halb.l4.ipvsadm_args import parse
from halb.l4.model import Command
from halb.testing.fake_director import FakeDirector

HALB = pathlib.Path(sys.executable).with_name("halb")
SEEDS_DR = [
    "-C",
    "-A -t 198.18.0.235:8080 -s wrr",
    "-a -t 198.18.0.235:8080 -r 198.18.1.112:8080 -g -w 3",
    "-a -t 198.18.0.235:8080 -r 198.18.1.113:8080 -g -w 1",
]


class Served:
    """A ControlServer over a FakeDirector, on its own event loop in a thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.director = FakeDirector()
        self.loop = asyncio.new_event_loop()
        self.server = ControlServer(self.director, path)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture
def sock(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "run" / "ipvsadm.sock")


@pytest.fixture
def served(sock: str) -> Iterator[Served]:
    with Served(sock) as s:
        yield s


def ipvsadm(sock: str, *args: str, stdin: str = "",
            argv0: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HALB_IPVSADM_SOCKET=sock)
    cmd = [argv0, *args] if argv0 else [str(HALB), "ipvsadm", *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env,
                          timeout=60)


def run_lines(sock: str, lines: list[str]) -> None:
    for line in lines:
        r = ipvsadm(sock, *line.split())
        assert (r.returncode, r.stderr) == (0, ""), line


def test_socket_is_0600_and_removed_on_stop(sock: str) -> None:
    with Served(sock):
        mode = os.lstat(sock).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
    assert not os.path.exists(sock)


def test_the_seeds_dr_setup_then_listing(served: Served, sock: str) -> None:
    run_lines(sock, SEEDS_DR)
    r = ipvsadm(sock, "-Ln")
    assert r.returncode == 0
    assert r.stdout == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  198.18.0.235:8080 wrr\n"
        "  -> 198.18.1.112:8080            Route   3      0          0         \n"
        "  -> 198.18.1.113:8080            Route   1      0          0         \n")
    assert [c.op.value for c in served.director.executed] == ["-C", "-A", "-a", "-a"]


def test_save_clear_restore_round_trip(served: Served, sock: str) -> None:
    run_lines(sock, [*SEEDS_DR, "-A -u 198.18.0.235:53 -s sh -b sh-port -p 60",
                     "-a -u 198.18.0.235:53 -r 198.18.1.112 -m -w 0"])
    saved = ipvsadm(sock, "-S", "-n")
    assert saved.returncode == 0 and saved.stdout.count("\n") == 5
    listing = ipvsadm(sock, "-L", "-n").stdout
    assert ipvsadm(sock, "-C").returncode == 0
    assert "198.18" not in ipvsadm(sock, "-Ln").stdout
    restored = ipvsadm(sock, "-R", stdin=saved.stdout)
    assert (restored.returncode, restored.stderr) == (0, "")
    assert ipvsadm(sock, "-L", "-n").stdout == listing
    assert ipvsadm(sock, "--save", "--numeric").stdout == saved.stdout


def test_director_errors_print_ipvsadm_messages(served: Served, sock: str) -> None:
    run_lines(sock, SEEDS_DR[:3])
    cases = [
        (["-A", "-t", "198.18.0.235:8080"], "Service already exists\n"),
        (["-E", "-t", "198.18.0.9:80"], "No such service\n"),
        (["-a", "-t", "198.18.0.235:8080", "-r", "198.18.1.112:8080"],
         "Destination already exists\n"),
        (["-e", "-t", "198.18.0.235:8080", "-r", "198.18.1.9"], "No such destination\n"),
        (["-d", "-t", "198.18.0.9:80", "-r", "198.18.1.9"], "Service not defined\n"),
        (["-A", "-t", "198.18.0.9:80", "-s", "nosuch"],
         "Scheduler or persistence engine not found\n"),
    ]
    for args, message in cases:
        r = ipvsadm(sock, *args)
        assert (r.returncode, r.stderr, r.stdout) == (255, message, ""), args
    missing = ipvsadm(sock, "-L", "-n", "-t", "198.18.0.9:80")
    assert (missing.returncode, missing.stderr) == (1, "No such service\n")


def test_injected_errno_is_mapped_per_command(served: Served, sock: str) -> None:
    served.director.fail_next(errno.EPERM, errno.ENOMEM)
    r1 = ipvsadm(sock, "-C")
    r2 = ipvsadm(sock, "--set", "1", "2", "1")
    assert (r1.returncode, r1.stderr) == (255, "Permission denied (you must be root)\n")
    assert (r2.returncode, r2.stderr) == (255, "Memory allocation problem\n")


def test_a_data_plane_refusal_says_why(served: Served, sock: str) -> None:
    served.director.fail_next((errno.EOPNOTSUPP, "-g (DR) is not possible in user space"))
    r = ipvsadm(sock, "-a", "-t", "198.18.0.1:80", "-r", "198.18.1.1", "-g")
    assert (r.returncode, r.stderr) == (
        255, "Operation not supported with IPv6\nhalb: -g (DR) is not possible in user space\n")


def test_usage_errors_need_no_director(sock: str) -> None:
    r = ipvsadm(sock, "-d", "-t", "198.18.0.10:80", "-r", "198.18.1.1", "-w", "2")
    assert (r.returncode, r.stderr) == (
        2, "Illegal 'weight' option with the 'delete-server' command\n")
    h = ipvsadm(sock, "-h")
    assert h.returncode == 0 and h.stdout.startswith("ipvsadm v1.31 2019/12/24")


def test_no_director_running(sock: str) -> None:
    r = ipvsadm(sock, "-L", "-n")
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert lines[0].startswith("Can't initialize ipvs: ")
    assert sock in lines[0]
    assert lines[1] == "Are you sure that IP Virtual Server is built in the kernel or as module?"
    assert "halb ipvsadm --start-director" in lines[2]
    assert r.stdout == ""


def test_busybox_style_link_named_ipvsadm(served: Served, sock: str,
                                          tmp_path: pathlib.Path) -> None:
    link = tmp_path / "ipvsadm"
    link.symlink_to(HALB)
    run_lines(sock, SEEDS_DR[:2])
    r = ipvsadm(sock, "-Ln", argv0=str(link))
    assert r.returncode == 0 and "TCP  198.18.0.235:8080 wrr\n" in r.stdout


def test_listing_connections_and_timeouts(served: Served, sock: str) -> None:
    assert ipvsadm(sock, "--set", "1", "2", "1").returncode == 0
    assert ipvsadm(sock, "-L", "--timeout").stdout == "Timeout (tcp tcpfin udp): 1 2 1\n"
    c = ipvsadm(sock, "-L", "-n", "-c")
    assert c.returncode == 0
    assert c.stdout == ("IPVS connection entries\n"
                        "pro expire state       source             virtual            "
                        "destination\n")


def test_daemon_commands_are_refused_honestly(served: Served, sock: str) -> None:
    stop = ipvsadm(sock, "--stop-daemon", "master")
    assert (stop.returncode, stop.stderr) == (255, "No daemon is running\n")
    start = ipvsadm(sock, "--start-daemon", "master")
    assert start.returncode == 255 and "sync daemon" in start.stderr
    assert ipvsadm(sock, "-L", "--daemon").stdout == ""


def test_bad_requests_get_einval_and_the_server_survives(served: Served, sock: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(sock)
        reader = s.makefile("rb")
        for raw in (b"not json\n", b"[1,2]\n", b'{"op":"dance"}\n',
                    b'{"op":"execute","command":{"op":"-A","bogus":1}}\n',
                    b'{"op":"execute","command":{"op":"-A","service":{"key":{"proto":"TCP",'
                    b'"port":"80"}}}}\n'):
            s.sendall(raw)
            reply = wire.loads(reader.readline())
            assert reply["ok"] is False and reply["errno"] == errno.EINVAL, raw
        s.sendall(b'{"op":"ping"}\n')
        assert wire.loads(reader.readline()) == {"ok": True}
        reader.close()
    with ControlClient(sock) as client:
        client.execute(Command(**{"op": parse(["-C"]).op}))  # type: ignore[union-attr]
        assert client.view().services == ()


def test_client_errors(sock: str, served: Served) -> None:
    with ControlClient(sock) as client, pytest.raises(ControlError) as info:
        client.execute(parse(["-D", "-t", "198.18.0.1:80"]))  # type: ignore[arg-type]
    assert info.value.errno == errno.ESRCH
    with pytest.raises(NoDirector) as nd:
        ControlClient(sock + ".missing").connect()
    assert nd.value.errno == errno.ENOENT


def test_a_live_socket_is_not_taken_over_and_a_stale_one_is(sock: str) -> None:
    with Served(sock):
        second = Served(sock)
        second.thread.start()
        try:
            with pytest.raises(OSError) as info:
                asyncio.run_coroutine_threadsafe(second.server.start(), second.loop).result(10)
            assert info.value.errno == errno.EADDRINUSE
        finally:
            second.loop.call_soon_threadsafe(second.loop.stop)
            second.thread.join(10)
            second.loop.close()
        # the first one still serves; and its answer means it has taken in the liveness probe's
        # connection (accepted before this one) before it stops
        with ControlClient(sock) as client:
            client.ping()
    # a socket file whose director died
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock)
    stale.close()
    assert os.path.exists(sock)
    with Served(sock) as again:
        assert ipvsadm(sock, "-A", "-t", "198.18.0.1:80").returncode == 0
        assert len(again.director.executed) == 1


def _as_user(uid: int, path: str, request: bytes) -> str:
    """Connect as another user (a forked child that drops to `uid`): "EACCES" when the socket
    refuses the connection, else the director's reply line."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no exec (the interpreter may be out of that user's reach)
        code = 0
        try:
            os.close(rfd)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                try:
                    s.connect(path)
                except PermissionError:
                    os.write(wfd, b"EACCES")
                else:
                    # the director may have answered and closed before the request is sent
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        s.sendall(request)
                    os.write(wfd, s.makefile("rb").readline())
        except BaseException as e:  # report it to the parent
            os.write(wfd, f"child failed: {e!r}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as r:
        out = r.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    return out.decode()


@pytest.mark.root
def test_other_users_are_refused(root: None) -> None:
    nobody = 65534
    # a directory everyone may traverse, so that only the socket's own mode keeps them out
    top = tempfile.mkdtemp(prefix="halb-ctl-", dir="/tmp")
    try:
        os.chmod(top, 0o755)
        path = os.path.join(top, "ipvsadm.sock")
        with Served(path) as served:
            request = wire.dumps(wire.execute_request(parse(["-C"])))  # type: ignore[arg-type]
            # the 0600 socket keeps them out ...
            assert _as_user(nobody, path, request) == "EACCES"
            # ... and if its mode were opened, the peer credentials check still does
            os.chmod(path, 0o666)
            try:
                reply = wire.loads(_as_user(nobody, path, request).encode())
            finally:
                os.chmod(path, 0o600)
            assert reply["ok"] is False and reply["errno"] == errno.EPERM
            assert served.director.executed == []
            with ControlClient(path) as client:  # root itself is let in
                client.execute(parse(["-C"]))  # type: ignore[arg-type]
            assert len(served.director.executed) == 1
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_permission_denied_reads_like_ipvsadm(tmp_path: pathlib.Path) -> None:
    from halb.cli.ipvsadm import _no_director

    class Err:
        text = ""

        def write(self, s: str) -> None:
            self.text += s

    err = Err()
    assert _no_director(NoDirector(errno.EACCES, "/run/halb/ipvsadm.sock"), err) == 2  # type: ignore[arg-type]
    assert err.text.startswith("Can't initialize ipvs: Permission denied (you must be root)\n"
                               "Are you sure that IP Virtual Server is built in the kernel or "
                               "as module?\n")


def test_start_director_in_the_foreground(sock: str) -> None:
    env = dict(os.environ, HALB_IPVSADM_SOCKET=sock)
    proc = subprocess.Popen(
        [str(HALB), "ipvsadm", "--start-director", "--dataplane", "userspace",
         "--director-factory", "halb.testing.fake_director:FakeDirector"],
        env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the director did not start"
            time.sleep(0.05)
        run_lines(sock, SEEDS_DR)
        assert "198.18.1.113:8080" in ipvsadm(sock, "-Ln").stdout
        assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not os.path.exists(sock)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
