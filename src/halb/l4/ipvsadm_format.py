"""ipvsadm 1.31's output, byte for byte (PURE): a `model.TableView` printed as `ipvsadm -L`
prints it, in every listing format, and the (command, errno) → message map of libipvs.

Owns (reference l4-ipvs.md §2.8, read from ipvsadm.c 1.31 and checked against Debian's binary):

* list_all / list_service: the "IP Virtual Server version 1.2.1 (size=N)" header, the titles,
  service lines ("%-4s %s" cut at 33 characters for IPv4, scheduler, "(sched flags)",
  "persistent T", "mask M", "pe NAME", "ops") and dest lines with their printf widths and
  trailing spaces, for the plain, --stats, --rate, --thresholds, --persistent-conn and
  --tun-info formats; print_largenum's K/M/G/T and --exact;
* the order: libipvs sorts services and dests with qsort() and comparators that subtract
  32-bit addresses (so 200.0.0.1 sorts before 10.0.0.1); glibc's qsort is a merge sort, which
  `_msort` reproduces; --nosort keeps the director's order;
* -S / -S -n: the rule format that -R reads back (thresholds are not saved: ipvsadm's choice);
* -c (connection entries, mm:ss expiry, --persistent-conn's pe columns), --timeout, --daemon;
* names without -n through functions passed in (addresses, then ports per protocol);
* error texts: ipvs_strerror()'s table keyed by the libipvs call an Op maps to.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from halb.l4.ipvsadm_args import Listing
from halb.l4.model import (
    ConnView,
    DestView,
    Forward,
    Op,
    Proto,
    ServiceKey,
    ServiceView,
    Stats,
    TableView,
)

VERSION_LINE = "IP Virtual Server version 1.2.1 (size={size})\n"


@dataclass(frozen=True, slots=True)
class ReverseNames:
    """Reverse resolution for listings without -n (PURE: passed in).

    host: address text → host name or None (gethostbyaddr).
    service: (port, "tcp"|"udp"|"sctp") → service name or None (getservbyport).
    """

    host: Callable[[str], str | None] | None = None
    service: Callable[[int, str], str | None] | None = None


NUMERIC = ReverseNames()


class NoSuchService(LookupError):
    """-L -t/-u/-f for a service the table does not have (ipvsadm: "No such service", 1)."""


# -- numbers -----------------------------------------------------------------------------------


def print_largenum(n: int, exact: bool = False) -> str:
    if exact:
        text = str(n)
        return text.rjust(9 if len(text) <= 8 else len(text) + 1)
    if n < 100_000_000:
        return f"{n:9d}"
    if n < 1_000_000_000:
        return f"{n // 1000:8d}K"
    if n < 100_000_000_000:
        return f"{n // 1_000_000:8d}M"
    if n < 100_000_000_000_000:
        return f"{n // 1_000_000_000:8d}G"
    return f"{n // 1_000_000_000_000:8d}T"


# -- sorting (libipvs comparators under glibc's merge sort) ------------------------------------

T = TypeVar("T")


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _addr_words(addr: str) -> list[int]:
    if not addr:
        return [0]
    ip = ipaddress.ip_address(addr)
    raw = ip.packed
    return [int.from_bytes(raw[i:i + 4], "big") for i in range(0, len(raw), 4)]


def _cmp_addr(a: str, b: str, v6: bool) -> int:
    wa, wb = _addr_words(a), _addr_words(b)
    r = 0
    for i in range(4 if v6 else 1):
        if r:
            break
        r = _int32((wa[i] if i < len(wa) else 0) - (wb[i] if i < len(wb) else 0))
    return r


_PROTO_NUM = {Proto.TCP: 6, Proto.UDP: 17, Proto.SCTP: 132, Proto.FWM: 6}


def cmp_services(s1: ServiceView, s2: ServiceView) -> int:
    k1, k2 = s1.spec.key, s2.spec.key
    r = _int32(k1.fwmark - k2.fwmark)
    if r:
        return r
    r = (10 if k1.ipv6 else 2) - (10 if k2.ipv6 else 2)
    if r:
        return r
    r = _PROTO_NUM[k1.proto] - _PROTO_NUM[k2.proto]
    if r:
        return r
    r = _cmp_addr(k1.addr, k2.addr, k1.ipv6)
    return r or k1.port - k2.port


def cmp_dests(d1: DestView, d2: DestView) -> int:
    a1, a2 = d1.spec, d2.spec
    r = _cmp_addr(a1.addr, a2.addr, ":" in a1.addr)
    return r or a1.port - a2.port


def _msort(items: Sequence[T], cmp: Callable[[T, T], int]) -> list[T]:
    """glibc's msort_with_tmp: top-down, n1 = n/2, the left element wins ties (cmp <= 0)."""
    n = len(items)
    if n <= 1:
        return list(items)
    n1 = n // 2
    left, right = _msort(items[:n1], cmp), _msort(items[n1:], cmp)
    out: list[T] = []
    i = j = 0
    while i < len(left) and j < len(right):
        if cmp(left[i], right[j]) <= 0:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    return out + left[i:] + right[j:]


