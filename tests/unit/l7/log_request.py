"""A Request for the access log's unit tests, without a connection: the log reads only the
client and server addresses and the counters of the stand-in below."""

from __future__ import annotations

from halb.l7.request import Request


class Conn:
    remote_addr = "127.0.0.1"
    remote_port = 5555
    server_addr = "127.0.0.1"
    server_port = 80
    number = 1
    requests = 1
    pipelined = False


def req(target: str = "/a", **headers: str) -> Request:
    """GET `target`, answered 200, with these headers (underscores in names as "-")."""
    r = Request(Conn(), 0.0)
    r.target = target
    r.uri, _, args = target.partition("?")
    r.args = args or None
    r.request_line = f"GET {target} HTTP/1.1"
    r.status = 200
    for k, v in headers.items():
        name = k.replace("_", "-")
        r.headers[name] = v
        r.header_list.append((name, v))
    return r
