"""ipvsadm_format: every listing byte for byte (golden outputs of Debian's ipvsadm 1.31, the
reference's samples), print_largenum's boundaries, the sort order, names, errors."""

from __future__ import annotations

import errno
from dataclasses import replace

import pytest
from ipvsadm_golden import GOLDEN, GOLDEN_OUTPUTS, dest

from halb.l4 import ipvsadm_args as A
from halb.l4 import ipvsadm_format as F
from halb.l4.model import (
    ConnView,
    Forward,
    Op,
    Proto,
    ServiceKey,
    ServiceSpec,
    ServiceView,
    Stats,
    TableView,
    Timeouts,
)


def listing(*argv: str) -> A.Listing:
    parsed = A.parse(list(argv))
    assert isinstance(parsed, A.Listing)
    return parsed


@pytest.mark.parametrize("args", sorted(GOLDEN_OUTPUTS))
def test_matches_ipvsadm_131_byte_for_byte(args: str) -> None:
    assert F.render(GOLDEN, listing(*args.split())) == "".join(GOLDEN_OUTPUTS[args])


def test_dest_lines_keep_their_trailing_spaces() -> None:
    text = F.render(GOLDEN, listing("-Ln"))
    line = next(ln for ln in text.splitlines() if "192.168.10.4" in ln)
    assert line == "  -> 192.168.10.4:80              Masq    0      2          9         "


REFERENCE = TableView(services=(
    ServiceView(ServiceSpec(ServiceKey(Proto.TCP, "10.0.0.100", 80), "wlc", 300),
                (dest("192.168.10.2", 80, weight=3, active=12, inactive=40),
                 dest("192.168.10.3", 80, weight=1, active=4, inactive=17),
                 dest("192.168.10.4", 80, weight=0, active=2, inactive=9))),
))


def test_reference_sample_list_numeric() -> None:
    assert F.render(REFERENCE, listing("-L", "-n")) == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  10.0.0.100:80 wlc persistent 300\n"
        "  -> 192.168.10.2:80              Masq    3      12         40        \n"
        "  -> 192.168.10.3:80              Masq    1      4          17        \n"
        "  -> 192.168.10.4:80              Masq    0      2          9         \n")


def test_reference_sample_stats_and_rate_lines() -> None:
    svc = ServiceView(REFERENCE.services[0].spec,
                      (dest("192.168.10.2", 80, stats=Stats(51234, 1203456, 1187654, 98765432,
                                                            1500123456),
                            rates=Stats(12, 350, 340, 41234, 512345)),),
                      Stats(71257, 1674702, 1656295, 137911234, 2088123456),
                      Stats(16, 470, 456, 55280, 687227))
    table = TableView(services=(svc,))
    stats = F.render(table, listing("-L", "-n", "--stats")).splitlines()
    assert stats[1:5] == [
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
        "  -> RemoteAddress:Port",
        "TCP  10.0.0.100:80                   71257  1674702  1656295  137911K    2088M",
        "  -> 192.168.10.2:80                 51234  1203456  1187654 98765432    1500M"]
    rate = F.render(table, listing("-L", "-n", "--rate")).splitlines()
    assert rate[1:5] == [
        "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS",
        "  -> RemoteAddress:Port",
        "TCP  10.0.0.100:80                      16      470      456    55280   687227",
        "  -> 192.168.10.2:80                    12      350      340    41234   512345"]


@pytest.mark.parametrize(("n", "text"), [
    (0, "        0"),
    (99_999_999, " 99999999"),
    (100_000_000, "  100000K"),
    (999_999_999, "  999999K"),
    (1_000_000_000, "     1000M"[1:]),
    (99_999_999_999, "    99999M"[1:]),
    (100_000_000_000, "      100G"[1:]),
    (99_999_999_999_999, "    99999G"[1:]),
    (100_000_000_000_000, "      100T"[1:]),
    (2**64 - 1, "18446744T"),
])
def test_print_largenum_boundaries(n: int, text: str) -> None:
    assert F.print_largenum(n) == text
    assert len(text) == 9


