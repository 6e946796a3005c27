"""halb's ipvsadm parser and formatter against Debian's ipvsadm 1.31 itself.

The real binary runs under ipvsadm_shim.c (LD_PRELOAD; see ipvsadm_oracle.py): it lists random
tables the shim serves, and logs the commands it would send the kernel. Listings must be
byte-identical in every format, commands must carry the same fields, usage errors must print the
same text with the same exit code. Within what the sockopt API carries: IPv4, no --pe, no
tunnel types.
"""

from __future__ import annotations

import pathlib
import shlex
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ipvsadm_oracle import Oracle, build_shim, log_line

from halb.l4 import ipvsadm_args as A
from halb.l4 import ipvsadm_format as F
from halb.l4.model import (
    Command,
    ConnView,
    DestSpec,
    DestView,
    Forward,
    Proto,
    ServiceKey,
    ServiceSpec,
    ServiceView,
    Stats,
    TableView,
    Timeouts,
)

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory, ipvsadm_binary: str,
           request: pytest.FixtureRequest) -> Oracle:
    workdir = tmp_path_factory.mktemp("ipvsadm-oracle")
    shim = build_shim(workdir)
    if shim is None:
        request.getfixturevalue("gcc_binary")  # skips (fails under CI) with the reason
        raise AssertionError("no C compiler could build the shim")
    return Oracle(ipvsadm_binary, shim, workdir)


# listings without -n resolve addresses: the shim answers "localhost" for 127.0.0.1 and
# nothing else (no DNS query leaves the machine), and so does REVERSE below
addr = st.sampled_from(["127.0.0.1", "127.0.0.2", "198.18.0.1", "198.18.0.10", "198.19.255.9",
                        "10.0.0.1", "200.0.0.1", "192.168.10.2", "0.0.0.0", "255.255.255.255"])
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
stats = st.builds(Stats, u32, u32, u32, u64, u64)
rates = st.builds(Stats, u32, u32, u32, u32, u32)
SCHEDS = ["rr", "wrr", "lc", "wlc", "sh", "mh", "sed", "nq", "fo", "ovf", "dh", "lblc", "lblcr"]
# no tunnel dests: over the sockopt API libipvs leaves their tunnel type uninitialised (the
# golden outputs in tests/unit/l4 hold a tunnel dest, as netlink reports it: type ipip)
FORWARDS = [Forward.ROUTE, Forward.MASQ, Forward.LOCAL]


@st.composite
def services(draw: st.DrawFn) -> ServiceView:
    proto = draw(st.sampled_from([Proto.TCP, Proto.UDP, Proto.SCTP, Proto.FWM]))
    if proto is Proto.FWM:
        key = ServiceKey(proto, fwmark=draw(st.integers(1, 2**32 - 1)))
    else:
        key = ServiceKey(proto, draw(addr), draw(st.sampled_from([0, 22, 53, 80, 443, 8080,
                                                                  65535])))
    sched = draw(st.sampled_from(SCHEDS))
    bits = draw(st.integers(0, 7))
    flags = A.sched_flag_names(sched, bits)
    persistent = draw(st.sampled_from([0, 300, 2678400]))
    mask = draw(st.sampled_from(["255.255.255.255", "255.255.255.0", "0.0.0.0"]))
    spec = ServiceSpec(key, sched, persistent, mask, ops=draw(st.booleans()), sched_flags=flags)
    dests = tuple(
        DestView(DestSpec(a, draw(st.integers(0, 65535)),
                          draw(st.sampled_from(FORWARDS)), draw(st.integers(0, 2**31 - 1)),
                          draw(u32.filter(lambda v: v < 2**31)),
                          draw(u32.filter(lambda v: v < 2**31))),
                 draw(u32), draw(u32), draw(u32), draw(stats), draw(rates))
        for a in draw(st.lists(addr, max_size=4)))
    return ServiceView(spec, dests, draw(stats), draw(rates))


conns = st.builds(
    ConnView, st.sampled_from(["TCP", "UDP"]), st.integers(0, 100000).map(float),
    st.sampled_from(["ESTABLISHED", "FIN_WAIT", "NONE", "UDP", "TIME_WAIT"]),
    st.tuples(addr, st.integers(0, 65535)), st.tuples(addr, st.integers(0, 65535)),
    st.tuples(addr, st.integers(0, 65535)))
tables = st.builds(TableView, st.lists(services(), max_size=5).map(tuple),
                   st.lists(conns, max_size=4).map(tuple),
                   st.builds(Timeouts, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1),
                             st.integers(0, 2**31 - 1)))

LISTINGS = [["-Ln"], ["-L"], ["-Ln", "--stats"], ["-Ln", "--stats", "--exact"],
            ["-L", "--rate"], ["-Ln", "--rate", "--exact"], ["-Ln", "--thresholds"],
            ["-Ln", "--persistent-conn"], ["-Ln", "--tun-info"], ["-Sn"], ["-S"],
            ["-Ln", "--nosort"], ["-Lnc"], ["-Lc"], ["-L", "--timeout"]]


def _host_of(a: str) -> str | None:
    return "localhost" if a == "127.0.0.1" else None  # the shim's resolver: no DNS


def _service_of(port: int, proto: str) -> str | None:
    try:
        return socket.getservbyport(port, proto)
    except (OSError, OverflowError):
        return None


