"""ipvsadm_args / ipvsadm_syntax: ipvsadm 1.31's grammar. The seeds' command lines, every
option, popt's syntax, the legality matrix with ipvsadm's exact messages (recorded from Debian's
ipvsadm 1.31 through the LD_PRELOAD shim of tests/conformance/l4), -R, and the -S → -R round
trip as a property."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ipvsadm_golden import HELP_TEXT

from halb.l4 import ipvsadm_args as A
from halb.l4 import ipvsadm_format as F
from halb.l4.ipvsadm_syntax import inet_aton, string_to_number
from halb.l4.model import (
    Command,
    DestSpec,
    DestView,
    Forward,
    Op,
    Proto,
    ServiceKey,
    ServiceSpec,
    ServiceView,
    TableView,
    Timeouts,
)

HOSTS = {"localhost": "127.0.0.1", "vip.lab": "198.18.0.235"}
SERVICES = {("http", "tcp"): 80, ("domain", "udp"): 53, ("domain", "tcp"): 53,
            ("ssh", "tcp"): 22}
NAMES = A.Names(host=HOSTS.get, service=lambda n, p: SERVICES.get((n, p)))


def parse(line: str) -> A.Parsed:
    return A.parse(shlex.split(line), NAMES)


def tcp(addr: str, port: int) -> ServiceKey:
    return ServiceKey(Proto.TCP, addr, port)


# -- the seeds' command lines (addresses mapped to 198.18.0.0/15) ----------------------------

SEEDS = [
    ("-C", Command(Op.CLEAR)),
    ("--clear", Command(Op.CLEAR)),
    ("-A -t 198.18.0.235:8080 -s wrr",
     Command(Op.ADD_SERVICE, ServiceSpec(tcp("198.18.0.235", 8080), "wrr"))),
    ("-a -t 198.18.0.235:8080 -r 198.18.1.112:8080 -g -w 3",
     Command(Op.ADD_DEST, ServiceSpec(tcp("198.18.0.235", 8080)),
             DestSpec("198.18.1.112", 8080, Forward.ROUTE, 3))),
    ("--set 1 2 1", Command(Op.SET_TIMEOUTS, timeouts=Timeouts(1, 2, 1))),
    ("-A -t 198.18.0.150:80 -s rr",
     Command(Op.ADD_SERVICE, ServiceSpec(tcp("198.18.0.150", 80), "rr"))),
    ("-a -t 198.18.0.150:80 -r 198.18.1.135 -g",
     Command(Op.ADD_DEST, ServiceSpec(tcp("198.18.0.150", 80)),
             DestSpec("198.18.1.135", 80, Forward.ROUTE, 1))),
    ("-a -t 198.18.0.150:80 -r 198.18.1.137 -g",
     Command(Op.ADD_DEST, ServiceSpec(tcp("198.18.0.150", 80)),
             DestSpec("198.18.1.137", 80, Forward.ROUTE, 1))),
    ("-A -t 198.18.0.100:80 -s rr",
     Command(Op.ADD_SERVICE, ServiceSpec(tcp("198.18.0.100", 80), "rr"))),
    ("-a -t 198.18.0.100:80 -r 198.18.1.12:80 -g",
     Command(Op.ADD_DEST, ServiceSpec(tcp("198.18.0.100", 80)),
             DestSpec("198.18.1.12", 80, Forward.ROUTE))),
]


@pytest.mark.parametrize(("line", "want"), SEEDS)
def test_seed_command_lines(line: str, want: Command) -> None:
    assert parse(line) == want


@pytest.mark.parametrize(("line", "want"), [
    ("", A.Listing()),
    ("-Ln", A.Listing(numeric=True)),
    ("-L -n", A.Listing(numeric=True)),
    ("-Ln --stats", A.Listing(numeric=True, stats=True)),
    ("-L --timeout", A.Listing(timeout=True)),
    ("-S", A.Listing(save=True)),
    ("--save", A.Listing(save=True)),
    ("-S -n", A.Listing(numeric=True, save=True)),
    ("-l", A.Listing()),
    ("--list --numeric --connection", A.Listing(numeric=True, connections=True)),
    ("-L -n --rate --exact --nosort --sort --thresholds --persistent-conn --tun-info",
     A.Listing(numeric=True, rate=True, exact=True, nosort=True, thresholds=True,
               persistent_conn=True, tun_info=True)),
    ("-L --daemon", A.Listing(daemon=True)),
    ("-L -t 198.18.0.10:http -n", A.Listing(numeric=True, service=tcp("198.18.0.10", 80))),
    ("-l -f 7", A.Listing(service=ServiceKey(Proto.FWM, fwmark=7))),
    ("-R", A.Restore()),
    ("-v", A.Text(A.VERSION)),
    ("--version", A.Text(A.VERSION)),
])
def test_listing_and_other_invocations(line: str, want: A.Parsed) -> None:
    assert parse(line) == want


def test_seed_version_query_prints_the_version() -> None:
    # seed 004 runs `ipvsadm -v` "to look at the cluster": ipvsadm prints its version
    assert parse("-v") == A.Text("ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS "
                                 "v1.2.1)\n")


def test_help_is_ipvsadm_usage() -> None:
    text = parse("-h")
    assert isinstance(text, A.Text)
    lines = text.text.splitlines()
    assert lines[0] == "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)"
    assert lines[2] == ("  ipvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] "
                        "[-M netmask] [--pe persistence_engine] [-b sched-flags]")
    assert "  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|" \
           "nq|fo|ovf|mh," in lines
    assert lines[-1] == "  --mcast-ttl ttl                     Multicast TTL (default=1)"
    assert text.text == "".join(HELP_TEXT)


# -- every option ---------------------------------------------------------------------------


def svc_cmd(line: str) -> ServiceSpec:
    cmd = parse(line)
    assert isinstance(cmd, Command) and cmd.service is not None
    return cmd.service


def dest_cmd(line: str) -> DestSpec:
    cmd = parse(line)
    assert isinstance(cmd, Command) and cmd.dest is not None
    return cmd.dest


@pytest.mark.parametrize(("line", "want"), [
    ("-A -t 198.18.0.10:80", ServiceSpec(tcp("198.18.0.10", 80))),
    ("--add-service --tcp-service 198.18.0.10:80 --scheduler sh --persistent 600 "
     "--netmask 255.255.255.0 --sched-flags sh-port,flag-1",
     ServiceSpec(tcp("198.18.0.10", 80), "sh", 600, "255.255.255.0",
                 sched_flags=("sh-fallback", "sh-port"))),
    ("-E -u 198.18.0.10:domain -s rr -o", ServiceSpec(ServiceKey(Proto.UDP, "198.18.0.10", 53),
                                                      "rr", ops=True)),
    ("-A --sctp-service 198.18.0.10:9 -p", ServiceSpec(ServiceKey(Proto.SCTP, "198.18.0.10", 9),
                                                       persistent=360)),
    ("-A -f 7 -p 60 -M 255.255.0.0 -s mh -b mh-port",
     ServiceSpec(ServiceKey(Proto.FWM, fwmark=7), "mh", 60, "255.255.0.0",
                 sched_flags=("mh-port",))),
    ("-A -f 7 -6 -p", ServiceSpec(ServiceKey(Proto.FWM, fwmark=7, ipv6=True), persistent=360,
                                  netmask="128")),
    ("-A -t [2001:db8::1]:443 -p 10 -M 64",
     ServiceSpec(ServiceKey(Proto.TCP, "2001:db8::1", 443, ipv6=True), persistent=10,
                 netmask="64")),
    ("-A -t 198.18.0.10:80 --pe sip -p", ServiceSpec(tcp("198.18.0.10", 80), persistent=360,
                                                     pe="sip")),
    ("-A -t vip.lab:http", ServiceSpec(tcp("198.18.0.235", 80))),
    ("-A -t 127.1:80", ServiceSpec(tcp("127.0.0.1", 80))),
    ("-A -t 198.18.0.10 -p", ServiceSpec(tcp("198.18.0.10", 0), persistent=360)),
    ("-A -t 198.18.0.10:80 -p -M 64", ServiceSpec(tcp("198.18.0.10", 80), persistent=360,
                                                  netmask="0.0.0.64")),
    ("-At198.18.0.10:80 -p300", ServiceSpec(tcp("198.18.0.10", 80), persistent=300)),
    ("-Ap -t 198.18.0.10:80", ServiceSpec(tcp("198.18.0.10", 80), persistent=360)),
    ("-A -t 198.18.0.10:80 --persistent=5", ServiceSpec(tcp("198.18.0.10", 80), persistent=5)),
    ("-A -t 198.18.0.10:80 -s sh -b flag-3", ServiceSpec(tcp("198.18.0.10", 80), "sh",
                                                         sched_flags=("flag-3",))),
    ("-A -t 198.18.0.10:80 -b flag-2,flag-1", ServiceSpec(tcp("198.18.0.10", 80),
                                                          sched_flags=("flag-1", "flag-2"))),
])
def test_service_options(line: str, want: ServiceSpec) -> None:
    assert svc_cmd(line) == want


@pytest.mark.parametrize(("line", "want"), [
    ("-a -t 198.18.0.10:80 -r 198.18.1.1:8080 -m -w 0 -x 100 -y 50",
     DestSpec("198.18.1.1", 8080, Forward.MASQ, 0, 100, 50)),
    ("-a -t 198.18.0.10:80 -r 198.18.1.1:8080", DestSpec("198.18.1.1", 80, Forward.ROUTE)),
    ("-a -t 198.18.0.10:80 -r 198.18.1.1:8080 -g", DestSpec("198.18.1.1", 80)),
    ("-a -t 198.18.0.10:80 -r 198.18.1.1", DestSpec("198.18.1.1", 80)),
    ("-a -t 198.18.0.10:80 -r 198.18.1.1 -m", DestSpec("198.18.1.1", 80, Forward.MASQ)),
    ("-a -t 198.18.0.10:80 -r 198.18.1.1:0 -m", DestSpec("198.18.1.1", 0, Forward.MASQ)),
    ("-a -f 3 -r 198.18.1.1:90 -g", DestSpec("198.18.1.1", 90, Forward.ROUTE)),
    ("-a -r 198.18.1.1 -m -t 198.18.0.10:80", DestSpec("198.18.1.1", 0, Forward.MASQ)),
    ("-e -t 198.18.0.10:80 -r 198.18.1.1 --weight 2147483647 --masquerading",
     DestSpec("198.18.1.1", 80, Forward.MASQ, 2147483647)),
    ("-a -t 198.18.0.10:80 -r 198.18.1.1 -i", DestSpec("198.18.1.1", 80, Forward.TUNNEL,
                                                       tun_type="ipip")),
    ("-a -t 198.18.0.10:80 -r 198.18.1.1 -i --tun-type gue --tun-port 6080 --tun-remcsum",
     DestSpec("198.18.1.1", 80, Forward.TUNNEL, tun_type="gue", tun_port=6080,
              tun_flags=("remcsum",))),
    ("-a -t 198.18.0.10:80 -r 198.18.1.1 -i --tun-type gre",
     DestSpec("198.18.1.1", 80, Forward.TUNNEL, tun_type="gre", tun_flags=("nocsum",))),
    ("-a -t [2001:db8::1]:80 -r [2001:db8::2]:81 -m", DestSpec("2001:db8::2", 81, Forward.MASQ)),
    ("-a -t 198.18.0.10:80 -r [2001:db8::2] -i", None),
    ("-d -t 198.18.0.10:80 -r 198.18.1.1:8080", DestSpec("198.18.1.1", 8080)),
])
def test_dest_options(line: str, want: DestSpec | None) -> None:
    if want is None:  # tunnelling may mix families; the bracketed host without a port
        with pytest.raises(A.UsageError, match="illegal real server"):
            parse(line)
        return
    assert dest_cmd(line) == want


def test_zero_and_delete_take_only_the_key() -> None:
    assert parse("-Z") == Command(Op.ZERO)
    assert parse("-Z -t 198.18.0.10:80") == Command(Op.ZERO, ServiceSpec(tcp("198.18.0.10", 80)))
    assert parse("-D -f 5") == Command(Op.DEL_SERVICE, ServiceSpec(ServiceKey(Proto.FWM,
                                                                              fwmark=5)))


def test_daemon_commands_parse() -> None:
    assert parse("--start-daemon master --syncid 3 --mcast-interface lo") == A.DaemonCommand(
        True, "master", "lo", syncid=3)
    assert parse("--start-daemon backup") == A.DaemonCommand(True, "backup", "eth0")
    assert parse("--stop-daemon master") == A.DaemonCommand(False, "master")


def test_names_are_resolved_only_when_not_numeric() -> None:
    asked: list[str] = []

    def host(name: str) -> str | None:
        asked.append(name)
        return HOSTS.get(name)

    names = A.Names(host=host, service=lambda n, p: SERVICES.get((n, p)))
    A.parse(["-a", "-t", "198.18.0.10:80", "-r", "198.18.1.1:8080", "-m"], names)
    A.parse(["-A", "-t", "0x7f.1:80"], names)
    assert asked == []
    A.parse(["-A", "-t", "localhost:http"], names)
    assert asked == ["localhost"]
    with pytest.raises(A.UsageError):
        A.parse(["-A", "-t", "localhost:80"])  # no resolver: names are not addresses


# -- usage errors, as Debian's ipvsadm 1.31 prints them ---------------------------------------

USAGE_ERRORS = [
    ('-A -t 1.2.3.4:0', 'Zero port specified for non-persistent service\n', 2),
    ('-A -t 1.2.3.4:80 -o', 'One-Packet Scheduling is only for UDP virtual services\n', 2),
    ('-A -t 1.2.3.4:80 -w 3', "Illegal 'weight' option with the 'add-service' command\n", 2),
    ('-d -t 1.2.3.4:80 -r 5.6.7.8 -w 2', "Illegal 'weight' option with the 'delete-server' command\n", 2),
    ('-t 1.2.3.4:80 -A', "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n", 255),
    ('-A -t', '-t: missing argument\n', 255),
    ('-A -t 1.2.3.4:80 --foo', '--foo: unknown option\n', 255),
    ('--foo', "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n", 255),
    ('-L -c --stats', 'options conflicts in the list command\n', 2),
    ('-L -c -t 1.2.3.4:80', "The option 'service-address' conflicts with the 'connection' option in the 'list' command\n", 2),
    ('-L --timeout --persistent-conn', 'options conflicts in the list command\n', 2),
    ('-A -A -t 1.2.3.4:80', "invalid option `-A'\n", 2),
    ('-A -t 1.2.3.4:80 -s rr -s wrr', "multiple 'scheduler' options specified\n", 2),
    ('-A -t 1.2.3.4:80 extra', 'unexpected argument extra\n', 2),
    ('--set 1 2', '--set option requires 3 timeout values\n', 2),
    ('--set 1 2 x', "invalid timeout value `x' specified\n", 2),
    ('-A -t 1.2.3.4:99999', 'illegal virtual server address[:port] specified\n', 2),
    ('-A -t 300.1.1.1:80', 'illegal virtual server address[:port] specified\n', 2),
    ('-A -t 1.2.3.4:80 -p 0', "invalid timeout value `0' specified\n", 2),
    ('-A -t 1.2.3.4:80 -p 2678401', "invalid timeout value `2678401' specified\n", 2),
    ('-a -t 1.2.3.4:80 -r 5.6.7.8 -i --tun-type gue', "You need to supply the 'tun-port' option for the 'gue' tunnel type\n", 2),
    ('-a -t 1.2.3.4:80 -r 5.6.7.8 --tun-type gue', 'Tunnel options conflict with forward method\n', 2),
    ('-a -t 1.2.3.4:80 -r 5.6.7.8 -i --tun-type gre --tun-port 1', "Illegal 'tun-port' option with the 'gre' tunnel type\n", 2),
    ('-a -t 1.2.3.4:80 -r 5.6.7.8 -i --tun-type gue --tun-port 6080 --tun-csum --tun-nocsum', "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gue' tunnel type\n", 2),
    ('-A -f 0', "invalid fwmark value `0' specified\n", 2),
    ('-A -6 -f 7', '-6 used before -f\n\n', 2),
    ('-A -t 1.2.3.4:80 -b mh-port', "incompatible scheduler flag `mh-port'\n", 2),
    ('-A -t 1.2.3.4:80 -b foo', "invalid scheduler flag `foo'\n", 2),
    ('-C -n', "Illegal 'numeric' option with the 'flush' command\n", 2),
    ('-S -c', "Illegal 'connection' option with the 'save' command\n", 2),
    ('-a -t 1.2.3.4:80 -r 5.6.7.8 -w 2147483648', 'illegal weight specified\n', 2),
    ('-a -t 1.2.3.4:80 -r 5.6.7.8 -w -1', 'illegal weight specified\n', 2),
    ('-a -t 1.2.3.4:80 -r 5.6.7.8 -x -1', 'illegal u_threshold specified\n', 2),
    ('-a -t 1.2.3.4:80 -r 5.6.7.8 -y 2147483648', 'illegal l_threshold specified\n', 2),
    ("-A -t '[::1]'", 'illegal virtual server address[:port] specified\n', 2),
    ('-A -t ::1', 'Zero port specified for non-persistent service\n', 2),
    ("-A -t '[::1]:80' -p -M 129", 'illegal ipv6 netmask specified\n', 2),
    ('-A -t localhost:nosuchsvc', 'illegal virtual server address[:port] specified\n', 2),
    ('-A -t 80', 'illegal virtual server address[:port] specified\n', 2),
    ('-A -t 1.2.3.4:', 'illegal virtual server address[:port] specified\n', 2),
    ('-A -t 1.2.3.4:-1', 'illegal virtual server address[:port] specified\n', 2),
    ('-A -t 1.2.3.4:80x', 'illegal virtual server address[:port] specified\n', 2),
    ('-A -t 1.2.3.4', 'Zero port specified for non-persistent service\n', 2),
    ("-a -t 1.2.3.4:80 -r '[::2]:80' -m", 'Different address family is allowed only for tunneling servers\n', 2),
    ('--start-daemon foo', 'illegal start-daemon parameter specified\n', 2),
    ('--stop-daemon foo', 'illegal start_daemon specified\n', 2),
    ('-a -t 1.2.3.4:80 -r 5.6.7.8 -g -m', "multiple 'forwarding-method' options specified\n", 2),
    ('-a -t 1.2.3.4:80', "You need to supply the 'real-server' option for the 'add-server' command\n", 2),
    ('-a -r 5.6.7.8', "You need to supply the 'service-address' option for the 'add-server' command\n", 2),
    ('-L -n -n', "multiple 'numeric' options specified\n", 2),
    ('-L -h', "invalid option `-h'\n", 2),
    ('-- -L', "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n", 255),
    ('-L -- foo', 'unexpected argument foo\n', 2),
    ('-p', "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n", 255),
    ('-A -t -s rr', 'illegal virtual server address[:port] specified\n', 2),
    ('-A -s rr -t', '-t: missing argument\n', 255),
    ('-A -t 1.2.3.4:80 -s', '-s: missing argument\n', 255),
    ('-A -t 1.2.3.4:80 -Lx', "invalid option `-Lx'\n", 2),
    ('-A -t 1.2.3.4:80 -', 'unexpected argument -\n', 2),
    ('-A --tcp 1.2.3.4:80', '--tcp: unknown option\n', 255),
    ('-A -tcp-service 1.2.3.4:80', 'illegal virtual server address[:port] specified\n', 2),
    ('-A --tcp-service', '--tcp-service: missing argument\n', 255),
    ('-A --weight', '--weight: missing argument\n', 255),
    ('-L -n extra1 extra2', 'unexpected argument extra1\n', 2),
    ('-A -t 1.2.3.4:80 --ops=x', '--ops=x: option does not take an argument\n', 255),
    ('-A -t 1.2.3.4:80 -s rr --set', "invalid option `--set'\n", 2),
    ('-L --daemon --timeout', "The option 'daemon' conflicts with the 'timeout' option in the 'list' command\n", 2),
    ('-S -n -n', "multiple 'numeric' options specified\n", 2),
    ('-R -n', "Illegal 'numeric' option with the 'restore' command\n", 2),
    ('-C extra', 'unexpected argument extra\n', 2),
    ('-a -t 1.2.3.4:80 -r 5.6.7.8 -i --tun-type xyz', 'illegal tunnel type specified\n', 2),
    ('-a -t 1.2.3.4:80 -r 5.6.7.8 -i --tun-port 0', 'illegal tunnel port specified\n', 2),
    ('-a -t 1.2.3.4:80 -r 5.6.7.8 -i --tun-csum', "Illegal 'tun-csum' option with the 'ipip' tunnel type\n", 2),
    ('-A -f 4294967296', "invalid fwmark value `4294967296' specified\n", 2),
    ('-A -f abc', "invalid fwmark value `abc' specified\n", 2),
    ('--set 2678401 0 0', "invalid timeout value `2678401' specified\n", 2),
    ('--set 1 2 3 4', 'unexpected argument 4\n', 2),
    ('--set -n 1 2 3', "Illegal 'numeric' option with the 'set' command\n", 2),
    ('-Lq', '-Lq: unknown option\n', 255),
    ('-L -q', '-q: unknown option\n', 255),
    ('-Aq -t 1.2.3.4:80', '-Aq: unknown option\n', 255),
    ('-A -t 1.2.3.4:80 -Lq', "invalid option `-Lq'\n", 2),
    ('-r 5.6.7.8 -a -t 1.2.3.4:80', "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n", 255),
    ('-a -r 5.6.7.8:http -t 1.2.3.4:80', 'illegal real server address[:port] specified\n', 2),
    ('-M 1.2.3.4', "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n", 255),
    ('-A -t 1.2.3.4:80 --syncid 3', "Illegal 'syncid' option with the 'add-service' command\n", 2),
    ('--start-daemon master --syncid 300', 'illegal syncid specified\n', 2),
    ('--start-daemon master --mcast-port 0', 'illegal mcast-port specified\n', 2),
    ('--start-daemon master --mcast-group 1.2.3.4', "invalid IPv4 mcast-group `1.2.3.4'\n", 2),
    ('--start-daemon master --mcast-group ff02::1 -n', "Illegal 'numeric' option with the 'start-daemon' command\n", 2),
    ('--stop-daemon backup --mcast-ttl 3', "Illegal 'mcast-ttl' option with the 'stop-daemon' command\n", 2),
    ('-A -t 1.2.3.4:80 -6', '-6 used before -f\n\n', 2),
    ('-A -f 5 -t 1.2.3.4:80', "multiple 'service-address' options specified\n", 2),
    ('-A -t 1.2.3.4:80 -f 5', "multiple 'service-address' options specified\n", 2),
    ('-a -t 1.2.3.4:80 -r 5.6.7.8 -i --tun-type gre --tun-remcsum', "Illegal 'tun-remcsum' option with the 'gre' tunnel type\n", 2),
    ('-e -t 1.2.3.4:80 -r 5.6.7.8 -i --tun-type gre --tun-csum --tun-info', "Illegal 'tun-info' option with the 'edit-server' command\n", 2),
    ('-L --tun-info --tun-info', "multiple 'tun-info' options specified\n", 2),
    ('-L -c --daemon', "The option 'daemon' conflicts with the 'connection' option in the 'list' command\n", 2),
    ('-L -t 1.2.3.4:80 --daemon', "The option 'daemon' conflicts with the 'service-address' option in the 'list' command\n", 2),
    ('-Z -n', "Illegal 'numeric' option with the 'zero' command\n", 2),
    ('-D -t 1.2.3.4:80 -s rr', "Illegal 'scheduler' option with the 'delete-service' command\n", 2),
    ('-E -t 1.2.3.4:80 -r 1.1.1.1', "Illegal 'real-server' option with the 'edit-service' command\n", 2),
]


@pytest.mark.parametrize(("line", "message", "code"), USAGE_ERRORS)
def test_usage_errors_match_ipvsadm(line: str, message: str, code: int) -> None:
    with pytest.raises(A.UsageError) as info:
        parse(line)
    assert (info.value.message, info.value.code) == (message, code)


def test_errors_name_the_program_it_was_called_as() -> None:
    with pytest.raises(A.UsageError) as info:
        A.parse(["-t", "198.18.0.10:80"], prog="/sbin/ipvsadm")
    assert info.value.message == ("Try `/sbin/ipvsadm -h' or '/sbin/ipvsadm --help' for more "
                                  "information.\n")


@pytest.mark.parametrize(("text", "lo", "hi", "want"), [
    ("80", 0, 65535, 80), ("+80", 0, 65535, 80), (" 80", 0, 65535, 80), ("080", 0, 65535, 80),
    ("80 ", 0, 65535, None), ("", 0, 65535, None), ("-1", 0, 65535, None),
    ("65536", 0, 65535, None), ("0x10", 0, 65535, None), ("9" * 30, 0, 2**31, None),
])
def test_string_to_number_is_strtol(text: str, lo: int, hi: int, want: int | None) -> None:
    assert string_to_number(text, lo, hi) == want


@pytest.mark.parametrize(("text", "want"), [
    ("198.18.0.1", "198.18.0.1"), ("127.1", "127.0.0.1"), ("0x7f.0.0.1", "127.0.0.1"),
    ("010.1", "8.0.0.1"), ("1", "0.0.0.1"), ("1.2.3", "1.2.0.3"), ("198.18.0.1 x", "198.18.0.1"),
    ("1.2.3.256", None), ("1..2", None), ("a.b", None), ("", None), ("08.1.1.1", None),
])
def test_inet_aton_forms(text: str, want: str | None) -> None:
    assert inet_aton(text) == want


# -- -R ------------------------------------------------------------------------------------


def test_restore_reads_words_drops_ipvsadm_and_comments() -> None:
    text = ("ipvsadm -A -t 198.18.0.10:80 -s rr\n\n   \n# a comment\n"
            "-a -t 198.18.0.10:80 -r 198.18.1.1 -m   # trailing\n\t-C\n")
    assert list(A.restore_words(text)) == [
        ["-A", "-t", "198.18.0.10:80", "-s", "rr"],
        ["-a", "-t", "198.18.0.10:80", "-r", "198.18.1.1", "-m"], ["-C"]]
    parsed = list(A.restore_lines(text))
    assert [p.op for p in parsed if isinstance(p, Command)] == [Op.ADD_SERVICE, Op.ADD_DEST,
                                                                Op.CLEAR]


def test_restore_inside_restore_is_refused() -> None:
    with pytest.raises(A.UsageError) as info:
        list(A.restore_lines("-R\n"))
    assert info.value.code == 255


# -- -S output is -R input: the round trip ---------------------------------------------------

octet = st.integers(0, 255)
v4 = st.builds(lambda a, b: f"198.18.{a}.{b}", octet, octet)
v6 = st.builds(lambda a: f"2001:db8::{a:x}", st.integers(1, 0xFFFF))
port = st.integers(1, 65535)
SCHEDS = ["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"]


@st.composite
def services(draw: st.DrawFn) -> ServiceView:
    kind = draw(st.sampled_from(["tcp", "udp", "sctp", "fwm", "tcp6"]))
    persistent = draw(st.sampled_from([0, 0, 1, 360, 2678400]))
    if kind == "fwm":
        ipv6 = draw(st.booleans())
        key = ServiceKey(Proto.FWM, fwmark=draw(st.integers(1, 2**31 - 1)), ipv6=ipv6)
    else:
        proto = {"tcp": Proto.TCP, "udp": Proto.UDP, "sctp": Proto.SCTP, "tcp6": Proto.TCP}[kind]
        ipv6 = kind == "tcp6"
        vport = draw(port) if not persistent else draw(st.sampled_from([0, 80, 443]))
        key = ServiceKey(proto, draw(v6 if ipv6 else v4), vport, ipv6=ipv6)
    netmask = "128" if ipv6 else "255.255.255.255"
    if persistent:
        netmask = (str(draw(st.integers(1, 128))) if ipv6 else
                   draw(st.sampled_from(["255.255.255.255", "255.255.255.0", "255.255.0.0"])))
    sched = draw(st.sampled_from(SCHEDS))
    bits = draw(st.integers(0, 3 if sched in ("sh", "mh") else 7))
    flags = A.sched_flag_names(sched, bits)
    ops = draw(st.booleans()) if kind in ("udp", "fwm") else False
    pe = draw(st.sampled_from(["", "sip"]))
    spec = ServiceSpec(key, sched, persistent, netmask, pe, ops, flags)
    dests = []
    for addr in draw(st.lists(v6 if ipv6 else v4, max_size=4, unique=True)):
        fwd = draw(st.sampled_from([Forward.ROUTE, Forward.MASQ, Forward.TUNNEL]))
        dport = draw(st.integers(0, 65535))
        if key.proto is not Proto.FWM and fwd is not Forward.MASQ:
            dport = key.port
        tun_type, tun_port, tun_flags = "", 0, ()
        if fwd is Forward.TUNNEL:
            tun_type = draw(st.sampled_from(["ipip", "gue", "gre"]))
            if tun_type == "gue":
                tun_port = draw(port)
                tun_flags = (draw(st.sampled_from(["nocsum", "csum", "remcsum"])),)
            elif tun_type == "gre":
                tun_flags = (draw(st.sampled_from(["nocsum", "csum"])),)
        weight = draw(st.integers(0, 2**31 - 1))
        dests.append(DestView(DestSpec(addr, dport, fwd, weight, tun_type=tun_type,
                                       tun_port=tun_port, tun_flags=tun_flags)))
    return ServiceView(spec, tuple(dests))


def _unique_keys(svcs: list[ServiceView]) -> list[ServiceView]:
    seen, out = set(), []
    for s in svcs:
        if s.spec.key not in seen:
            seen.add(s.spec.key)
            out.append(s)
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(services(), max_size=5).map(_unique_keys))
def test_save_output_restores_the_same_table(svcs: list[ServiceView]) -> None:
    table = TableView(services=tuple(svcs))
    saved = F.render(table, A.Listing(numeric=True, save=True))
    specs: list[ServiceSpec] = []
    dests: dict[ServiceKey, list[DestSpec]] = {}
    for cmd in A.restore_lines(saved):
        assert isinstance(cmd, Command) and cmd.service is not None
        if cmd.op is Op.ADD_SERVICE:
            specs.append(cmd.service)
        else:
            assert cmd.op is Op.ADD_DEST and cmd.dest is not None
            dests.setdefault(cmd.service.key, []).append(cmd.dest)
    assert {s.spec.key: s.spec for s in svcs} == {s.key: s for s in specs}
    for s in svcs:
        assert sorted(dests.get(s.spec.key, []), key=repr) == sorted(
            (d.spec for d in s.dests), key=repr)
    # and the restored table saves to the same text
    again = TableView(services=tuple(
        ServiceView(spec, tuple(DestView(d) for d in dests.get(spec.key, []))) for spec in specs))
    assert F.render(again, A.Listing(numeric=True, save=True)) == saved