@pytest.mark.parametrize(("n", "text"), [
    (0, "        0"), (12345678, " 12345678"), (123456789, " 123456789"),
    (10**14, " 100000000000000"),
])
def test_print_largenum_exact(n: int, text: str) -> None:
    assert F.print_largenum(n, exact=True) == text


def _svc(addr: str, port: int = 80, proto: Proto = Proto.TCP, *dests: str) -> ServiceView:
    return ServiceView(ServiceSpec(ServiceKey(proto, addr, port)),
                       tuple(dest(d, port) for d in dests))


def test_sort_subtracts_32_bit_addresses_like_libipvs() -> None:
    # ntohl(a) - ntohl(b) as int: 200.0.0.1 - 10.0.0.1 wraps negative, so 200.x comes first;
    # within 2^31 of each other the order is the natural one.
    table = TableView(services=(_svc("10.0.0.1"), _svc("200.0.0.1"), _svc("10.0.0.1", 53,
                                                                          Proto.UDP)))
    lines = [ln for ln in F.render(table, listing("-Ln")).splitlines() if ln[:4].strip()
             in ("TCP", "UDP")]
    assert lines == ["TCP  200.0.0.1:80 wlc", "TCP  10.0.0.1:80 wlc", "UDP  10.0.0.1:53 wlc"]


def test_nosort_keeps_the_directors_order() -> None:
    svc = _svc("198.18.0.10", 80, Proto.TCP, "198.18.1.3", "198.18.1.1", "198.18.1.2")
    table = TableView(services=(svc,))
    sorted_lines = F.render(table, listing("-Ln")).splitlines()[4:]
    nosort_lines = F.render(table, listing("-Ln", "--nosort")).splitlines()[4:]
    assert [ln.split()[1] for ln in sorted_lines] == [
        "198.18.1.1:80", "198.18.1.2:80", "198.18.1.3:80"]
    assert [ln.split()[1] for ln in nosort_lines] == [
        "198.18.1.3:80", "198.18.1.1:80", "198.18.1.2:80"]


def test_glibc_merge_sort_order_for_a_non_transitive_comparator() -> None:
    # 10 < 100 < 200 pairwise, but 10 > 200 under the wrapped subtraction; glibc's merge
    # sort (n1 = n/2, left wins ties) gives [10, 100, 200] from [10, 200, 100].
    svc = _svc("198.18.0.10", 80, Proto.TCP, "10.0.0.2", "200.0.0.9", "100.0.0.9")
    got = [d.spec.addr for d in F.sorted_dests(svc.dests)]
    assert got == ["10.0.0.2", "100.0.0.9", "200.0.0.9"]


def test_names_without_numeric_and_the_column_cut() -> None:
    long_name = "a-very-long-real-server-name.example"
    names = F.ReverseNames(host=lambda a: {"198.18.1.1": long_name,
                                           "198.18.0.10": "vip.example"}.get(a),
                           service=lambda p, proto: {(80, "tcp"): "http"}.get((p, proto)))
    svc = _svc("198.18.0.10", 80, Proto.TCP, "198.18.1.1", "198.18.1.2")
    text = F.render(TableView(services=(svc,)), listing("-L"), names)
    assert "TCP  vip.example:http wlc\n" in text
    # "%-28s" after the name was cut to 28 characters (IPv4 only)
    assert f"  -> {(long_name + ':http')[:28]} Masq    1" in text
    assert "  -> 198.18.1.2:http              Masq" in text
    # -S without -n resolves too, and is not cut
    saved = F.render(TableView(services=(svc,)), listing("-S"), names)
    assert f"-a -t vip.example:http -r {long_name}:http -m -w 1\n" in saved


