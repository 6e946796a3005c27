"""The request head sent upstream and the response head sent to the client (l7/proxy_headers.py):
each variable in the encoding its text came with, header text as latin-1 (UTF-8 when a value
cannot be latin-1), nginx's defaults and the empty values that send nothing."""

from __future__ import annotations

from halb.config.template import compile_template
from halb.l7.proxy_headers import Plan, render_head, request_head
from halb.l7.request import Request


class Conn:
    remote_addr = "127.0.0.1"
    remote_port = 5555
    server_addr = "127.0.0.1"
    server_port = 80


class Conf:
    server_tokens = "on"
    keepalive_header = 0


def req(*headers: tuple[str, str]) -> Request:
    r = Request(Conn(), 0.0)
    r.target = "/é?a=1"
    r.host = "h\xe9"
    r.conf = Conf()  # type: ignore[assignment]
    for name, value in headers:
        r.header_list.append((name, value))
        r.headers.setdefault(name.lower(), value)
    return r


def plan(*own: tuple[str, str], **extra: object) -> Plan:
    sets = tuple((n, compile_template(v)) for n, v in own)
    return Plan({"proxy_set_header": sets, **extra} if sets else extra, frozenset())


def test_request_head_encodings_and_defaults() -> None:
    p = plan(("X-Uri", "$request_uri"), ("X-Host", "$host"), ("X-Both", "<$host|$request_uri>"),
             ("X-Empty", "$http_none"), ("Accept", ""))
    r = req(("Host", "a"), ("X-A", "\xe9"), ("Accept", "*/*"), ("x-uri", "dup"))
    head = request_head(r, p, "GET", "/\xe9", 12)
    assert head == (b"GET /\xc3\xa9 HTTP/1.0\r\nX-Uri: /\xc3\xa9?a=1\r\nX-Host: h\xe9\r\n"
                    b"X-Both: <h\xe9|/\xc3\xa9?a=1>\r\nConnection: close\r\n"
                    b"Content-Length: 12\r\nX-A: \xe9\r\n\r\n")
    # a value that is not latin-1 text goes as UTF-8, the others stay latin-1
    r = req(("X-A", "\xe9"), ("X-B", "\u20ac"))
    assert request_head(r, plan(), "POST", "/", None, True).endswith(
        b"Connection: close\r\nTransfer-Encoding: chunked\r\nX-A: \xe9\r\n"
        b"X-B: \xe2\x82\xac\r\n\r\n")
    assert request_head(r, plan(), "POST", "/", None, True).startswith(b"POST / HTTP/1.0\r\n")


def test_request_head_without_client_headers() -> None:
    r = req(("X-A", "1"))
    head = request_head(r, plan(proxy_pass_request_headers=False, proxy_http_version="1.1"),
                        "GET", "/", None)
    assert head == b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"


def test_render_head_headers() -> None:
    r = req()
    out = render_head(r, 200, "200 OK", "text/plain", 5, None,
                      [("X-A", "\xe9"), ("X-B", "b")], plan(), False, True)
    assert out.startswith(b"HTTP/1.1 200 OK\r\nServer: halb")
    assert out.endswith(b"Content-Type: text/plain\r\nContent-Length: 5\r\n"
                        b"Connection: keep-alive\r\nX-A: \xe9\r\nX-B: b\r\n\r\n")
    out = render_head(r, 200, "200 OK", None, -1, None, [("X-C", "\u20ac")], plan(), True,
                      False)
    assert out.endswith(b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
                        b"X-C: \xe2\x82\xac\r\n\r\n")