def sorted_services(services: Sequence[ServiceView]) -> list[ServiceView]:
    return _msort(services, cmp_services)


def sorted_dests(dests: Sequence[DestView]) -> list[DestView]:
    return _msort(dests, cmp_dests)


# -- names -------------------------------------------------------------------------------------

_SVC_PROTO = {Proto.TCP: "tcp", Proto.UDP: "udp", Proto.SCTP: "sctp", Proto.FWM: "tcp"}


def addrport(addr: str, port: int, proto: str, numeric: bool, names: ReverseNames) -> str:
    """addrport_to_anyname(): "a.b.c.d:port" / "[v6]:port", names unless numeric; at most
    59 characters (its 60-byte buffer)."""
    v6 = ":" in addr
    host, service = addr, str(port)
    if not numeric:
        if names.host is not None:
            host = names.host(addr) or addr
        if names.service is not None and proto:
            service = names.service(port, proto) or service
    text = f"[{host}]:{service}" if v6 else f"{host}:{service}"
    return text[:59]


# -- the listing -------------------------------------------------------------------------------


def _title(ls: Listing) -> str:
    head = "Prot LocalAddress:Port".ljust(33)
    if ls.stats:
        return (f"{head} {'Conns':>8} {'InPkts':>8} {'OutPkts':>8} {'InBytes':>8} "
                f"{'OutBytes':>8}\n  -> RemoteAddress:Port\n")
    if ls.rate:
        return (f"{head} {'CPS':>8} {'InPPS':>8} {'OutPPS':>8} {'InBPS':>8} {'OutBPS':>8}\n"
                "  -> RemoteAddress:Port\n")
    if ls.thresholds:
        return (f"{head} {'Uthreshold':<10} {'Lthreshold':<10} {'ActiveConn':<10} "
                f"{'InActConn':<10}\n  -> RemoteAddress:Port\n")
    if ls.persistent_conn:
        return (f"{head} {'Weight':<9} {'PersistConn':<11} {'ActiveConn':<10} "
                f"{'InActConn':<10}\n  -> RemoteAddress:Port\n")
    if ls.tun_info:
        return ("Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           "
                "Forward TunnelInfo    Weight ActiveConn InActConn\n")
    if ls.save:
        return ""
    return ("Prot LocalAddress:Port Scheduler Flags\n"
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")


def _v6_key(key: ServiceKey) -> bool:
    return key.ipv6 or ":" in key.addr


def _svc_name(key: ServiceKey, ls: Listing, names: ReverseNames) -> str:
    if key.proto is Proto.FWM:
        mark = _int32(key.fwmark)  # printed with %d: marks from 2^31 up come out negative
        if ls.save:
            return f"-f {mark} -6" if key.ipv6 else f"-f {mark}"
        return f"FWM  {mark} IPv6" if key.ipv6 else f"FWM  {mark}"
    vname = addrport(key.addr, key.port, _SVC_PROTO[key.proto], ls.numeric, names)
    if ls.save:
        option = {Proto.TCP: "-t", Proto.UDP: "-u", Proto.SCTP: "--sctp-service"}[key.proto]
        return f"{option} {vname}"
    text = f"{key.proto.value:<4} {vname}"
    return text if _v6_key(key) else text[:33]


def _stats5(st: Stats, exact: bool) -> str:
    return "".join(print_largenum(v, exact) for v in
                   (st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes))


def _mask_suffix(svc: ServiceView, word: str) -> str:
    spec = svc.spec
    if _v6_key(spec.key):
        return "" if spec.netmask in ("128", "") else f" {word} {spec.netmask}"
    return "" if spec.netmask in ("255.255.255.255", "") else f" {word} {spec.netmask}"


def _flags_text(scheduler: str, flags: tuple[str, ...]) -> str:
    """print_sched_flags(): for sh and mh only their two named flags are shown (1.31 omits
    flag-3 there, while the "-b " / "()" around it is still printed)."""
    if scheduler in ("sh", "mh"):
        flags = tuple(f for f in flags if f != "flag-3")
    return ",".join(flags)


def _service_line(svc: ServiceView, name: str, ls: Listing) -> str:
    spec = svc.spec
    flags = _flags_text(spec.scheduler, spec.sched_flags)
    if ls.save:
        line = f"-A {name} -s {spec.scheduler}"
        if spec.persistent:
            line += f" -p {spec.persistent}" + _mask_suffix(svc, "-M")
        if spec.pe:
            line += f" --pe {spec.pe}"
        if spec.ops:
            line += " -o"
        if spec.sched_flags:
            line += f" -b {flags}"
        return line + "\n"
    if ls.stats:
        return f"{name:<33}{_stats5(svc.stats, ls.exact)}\n"
    if ls.rate:
        return f"{name:<33}{_stats5(svc.rates, ls.exact)}\n"
    line = f"{name} {spec.scheduler}"
    if spec.sched_flags:
        line += f" ({flags})"
    if spec.persistent:
        line += f" persistent {spec.persistent}" + _mask_suffix(svc, "mask")
        if spec.pe:
            line += f" pe {spec.pe}"
    if spec.ops:
        line += " ops"
    return line + "\n"


_TUN_FLAG_TEXT = {"nocsum": "-c", "csum": "+c", "remcsum": "r+c"}


def _tun_flag(dest: DestView) -> str:
    flags = dest.spec.tun_flags
    return flags[0] if flags else "nocsum"


def tun_info(dest: DestView) -> str:
    spec = dest.spec
    if spec.forward is not Forward.TUNNEL:
        return "n/a"
    tun_type = spec.tun_type or "ipip"
    if tun_type == "gue":
        return f"gue:{spec.tun_port}:{_TUN_FLAG_TEXT[_tun_flag(dest)]}"
    if tun_type == "gre":
        return f"gre:{_TUN_FLAG_TEXT[_tun_flag(dest)]}"
    return tun_type


def _dest_rule(name: str, dname: str, dest: DestView) -> str:
    spec = dest.spec
    line = f"-a {name} -r {dname} {spec.forward.flag} -w {spec.weight}"
    if spec.forward is Forward.TUNNEL:
        tun_type = spec.tun_type or "ipip"
        line += f" --tun-type {tun_type}"
        if tun_type == "gue":
            line += f" --tun-port {spec.tun_port} --tun-{_tun_flag(dest)}"
        elif tun_type == "gre":
            line += f" --tun-{_tun_flag(dest)}"
    return line + "\n"


def _dest_line(dest: DestView, name: str, proto: str, ls: Listing, names: ReverseNames) -> str:
    spec = dest.spec
    dname = addrport(spec.addr, spec.port, proto, ls.numeric, names)
    if ls.save:
        return _dest_rule(name, dname, dest)
    if ":" not in spec.addr:
        dname = dname[:28]
    if ls.stats:
        return f"  -> {dname:<28}{_stats5(dest.stats, ls.exact)}\n"
    if ls.rate:
        r = dest.rates
        return (f"  -> {dname:<28} {r.conns:8d} {r.inpkts:8d} {r.outpkts:8d}"
                f"{print_largenum(r.inbytes, ls.exact)}"
                f"{print_largenum(r.outbytes, ls.exact)}\n")
    if ls.thresholds:
        return (f"  -> {dname:<28} {spec.u_threshold:<10} {spec.l_threshold:<10} "
                f"{dest.active:<10} {dest.inactive:<10}\n")
    if ls.persistent_conn:
        return (f"  -> {dname:<28} {spec.weight:<9} {dest.persist:<11} {dest.active:<10} "
                f"{dest.inactive:<10}\n")
    if ls.tun_info:
        return (f"  -> {dname:<28} {spec.forward.value:<7} {tun_info(dest):<13} "
                f"{spec.weight:<6} {dest.active:<10} {dest.inactive:<10}\n")
    return (f"  -> {dname:<28} {spec.forward.value:<7} {spec.weight:<6} {dest.active:<10} "
            f"{dest.inactive:<10}\n")


def service_entry(svc: ServiceView, ls: Listing, names: ReverseNames = NUMERIC) -> str:
    """print_service_entry(): the service line and its dests."""
    name = _svc_name(svc.spec.key, ls, names)
    out = [_service_line(svc, name, ls)]
    dests = svc.dests if ls.nosort else sorted_dests(svc.dests)
    proto = _SVC_PROTO[svc.spec.key.proto]
    out.extend(_dest_line(d, name, proto, ls, names) for d in dests)
    return "".join(out)


def _same_service(key: ServiceKey, want: ServiceKey) -> bool:
    if want.proto is Proto.FWM:
        return key.proto is Proto.FWM and key.fwmark == want.fwmark and key.ipv6 == want.ipv6
    return (key.proto is want.proto and key.addr == want.addr and key.port == want.port)


def find_service(table: TableView, key: ServiceKey) -> ServiceView | None:
    for svc in table.services:
        if _same_service(svc.spec.key, key):
            return svc
    return None


def list_all(table: TableView, ls: Listing, names: ReverseNames = NUMERIC) -> str:
    out = [] if ls.save else [VERSION_LINE.format(size=table.size)]
    services = table.services if ls.nosort else sorted_services(table.services)
    out.append(_title(ls))
    out.extend(service_entry(s, ls, names) for s in services)
    return "".join(out)


def list_timeout(table: TableView) -> str:
    t = table.timeouts
    return f"Timeout (tcp tcpfin udp): {t.tcp} {t.tcpfin} {t.udp}\n"


def _conn_proto(name: str) -> str:
    return {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}.get(name, "")


def list_conn(conns: Sequence[ConnView], ls: Listing, names: ReverseNames = NUMERIC) -> str:
    out = ["IPVS connection entries\n"]
    if ls.persistent_conn:
        out.append(f"pro expire {'state':<11} {'source':<18} {'virtual':<18} "
                   f"{'destination':<18} {'pe name':<16} pe_data\n")
    else:
        out.append(f"pro expire {'state':<11} {'source':<18} {'virtual':<18} destination\n")
    for c in conns:
        proto = _conn_proto(c.proto)
        cname = addrport(c.client[0], c.client[1], proto, ls.numeric, names)
        vname = addrport(c.virtual[0], c.virtual[1], proto, ls.numeric, names)
        dname = addrport(c.dest[0], c.dest[1], proto, ls.numeric, names)
        left = max(0, int(c.expires))
        expire = f"{left // 60:02d}:{left % 60:02d}"
        if ls.persistent_conn and c.pe_name:
            out.append(f"{c.proto:<3} {expire:<6} {c.state:<11} {cname:<18} {vname:<18} "
                       f"{dname:<16} {c.pe_name:<18} {c.pe_data}\n")
        else:
            out.append(f"{c.proto:<3} {expire:<6} {c.state:<11} {cname:<18} {vname:<18} "
                       f"{dname}\n")
    return "".join(out)


def render(table: TableView, ls: Listing, names: ReverseNames = NUMERIC) -> str:
    """What `ipvsadm <listing options>` prints on stdout. Raises NoSuchService."""
    if ls.connections:
        return list_conn(table.connections, ls, names)
    if ls.service is not None:
        svc = find_service(table, ls.service)
        if svc is None:
            raise NoSuchService(error_text(Op.LIST, 3))
        return _title(ls) + service_entry(svc, ls, names)
    if ls.timeout:
        return list_timeout(table)
    if ls.daemon:
        return ""  # no sync daemon runs: ipvsadm prints nothing
    return list_all(table, ls, names)


# -- errors ------------------------------------------------------------------------------------

EEXIST, ENOENT, ESRCH = 17, 2, 3
_BY_OP: dict[tuple[Op, int], str] = {
    (Op.ADD_SERVICE, EEXIST): "Service already exists",
    (Op.ADD_SERVICE, ENOENT): "Scheduler or persistence engine not found",
    (Op.EDIT_SERVICE, ESRCH): "No such service",
    (Op.EDIT_SERVICE, ENOENT): "Scheduler or persistence engine not found",
    (Op.DEL_SERVICE, ESRCH): "No such service",
    (Op.ZERO, ESRCH): "No such service",
    (Op.ADD_DEST, ESRCH): "Service not defined",
    (Op.ADD_DEST, EEXIST): "Destination already exists",
    (Op.EDIT_DEST, ESRCH): "Service not defined",
    (Op.EDIT_DEST, ENOENT): "No such destination",
    (Op.DEL_DEST, ESRCH): "Service not defined",
    (Op.DEL_DEST, ENOENT): "No such destination",
    (Op.LIST, ESRCH): "No such service",
}
_GENERIC = {
    1: "Permission denied (you must be root)",
    22: "Invalid operation.  Possibly wrong module version, address not unicast, ...",
    92: "Protocol not available",
    12: "Memory allocation problem",
    95: "Operation not supported with IPv6",
    97: "Operation not supported with specified address family",
    90: "Module is wrong version",
}
DAEMON_ERRORS = {(True, EEXIST): "Daemon has already run", (False, ESRCH): "No daemon is running"}


def error_text(op: Op, errno: int) -> str:
    """ipvs_strerror(errno) after the libipvs call that `op` makes (no newline)."""
    text = _BY_OP.get((op, errno)) or _GENERIC.get(errno)
    return text if text is not None else os.strerror(errno)