def test_ipv6_service_and_dests() -> None:
    svc = ServiceView(ServiceSpec(ServiceKey(Proto.TCP, "2001:db8::10", 443), "rr", 60, "64"),
                      (dest("2001:db8::1", 443, Forward.MASQ),))
    text = F.render(TableView(services=(svc,)), listing("-Ln"))
    assert "TCP  [2001:db8::10]:443 rr persistent 60 mask 64\n" in text
    assert "  -> [2001:db8::1]:443            Masq    1      0          0         \n" in text
    saved = F.render(TableView(services=(svc,)), listing("-Sn"))
    assert saved == ("-A -t [2001:db8::10]:443 -s rr -p 60 -M 64\n"
                     "-a -t [2001:db8::10]:443 -r [2001:db8::1]:443 -m -w 1\n")


def test_fwmark_ipv6_names() -> None:
    svc = ServiceView(ServiceSpec(ServiceKey(Proto.FWM, fwmark=9, ipv6=True), persistent=10,
                                  netmask="128"))
    assert "FWM  9 IPv6 wlc persistent 10\n" in F.render(TableView(services=(svc,)),
                                                         listing("-Ln"))
    assert F.render(TableView(services=(svc,)), listing("-Sn")) == "-A -f 9 -6 -s wlc -p 10\n"


def test_fwmarks_from_2_to_the_31_print_negative_as_ipvsadm_does() -> None:
    svc = ServiceView(ServiceSpec(ServiceKey(Proto.FWM, fwmark=2**31), persistent=1))
    table = TableView(services=(svc,))
    assert "FWM  -2147483648 wlc persistent 1\n" in F.render(table, listing("-Ln"))
    assert F.render(table, listing("-Sn")) == "-A -f -2147483648 -s wlc -p 1\n"


def test_tunnel_types_in_save_and_tun_info() -> None:
    key = ServiceKey(Proto.TCP, "198.18.0.10", 80)
    base = dest("198.18.1.1", 80, Forward.TUNNEL)
    gue = replace(base, spec=replace(base.spec, addr="198.18.1.2", tun_type="gue",
                                     tun_port=6080, tun_flags=("csum",)))
    gre = replace(base, spec=replace(base.spec, addr="198.18.1.3", tun_type="gre",
                                     tun_flags=("nocsum",)))
    ipip = replace(base, spec=replace(base.spec, tun_type="ipip"))
    table = TableView(services=(ServiceView(ServiceSpec(key), (ipip, gue, gre)),))
    assert F.render(table, listing("-Sn")) == (
        "-A -t 198.18.0.10:80 -s wlc\n"
        "-a -t 198.18.0.10:80 -r 198.18.1.1:80 -i -w 1 --tun-type ipip\n"
        "-a -t 198.18.0.10:80 -r 198.18.1.2:80 -i -w 1 --tun-type gue --tun-port 6080 "
        "--tun-csum\n"
        "-a -t 198.18.0.10:80 -r 198.18.1.3:80 -i -w 1 --tun-type gre --tun-nocsum\n")
    info = F.render(table, listing("-Ln", "--tun-info")).splitlines()
    assert info[2] == ("  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn "
                       "InActConn")
    assert info[4] == "  -> 198.18.1.1:80                Tunnel  ipip          1      0          0         "
    assert info[5] == "  -> 198.18.1.2:80                Tunnel  gue:6080:+c   1      0          0         "
    assert info[6] == "  -> 198.18.1.3:80                Tunnel  gre:-c        1      0          0         "


def test_connection_expiry_is_minutes_and_seconds() -> None:
    conns = (ConnView("TCP", 3725.9, "ESTABLISHED", ("198.18.2.1", 40000),
                      ("198.18.0.10", 80), ("198.18.1.1", 80)),
             ConnView("UDP", -3, "UDP", ("198.18.2.1", 5353), ("198.18.0.10", 53),
                      ("198.18.1.1", 53)))
    text = F.render(TableView(connections=conns), listing("-Lnc")).splitlines()
    assert text[0] == "IPVS connection entries"
    assert text[2] == ("TCP 62:05  ESTABLISHED 198.18.2.1:40000   198.18.0.10:80     "
                       "198.18.1.1:80")
    assert text[3].startswith("UDP 00:00  UDP ")


