"""Request.lane (the express lane's constructor) against Request(): every field set, the ones
it is not given as __init__ leaves them."""

from __future__ import annotations

from typing import Any

from halb.l7.request import Request

GIVEN = {"conn": object(), "start": 12.5, "method": "HEAD", "version": 10, "target": "/a?b",
         "request_line": "HEAD /a?b HTTP/1.0", "request_length": 40,
         "header_list": (("Host", "x"),), "headers": {"host": "x"}, "host": "x",
         "server": object(), "keepalive": True, "uri": "/a", "args": "b",
         "location": object(), "conf": object(), "conn_requests": 3}


def _fields(r: Request) -> dict[str, Any]:
    return {name: getattr(r, name) for name in Request.__slots__}  # (unset: AttributeError)


def test_lane_sets_every_field_as_init_and_the_parser_would() -> None:
    lane = _fields(Request.lane(**GIVEN))  # type: ignore[arg-type]
    plain = _fields(Request(GIVEN["conn"], GIVEN["start"]))
    for name in Request.__slots__:
        if name in GIVEN:
            assert lane[name] is GIVEN[name], name
        else:
            assert lane[name] == plain[name] and type(lane[name]) is type(plain[name]), name


def test_lane_requests_do_not_share_their_mutable_fields() -> None:
    a = Request.lane(**GIVEN)  # type: ignore[arg-type]
    b = Request.lane(**GIVEN)  # type: ignore[arg-type]
    assert a.body_chunks is not b.body_chunks and a.named_captures is not b.named_captures