REVERSE = F.ReverseNames(_host_of, _service_of)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(table=tables)
def test_listings_are_byte_identical(oracle: Oracle, table: TableView) -> None:
    # no two services with one key (the kernel would not have them)
    keys = [s.spec.key for s in table.services]
    if len(set(keys)) != len(keys):
        return
    for args in LISTINGS:
        want = oracle.run(args, table)
        ls = A.parse(args)
        assert isinstance(ls, A.Listing)
        got = F.render(table, ls, F.NUMERIC if ls.numeric else REVERSE)
        assert (got, want.code) == (want.stdout, 0), args


def test_single_service_listing_and_a_missing_one(oracle: Oracle) -> None:
    svc = ServiceView(ServiceSpec(ServiceKey(Proto.TCP, "198.18.0.10", 80), "rr"),
                      (DestView(DestSpec("198.18.1.1", 80)),))
    table = TableView(services=(svc,))
    for args in (["-Ln", "-t", "198.18.0.10:80"], ["-L", "-t", "198.18.0.10:80", "--stats"]):
        ls = A.parse(args)
        assert isinstance(ls, A.Listing)
        assert F.render(table, ls, F.NUMERIC if ls.numeric else REVERSE) == oracle.run(
            args, table).stdout
    missing = oracle.run(["-Ln", "-t", "198.18.0.11:80"], table)
    with pytest.raises(F.NoSuchService) as info:
        F.render(table, A.parse(["-Ln", "-t", "198.18.0.11:80"]))  # type: ignore[arg-type]
    assert (f"{info.value}\n", 1) == (missing.stderr, missing.code)


COMMANDS = [
    "-A -t 198.18.0.10:80", "-A -t 198.18.0.10:http -s rr -p", "-E -t 198.18.0.10:80 -s sh "
    "-b sh-port,sh-fallback -p 60 -M 255.255.255.0", "-A -u 198.18.0.10:domain -o",
    "-A -f 7 -s mh -b mh-port -p 10", "-A -t 198.18.0.10 -p", "-D -t 198.18.0.10:80",
    "-a -t 198.18.0.10:80 -r 198.18.1.1 -m -w 3 -x 100 -y 50",
    "-a -t 198.18.0.10:80 -r 198.18.1.1:8080 -g", "-e -t 198.18.0.10:80 -r 198.18.1.1:8080 -m",
    "-a -t 198.18.0.10:80 -r 198.18.1.1 -i", "-d -t 198.18.0.10:80 -r 198.18.1.1",
    "-a -f 7 -r 198.18.1.1 -m", "-a -r 198.18.1.1 -m -t 198.18.0.10:80", "-Z", "-C",
    "-Z -t 198.18.0.10:80", "--set 900 120 300", "--set 0 0 0", "-At198.18.0.10:80 -p300",
    "-Ap -t 198.18.0.10:80", "-A --tcp-service=198.18.0.10:80 --persistent=5",
    "-A -t 127.1:80", "-A -t localhost:ssh",
]


@pytest.mark.parametrize("line", COMMANDS)
def test_commands_carry_what_ipvsadm_sends(oracle: Oracle, line: str) -> None:
    args = shlex.split(line)
    want = oracle.run(args)
    names = A.Names(host=lambda n: "127.0.0.1" if n == "localhost" else None,
                    service=lambda n, p: socket.getservbyname(n, p))
    cmd = A.parse(args, names)
    assert isinstance(cmd, Command)
    assert (want.code, want.stderr) == (0, "")
    assert [log_line(cmd)] == want.log


@pytest.mark.parametrize("line", [
    "-A -t 198.18.0.10:0", "-A -t 198.18.0.10:80 -o", "-A -t 198.18.0.10:80 -w 3",
    "-d -t 198.18.0.10:80 -r 198.18.1.1 -w 2", "-t 198.18.0.10:80 -A", "-A -t",
    "-A -t 198.18.0.10:80 --foo", "-L -c --stats", "-L -c -t 198.18.0.10:80",
    "-A -A -t 198.18.0.10:80", "-A -t 198.18.0.10:80 -s rr -s wrr", "--set 1 2",
    "--set 1 2 x", "-A -t 300.1.1.1:80", "-a -t 198.18.0.10:80 -r 198.18.1.1 -i "
    "--tun-type gue", "-a -t 198.18.0.10:80 -r 198.18.1.1 --tun-type gue", "-A -6 -f 7",
    "-A -t 198.18.0.10:80 -b mh-port", "-L -h", "-A -t 198.18.0.10:80 --ops=x",
    "-a -t 198.18.0.10:80 -r [::2]:80 -m", "-A -t 198.18.0.10:80 -p 0", "-h", "-v",
    "--start-daemon foo", "-S -c", "-R -n", "-a -t 198.18.0.10:80 -r 198.18.1.1 -w 2147483648",
    "-L -n extra", "-A -t 198.18.0.10:80 -Lq", "-A -t ::1", "-A -f 4294967296",
])
def test_usage_and_help_output(oracle: Oracle, line: str) -> None:
    args = shlex.split(line)
    want = oracle.run(args)
    try:
        parsed = A.parse(args)
    except A.UsageError as e:
        assert (e.message, e.code, "") == (want.stderr, want.code, want.stdout)
        return
    assert isinstance(parsed, A.Text)
    assert (parsed.text, 0, "") == (want.stdout, want.code, want.stderr)


def test_oracle_shim_source_is_beside_this_file() -> None:
    assert pathlib.Path(__file__).with_name("ipvsadm_shim.c").is_file()
