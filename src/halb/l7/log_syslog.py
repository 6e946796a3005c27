"""Logging to syslog the way nginx does (ngx_syslog.c): one datagram per line, over UDP or a
unix datagram socket, `<PRI>Mmm dd hh:mm:ss hostname tag: line` (RFC 3164; `nohostname` drops
the host). An access_log line has the peer's severity (info unless severity= says otherwise),
an error_log line its own level. Sending never blocks and never fails a request: a datagram
that cannot be sent is dropped and reported once a minute, as nginx reports "send() to syslog
failed".
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from halb.config.nginx_log import Syslog, parse_syslog

_HOSTNAME = socket.gethostname()


def syslog_time(now: float) -> str:
    """ngx_cached_syslog_time: "Nov  1 09:05:03" (local time, day padded with a space)."""
    t = time.localtime(now)
    return f"{time.strftime('%b', t)} {t.tm_mday:2d} {time.strftime('%H:%M:%S', t)}"


class SyslogPeer:
    def __init__(self, spec: str, report: Callable[[str, str], None] | None = None) -> None:
        self.peer: Syslog = parse_syslog(spec)
        self.report = report
        self.sock: socket.socket | None = None
        self.failed_at = -60.0
        p = self.peer
        self.prefix_tail = f" {p.tag}: " if p.nohostname else f" {_HOSTNAME} {p.tag}: "

    def header(self, severity: int, now: float) -> str:
        return f"<{self.peer.facility * 8 + severity}>{syslog_time(now)}{self.prefix_tail}"

    def _connect(self) -> socket.socket:
        p = self.peer
        if p.host.startswith("unix:"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            target: str | tuple[str, int] = p.host[5:]
        else:
            family = socket.AF_INET6 if ":" in p.host else socket.AF_INET
            s = socket.socket(family, socket.SOCK_DGRAM)
            target = (p.host, p.port)
        s.setblocking(False)
        try:
            s.connect(target)
        except OSError:
            s.close()
            raise
        return s

    def send(self, line: bytes, severity: int | None = None) -> None:
        """Send one log line (its trailing newline is not sent)."""
        now = time.time()
        sev = self.peer.severity if severity is None else severity
        data = self.header(sev, now).encode() + line.rstrip(b"\n")
        try:
            if self.sock is None:
                self.sock = self._connect()
            self.sock.send(data)
        except OSError as e:
            if self.sock is not None:
                self.sock.close()
                self.sock = None
            if self.report is not None and time.monotonic() - self.failed_at > 59:
                self.failed_at = time.monotonic()
                self.report("warn", f"send() to syslog failed ({e.errno}: {e.strerror})")

    # an access log target like LogFile (nothing is buffered: nginx refuses buffer= here)
    def write(self, line: bytes) -> None:
        self.send(line)

    def flush(self) -> None:
        pass

    def reopen(self) -> None:
        self.close()  # the next line connects again (a restarted local syslog daemon)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
