"""The two ends of the L4 tests and benchmarks, run as processes inside network namespaces.

* ``python -m halb.testing.l4peers serve --name rs1 [--port 80] [--udp]``: a real server. TCP:
  it answers every HTTP/1.x request head (up to the blank line) with ``200`` and its name as the
  body, keeping the connection open unless the client asks to close; a bare line ending in
  ``\\n`` that is not a request gets the name and a newline. UDP (``--udp``): every datagram is
  answered with the name. It prints ``ready`` once listening.
* ``python -m halb.testing.l4peers probe --to 198.18.0.100:80 --count 90 [--source ADDR ...]
  [--hold] [--udp]``: opens `count` connections one after the other (round the `--source`
  addresses), sends one request on each, and prints one JSON object: the names answered, in
  order (``null`` for a connection that failed), and the bytes sent and received. ``--hold``
  keeps every connection open until stdin closes (long-lived connections for the
  least-connection schedulers); the names are printed as soon as all are open, and each line
  read from stdin sends one more request on every held connection and prints the names again.

Only standard library, no halb imports: the processes start fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from typing import Any

REQUEST = b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n"


class _Server(asyncio.Protocol):
    def __init__(self, name: bytes) -> None:
        self.name = name
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if self.buf.endswith(b"\n") and not self.buf.startswith((b"GET", b"HEAD")):
                    self.transport.write(self.name + b"\n")
                    self.buf = b""
                return
            head, self.buf = self.buf[:end].lower(), self.buf[end + 4:]
            close = b"connection: close" in head or head.split(b"\r\n")[0].endswith(b"/1.0")
            body = self.name
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s"
                                 % (len(body), b"Connection: close\r\n" if close else b"",
                                    body))
            if close:
                self.transport.close()
                return


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, name: bytes) -> None:
        self.name = name
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(self.name, addr)


async def serve(name: str, host: str, port: int, udp: bool) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Server(name.encode()), host, port,
                                      reuse_address=True, backlog=4096)
    if udp:
        await loop.create_datagram_endpoint(lambda: _Udp(name.encode()), local_addr=(host, port))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def _one(to: tuple[str, int], source: str | None, timeout: float) -> tuple[str | None, int,
                                                                            int, socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect(to)
    s.sendall(REQUEST)
    body, total = _response(s)
    return body.decode(), len(REQUEST), total, s


def _response(s: socket.socket) -> tuple[bytes, int]:
    """One response: its body and its length with the head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            break
        body += chunk
    return body, len(head) + 4 + len(body)


def probe(to: tuple[str, int], count: int, sources: list[str], hold: bool, udp: bool,
          timeout: float) -> None:
    names: list[str | None] = []
    sent = received = 0
    held: list[socket.socket] = []
    for i in range(count):
        source = sources[i % len(sources)] if sources else None
        try:
            if udp:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.settimeout(timeout)
                if source:
                    s.bind((source, 0))
                s.sendto(b"hello\n", to)
                data = s.recv(4096)
                names.append(data.decode())
                sent, received = sent + 6, received + len(data)
                s.close()
                continue
            name, out, got, s = _one(to, source, timeout)
            names.append(name)
            sent, received = sent + out, received + got
            if hold:
                held.append(s)
            else:
                s.close()
        except OSError:
            names.append(None)
    print(json.dumps({"names": names, "sent": sent, "received": received}), flush=True)
    if hold:
        for _ in sys.stdin:  # each line: one more request on every held connection
            again: list[str | None] = []
            for s in held:
                try:
                    s.sendall(REQUEST)
                    again.append(_response(s)[0].decode())
                except OSError:
                    again.append(None)
            print(json.dumps({"names": again}), flush=True)
        for s in held:
            s.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="l4peers")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--name", required=True)
    s.add_argument("--host", default="0.0.0.0")
    s.add_argument("--port", type=int, default=80)
    s.add_argument("--udp", action="store_true")
    c = sub.add_parser("probe")
    c.add_argument("--to", required=True)
    c.add_argument("--count", type=int, default=1)
    c.add_argument("--source", action="append", default=[])
    c.add_argument("--hold", action="store_true")
    c.add_argument("--udp", action="store_true")
    c.add_argument("--timeout", type=float, default=5.0)
    args = p.parse_args(argv)
    if args.cmd == "serve":
        try:
            asyncio.run(serve(args.name, args.host, args.port, args.udp))
        except KeyboardInterrupt:
            pass
        return 0
    host, _, port = args.to.rpartition(":")
    probe((host, int(port)), args.count, args.source, args.hold, args.udp, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
