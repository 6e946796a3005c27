"""Process-level helpers: privileges, parent-death signal, pid files, daemonizing."""

from __future__ import annotations

import contextlib
import ctypes
import grp
import os
import pwd
import signal
import sys

from halb.config.errors import ConfigError

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to signal this process when its parent dies (Linux prctl)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def lookup_user(user: tuple[str, str] | None) -> tuple[int, int] | None:
    """uid/gid of the `user` directive (nobody/nogroup by default), only when running as root."""
    if os.geteuid() != 0:
        return None
    name, group = user if user is not None else ("nobody", "nogroup")
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        raise ConfigError(f'getpwnam("{name}") failed') from None
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        if user is None:  # nobody without nogroup: use nobody's primary group
            gid = pwd.getpwnam(name).pw_gid
        else:
            raise ConfigError(f'getgrnam("{group}") failed') from None
    return uid, gid


def drop_privileges(ids: tuple[int, int] | None, user: str = "nobody") -> None:
    if ids is None:
        return
    uid, gid = ids
    if uid == 0:
        return
    os.setgid(gid)
    with contextlib.suppress(OSError):
        os.initgroups(user, gid)
    os.setuid(uid)


def write_pid(path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ConfigError(f'open() "{path}" failed ({e.errno}: {e.strerror})') from None


def read_pid(path: str) -> int:
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f'open() "{path}" failed ({e.errno}: {e.strerror})',
                          level="error") from None
    value = text.strip()
    if not value.isdigit():
        raise ConfigError(f'invalid PID number "{value}" in "{path}"', level="error")
    return int(value)


def remove_pid(path: str) -> None:
    with contextlib.suppress(OSError):
        if read_pid(path) == os.getpid():
            os.unlink(path)


def daemonize() -> None:
    """nginx's ngx_daemon: fork, the parent exits, setsid; stdin/stdout go to /dev/null
    (stderr stays, as nginx keeps it when the error log is stderr)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid > 0:
        os._exit(0)
    os.setsid()
    os.umask(0o022)
    fd = os.open(os.devnull, os.O_RDWR)
    os.dup2(fd, 0)
    os.dup2(fd, 1)
    if fd > 2:
        os.close(fd)