def test_timeout_daemon_and_a_missing_service() -> None:
    table = TableView(timeouts=Timeouts(1, 2, 1))
    assert F.render(table, listing("-L", "--timeout")) == "Timeout (tcp tcpfin udp): 1 2 1\n"
    assert F.render(table, listing("-L", "--daemon")) == ""
    with pytest.raises(F.NoSuchService, match=r"^No such service$"):
        F.render(table, listing("-Ln", "-t", "198.18.0.10:80"))


def test_single_service_listing_has_no_version_header() -> None:
    text = F.render(REFERENCE, listing("-Ln", "-t", "10.0.0.100:80"))
    assert text.startswith("Prot LocalAddress:Port Scheduler Flags\n")
    assert "IP Virtual Server" not in text


def test_header_size_comes_from_the_table() -> None:
    assert F.render(TableView(size=1 << 20), listing("-Ln")).startswith(
        "IP Virtual Server version 1.2.1 (size=1048576)\n")


# (op, errno) → what ipvsadm 1.31 printed for it (through the shim, HALB_FAKE_IPVS_ERRNO)
ERRORS = [
    (Op.ADD_SERVICE, errno.EEXIST, "Service already exists"),
    (Op.EDIT_SERVICE, errno.EEXIST, "File exists"),
    (Op.ADD_DEST, errno.EEXIST, "Destination already exists"),
    (Op.ADD_SERVICE, errno.ENOENT, "Scheduler or persistence engine not found"),
    (Op.EDIT_SERVICE, errno.ENOENT, "Scheduler or persistence engine not found"),
    (Op.DEL_SERVICE, errno.ENOENT, "No such file or directory"),
    (Op.EDIT_DEST, errno.ENOENT, "No such destination"),
    (Op.DEL_DEST, errno.ENOENT, "No such destination"),
    (Op.ADD_DEST, errno.ENOENT, "No such file or directory"),
    (Op.ADD_SERVICE, errno.ESRCH, "No such process"),
    (Op.EDIT_SERVICE, errno.ESRCH, "No such service"),
    (Op.DEL_SERVICE, errno.ESRCH, "No such service"),
    (Op.ZERO, errno.ESRCH, "No such service"),
    (Op.ADD_DEST, errno.ESRCH, "Service not defined"),
    (Op.EDIT_DEST, errno.ESRCH, "Service not defined"),
    (Op.DEL_DEST, errno.ESRCH, "Service not defined"),
    (Op.CLEAR, errno.ESRCH, "No such process"),
    (Op.ADD_SERVICE, errno.EPERM, "Permission denied (you must be root)"),
    (Op.CLEAR, errno.EINVAL,
     "Invalid operation.  Possibly wrong module version, address not unicast, ..."),
    (Op.ADD_DEST, errno.ENOMEM, "Memory allocation problem"),
    (Op.SET_TIMEOUTS, errno.ENOPROTOOPT, "Protocol not available"),
    (Op.ADD_SERVICE, errno.EOPNOTSUPP, "Operation not supported with IPv6"),
    (Op.ADD_SERVICE, errno.EAFNOSUPPORT,
     "Operation not supported with specified address family"),
    (Op.ZERO, errno.EMSGSIZE, "Module is wrong version"),
    (Op.DEL_DEST, errno.EBUSY, "Device or resource busy"),
]


@pytest.mark.parametrize(("op", "code", "text"), ERRORS)
def test_error_texts_as_ipvs_strerror(op: Op, code: int, text: str) -> None:
    assert F.error_text(op, code) == text
