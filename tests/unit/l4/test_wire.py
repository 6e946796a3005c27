"""l4.wire: commands and tables survive JSON, and malformed messages are refused whole."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ipvsadm_golden import GOLDEN

from halb.l4 import ipvsadm_args as A
from halb.l4 import wire
from halb.l4.model import Command, Op


def test_a_table_round_trips_through_json() -> None:
    data = json.loads(wire.dumps({"table": wire.encode(GOLDEN)}))
    assert wire.table_from(data["table"]) == GOLDEN


LINES = ["-A -t 198.18.0.1:80 -s sh -b sh-port -p 60 -M 255.255.255.0",
         "-A -f 7 -6 -p", "-a -t 198.18.0.1:80 -r 198.18.1.1 -i --tun-type gue --tun-port 5",
         "--set 1 2 1", "-C", "-Z", "-d -u 198.18.0.1:53 -r 198.18.1.1"]


@pytest.mark.parametrize("line", LINES)
def test_commands_round_trip(line: str) -> None:
    cmd = A.parse(line.split())
    assert isinstance(cmd, Command)
    assert wire.command_from(json.loads(json.dumps(wire.encode(cmd)))) == cmd


@pytest.mark.parametrize("data", [
    None, [], {"op": "-X"}, {"op": "-A", "extra": 1},
    {"op": "-A", "service": {"key": {"proto": "TCP", "port": "80"}}},
    {"op": "-A", "service": {"key": {"proto": "TCP", "port": True}}},
    {"op": "--set", "timeouts": {"tcp": 1.5}},
    {"op": "-a", "dest": {"addr": "x", "port": 1, "tun_flags": "csum"}},
])
def test_malformed_commands_are_refused(data: object) -> None:
    with pytest.raises(wire.WireError):
        wire.command_from(data)


def test_loads_refuses_what_is_not_an_object() -> None:
    for raw in (b"[]", b"nope", b"\xff", b"1"):
        with pytest.raises(wire.WireError):
            wire.loads(raw)
    assert wire.loads(b'{"op":"ping"}') == {"op": "ping"}


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(list(Op)), st.booleans())
def test_bare_commands_round_trip(op: Op, empty: bool) -> None:
    cmd = Command(op)
    assert wire.command_from(wire.encode(cmd)) == cmd
