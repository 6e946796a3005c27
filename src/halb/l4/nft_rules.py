"""The kernel data plane's ruleset (PURE): virtual services rendered as one halb-owned nft table.

Input is a `Ruleset` (services, each with its real servers and a `Pick`: how new flows are spread,
computed by `l4/nft_plan.py` from the IPVS scheduler); output is the text of one `nft -f`
transaction that replaces the whole ruleset atomically. The transaction flushes every rule of the
halb tables and adds them again (nf_tables commits a batch all or nothing, so a packet sees the
old rules or the new ones, never a mix); it keeps what must outlive a change: the named counters
(the `--stats` figures), the persistence maps (IPVS's templates) and the DR flow maps (IPVS's
connection table in DR mode). Objects the new ruleset no longer has are deleted in the same
transaction. `render(new, None)` first deletes any table of the same name (a stale one from a
crashed run), so the first transaction is the plain table delete + add.

Marks. Every scheduled flow carries a mark naming its real server: ``TAG | svc << 12 | dest``
(top byte 0x48, "H"; svc 1..2047, dest 1..4095; bit 23 is free). NAT keeps it in the conntrack
entry (``ct mark``), DR in the packet (``meta mark``) and in the flow map.

NAT / masquerading (``-m``), ``table ip halb``, the conntrack path::

    pre        prerouting -140  ct state new: goto the service's chain, which gives the entry
               s<N>             the IPVS timeouts (ct timeout objects: established = tcp, fin_wait
                                = tcpfin, udp = udp) and sets ct mark: persistence map (saddr & netmask -> mark, timed) if -p, else the
                                pick (numgen inc sequence, or jhash buckets), reject when nobody
                                is available (IPVS answers ICMP port unreachable), count the conn
    nat_pre    prerouting dstnat: dnat to ct mark map { mark : rip . rport }
    nat_post   postrouting srcnat: masquerade the marks whose real server needs it (one-armed)
    count      forward: drop the flows of deleted real servers, per-mark in/out counters (ct
               direction . ct mark), refresh the persistence entry

DR / gatewaying (``-g``), ``table netdev halb`` on the ingress of the director's interfaces; no
conntrack there, so halb keeps its own flow table, as IPVS does in DR mode::

    ingress    frames for this host only (pkttype host) to an address it holds (fib daddr type
               local: a backup without the VIP forwards nothing), then proto . vip . vport ->
               goto s<N>
    s<N>       meta mark from the flow map (saddr . sport -> mark); a flow whose real server was
               removed is dropped (IPVS expire_nodest_conn=0); a new flow must start with a SYN
               (TCP); a SYN reusing a closing flow's tuple drops its entry and is scheduled
               anew (IPVS conn_reuse_mode), so is a SYN on the flow of a removed server;
               persistence map, else the pick; reject when nobody
               is available
    f<N>       refresh the flow (timeout tcp; tcpfin once a FIN or RST was seen, which the set
               c<N> remembers; udp) and the persistence entry, count, then ``fwd ip to <rip> device <dev>``: the neighbour layer rewrites
               the destination MAC to the real server's and sends the frame out; the IP header
               still says VIP, which the real server holds on lo (arp_ignore=1, arp_announce=2).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from halb.l4.model import Timeouts

TABLE = "halb"
TAG = 0x48000000
TAG_MASK = 0xFF000000
SVC_MASK = 0xFFFFF000
MAX_SERVICES = 2047
MAX_DESTS = 4095
# the most elements of a flow / closing / persistence map. A DR flow stays tcpfin (120 s) after
# its FIN, and a full map cannot take a new flow (its SYN passes, its next packets are dropped):
# 65536 are full at 550 short connections/s; IPVS's table has no such cap. Elements are
# allocated as they come (a dynamic set), so the cap costs nothing while unused.
MAP_SIZE = 1 << 20

PICK_SEQUENCE = "sequence"  # numgen inc mod len(slots): one slot per new flow, in order
PICK_HASH = "hash"  # jhash <key> mod len(slots)

HASH_KEYS = {
    "saddr": "ip saddr",
    "saddr.sport": "ip saddr . th sport",
    "daddr": "ip daddr",
}


def mark(svc: int, dest: int) -> int:
    """The mark of real server `dest` (1..4095) of service `svc` (1..2047)."""
    if not 1 <= svc <= MAX_SERVICES or not 1 <= dest <= MAX_DESTS:
        raise ValueError(f"service {svc} / real server {dest} out of range")
    return TAG | (svc << 12) | dest


def unmark(value: int) -> tuple[int, int] | None:
    """(svc, dest) of a halb mark, None for any other mark."""
    if value & TAG_MASK != TAG or not value & 0xFFF:
        return None
    return (value >> 12) & 0x7FF, value & 0xFFF


@dataclass(frozen=True, slots=True)
class Pick:
    """How new flows are spread: `slots[i]` is the dest id of slot i (0 = nobody: reject)."""

    kind: str = PICK_SEQUENCE
    slots: tuple[int, ...] = ()
    key: str = "saddr"  # PICK_HASH only: one of HASH_KEYS
    seed: int = 0  # PICK_HASH only: the jhash seed

    def __post_init__(self) -> None:
        if self.kind not in (PICK_SEQUENCE, PICK_HASH):
            raise ValueError(f"unknown pick kind {self.kind!r}")
        if self.kind == PICK_HASH and self.key not in HASH_KEYS:
            raise ValueError(f"unknown hash key {self.key!r}")


@dataclass(frozen=True, slots=True)
class RuleDest:
    """A real server as the rules see it. `id` stays the same for the real server's life."""

    id: int
    addr: str
    port: int
    masquerade: bool = False  # NAT: source NAT to the director on the way to the real server
    device: str = ""  # DR: the interface the real server is reached on


@dataclass(frozen=True, slots=True)
class RuleService:
    id: int
    proto: str  # "tcp" | "udp" | "fwm" (a fwmark service: NAT only)
    addr: str  # empty for a fwmark service
    port: int  # 0: every port (a persistent port-zero service)
    dests: tuple[RuleDest, ...]  # every real server of the service (weight 0 included)
    pick: Pick
    persistent: int = 0  # seconds; 0: not persistent
    netmask: str = "255.255.255.255"
    fwmark: int = 0  # proto "fwm": the packet mark (meta mark) that selects the service


@dataclass(frozen=True, slots=True)
class Ruleset:
    """One table: `family` "ip" for NAT services, "netdev" for DR services (on `devices`)."""

    family: str
    services: tuple[RuleService, ...] = ()
    timeouts: Timeouts = field(default_factory=Timeouts)
    devices: tuple[str, ...] = ()  # netdev: the ingress hook's interfaces
    table: str = TABLE

    def __post_init__(self) -> None:
        if self.family not in ("ip", "netdev"):
            raise ValueError(f"unknown family {self.family!r}")
        if self.family == "netdev" and self.services and not self.devices:
            raise ValueError("a DR ruleset needs the interfaces to hook on")
        if self.family == "netdev" and any(s.proto == "fwm" for s in self.services):
            raise ValueError("fwmark services exist only in NAT mode (no packet marks yet at "
                             "the ingress hook)")


# -- small renderers -------------------------------------------------------------------------

def hexmark(value: int) -> str:
    return f"0x{value:08x}"


def _ranges(slots: Sequence[int]) -> list[tuple[int, int, int]]:
    """Runs of equal values: (first index, last index, value)."""
    out: list[tuple[int, int, int]] = []
    for i, v in enumerate(slots):
        if out and out[-1][2] == v and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i, v)
        else:
            out.append((i, i, v))
    return out


def slot_map(slots: Sequence[int], value: dict[int, str]) -> str:
    """`{ 0-1 : v, 2 : w }` for the slots whose dest is in `value` (others left out)."""
    parts = []
    for lo, hi, dest in _ranges(slots):
        if dest not in value:
            continue
        key = str(lo) if lo == hi else f"{lo}-{hi}"
        parts.append(f"{key} : {value[dest]}")
    return "{ " + ", ".join(parts) + " }"


def _set(items: Iterable[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def _masked(svc: RuleService) -> str:
    """The persistence key: the client address under the -M netmask."""
    if svc.netmask in ("", "255.255.255.255", "32"):
        return "ip saddr"
    return f"ip saddr & {ipaddress.IPv4Address(svc.netmask)}"


def pick_expr(svc: RuleService, marks: dict[int, str]) -> str | None:
    """The expression giving a new flow its mark, or None when no slot has a live real server."""
    slots = svc.pick.slots
    if not slots or not any(s in marks for s in slots):
        return None
    if svc.pick.kind == PICK_SEQUENCE and len(set(slots)) == 1:
        return marks[slots[0]]
    if svc.pick.kind == PICK_SEQUENCE:
        head = f"numgen inc mod {len(slots)}"
    else:
        head = f"jhash {HASH_KEYS[svc.pick.key]} mod {len(slots)}"
        if svc.pick.seed:
            head += f" seed {hexmark(svc.pick.seed)}"
    return f"{head} map {slot_map(slots, marks)}"


def _marks(svc: RuleService) -> dict[int, str]:
    return {d.id: hexmark(mark(svc.id, d.id)) for d in svc.dests}


def counter_names(svc: int, dest: int) -> tuple[str, str, str]:
    """(conns, in, out) counter names of one real server."""
    return f"n{svc}_{dest}", f"i{svc}_{dest}", f"o{svc}_{dest}"


def timeout_names(t: Timeouts) -> tuple[str, str]:
    return f"tcp_{t.tcp}_{t.tcpfin}", f"udp_{t.udp}"


# -- the objects each ruleset owns -----------------------------------------------------------

def _objects(rs: Ruleset) -> dict[str, str]:
    """Named objects kept across replacements: {"kind name": declaration}."""
    out: dict[str, str] = {}
    for svc in rs.services:
        for d in svc.dests:
            names = counter_names(svc.id, d.id)
            kept = names if rs.family == "ip" else names[:2]
            for name in kept:
                out[f"counter {name}"] = f"counter {name} {{ }}"
        if svc.persistent:
            out[f"map p{svc.id}"] = (f"map p{svc.id} {{ type ipv4_addr : mark; flags dynamic, "
                                     f"timeout; timeout {svc.persistent}s; size {MAP_SIZE}; }}")
        if rs.family == "netdev":
            out[f"map f{svc.id}"] = (f"map f{svc.id} {{ type ipv4_addr . inet_service : mark; "
                                     f"flags dynamic, timeout; timeout {_flow_timeout(rs, svc)}s; "
                                     f"size {MAP_SIZE}; }}")
            if svc.proto == "tcp":
                out[f"set c{svc.id}"] = (f"set c{svc.id} {{ type ipv4_addr . inet_service; "
                                         f"flags dynamic, timeout; timeout {rs.timeouts.tcpfin}s; "
                                         f"size {MAP_SIZE}; }}")
    if rs.family == "ip" and rs.services:
        tcp, udp = timeout_names(rs.timeouts)
        t = rs.timeouts
        out[f"ct timeout {tcp}"] = (
            f"ct timeout {tcp} {{ protocol tcp; l3proto ip; "
            f"policy = {{ established : {t.tcp}, fin_wait : {t.tcpfin} }}; }}")
        out[f"ct timeout {udp}"] = (
            f"ct timeout {udp} {{ protocol udp; l3proto ip; "
            f"policy = {{ unreplied : {t.udp}, replied : {t.udp} }}; }}")
    return out


def _flow_timeout(rs: Ruleset, svc: RuleService) -> int:
    return rs.timeouts.udp if svc.proto == "udp" else rs.timeouts.tcp


def _dispatch(svc_list: Sequence[RuleService], target: str) -> list[str]:
    """The rules sending a service's packets to its chain: exact port first, then port zero."""
    exact = [f"{s.proto} . {s.addr} . {s.port} : goto {target}{s.id}"
             for s in svc_list if s.port and s.proto != "fwm"]
    wild = [f"{s.proto} . {s.addr} : goto {target}{s.id}"
            for s in svc_list if not s.port and s.proto != "fwm"]
    marked = [f"{s.fwmark} : goto {target}{s.id}" for s in svc_list if s.proto == "fwm"]
    rules = []
    if exact:
        rules.append(f"ip protocol . ip daddr . th dport vmap {_set(exact)}")
    if wild:
        rules.append(f"ip protocol . ip daddr vmap {_set(wild)}")
    if marked:  # IPVS looks fwmark services up first
        rules.insert(0, f"meta l4proto {{ tcp, udp }} meta mark vmap {_set(marked)}")
    return rules


# -- NAT -------------------------------------------------------------------------------------

def _nat_service_chain(rs: Ruleset, svc: RuleService) -> list[str]:
    marks = _marks(svc)
    tcp_t, udp_t = timeout_names(rs.timeouts)
    # the new, unconfirmed conntrack entry takes the IPVS timeouts (only possible after the
    # conntrack hook, hence here and not in a raw chain)
    if svc.proto == "fwm":
        rules = [f'meta l4proto tcp ct timeout set "{tcp_t}"',
                 f'meta l4proto udp ct timeout set "{udp_t}"']
    else:
        rules = [f'ct timeout set "{tcp_t if svc.proto == "tcp" else udp_t}"']
    if svc.persistent:
        rules.append(f"ct mark set {_masked(svc)} map @p{svc.id}")
        if marks:
            rules.append(f"ct mark != 0 ct mark != {_set(marks.values())} ct mark set 0")
        else:
            rules.append("ct mark != 0 ct mark set 0")
    expr = pick_expr(svc, marks)
    if expr is not None:
        rules.append(f"ct mark 0 ct mark set {expr}")
    rules.append("ct mark 0 reject with icmp port-unreachable")
    if svc.persistent:
        rules.append(f"update @p{svc.id} {{ {_masked(svc)} : ct mark }}")
    if marks:
        conns = {m: f'"{counter_names(svc.id, d)[0]}"' for d, m in marks.items()}
        rules.append(f"counter name ct mark map {_set(f'{m} : {c}' for m, c in conns.items())}")
    return rules


def _nat_body(rs: Ruleset) -> list[str]:
    lines: list[str] = []

    def chain(name: str, head: str | None, rules: Sequence[str]) -> None:
        lines.append(f"  chain {name} {{")
        if head:
            lines.append(f"    {head}")
        lines.extend(f"    {r}" for r in rules)
        lines.append("  }")

    services = rs.services
    chain("pre", "type filter hook prerouting priority mangle + 10; policy accept;",
          [f"ct state new {r}" for r in _dispatch(services, "s")])
    for svc in services:
        chain(f"s{svc.id}", None, _nat_service_chain(rs, svc))

    with_port = {}
    no_port = {}
    masq = []
    ins, outs = {}, {}
    refresh = []
    for svc in services:
        for d in svc.dests:
            m = hexmark(mark(svc.id, d.id))
            if d.port:
                with_port[m] = f"{d.addr} . {d.port}"
            else:
                no_port[m] = d.addr
            if d.masquerade:
                masq.append(m)
            _, i, o = counter_names(svc.id, d.id)
            ins[m], outs[m] = f'"{i}"', f'"{o}"'
        if svc.persistent:
            refresh.append(f"ct direction original ct mark & {hexmark(SVC_MASK)} == "
                           f"{hexmark(TAG | svc.id << 12)} update @p{svc.id} "
                           f"{{ {_masked(svc)} : ct mark }}")
    nat: list[str] = []
    if no_port:
        nat.append(f"ct mark {_set(no_port)} dnat ip to ct mark map "
                   f"{_set(f'{m} : {a}' for m, a in no_port.items())}")
    if with_port:
        nat.append(f"meta l4proto {{ tcp, udp }} ct mark & {hexmark(TAG_MASK)} == {hexmark(TAG)} "
                   "dnat ip to ct mark map "
                   f"{_set(f'{m} : {a}' for m, a in with_port.items())}")
    chain("nat_pre", "type nat hook prerouting priority dstnat; policy accept;", nat)
    chain("nat_post", "type nat hook postrouting priority srcnat; policy accept;",
          [f"ct mark {_set(masq)} masquerade"] if masq else [])
    fwd: list[str] = []
    if ins:
        fwd.append(f"ct mark & {hexmark(TAG_MASK)} != {hexmark(TAG)} return")
        # a connection whose real server was deleted: its packets are dropped, as IPVS does
        # with expire_nodest_conn=0 (conntrack keeps the NAT binding otherwise)
        fwd.append(f"ct mark != {_set(ins)} drop")
        both = [f"original . {m} : {c}" for m, c in ins.items()]
        both += [f"reply . {m} : {c}" for m, c in outs.items()]
        fwd.append(f"counter name ct direction . ct mark map {_set(both)}")
        fwd.extend(refresh)
    chain("count", "type filter hook forward priority filter; policy accept;", fwd)
    return lines


# -- DR --------------------------------------------------------------------------------------

def _dr_service_chains(rs: Ruleset, svc: RuleService) -> list[tuple[str, list[str]]]:
    marks = _marks(svc)
    valid = _set(marks.values()) if marks else "{ 0x00000000 }"
    key = "ip saddr . th sport"
    sched: list[str] = [f"meta mark set {key} map @f{svc.id}"]
    if svc.proto == "tcp":  # a SYN reusing the tuple of a closing flow is a new connection:
        # its old entry goes (`update` in f<N> would keep the old real server for the rest of
        # the connection while the SYN went to the new one), as IPVS's conn_reuse_mode does;
        # before the check below, or a SYN reusing the flow of a removed server is dropped
        sched.append(f"meta mark != 0 tcp flags & (syn | ack) == syn {key} @c{svc.id} "
                     f"delete @f{svc.id} {{ {key} : meta mark }} meta mark set 0")
    if svc.proto == "tcp":  # a SYN on the flow of a removed server (its connection was
        # refused: the director saw no FIN or RST) starts a new connection too; IPVS drops it
        # until the entry expires (60 s in SYN_RECV; this flow table keeps it for tcp's)
        sched.append(f"meta mark != 0 meta mark != {valid} tcp flags & (syn | ack) == syn "
                     f"delete @f{svc.id} {{ {key} : meta mark }} meta mark set 0")
    if marks:
        sched.append(f"meta mark != 0 meta mark != {valid} drop")
    else:
        sched.append("meta mark != 0 drop")
    sched.append(f"meta mark != 0 goto f{svc.id}")
    if svc.proto == "tcp":
        sched.append("tcp flags & (fin | syn | rst | ack) != syn drop")
    if svc.persistent:
        sched.append(f"meta mark set {_masked(svc)} map @p{svc.id}")
        if marks:
            sched.append(f"meta mark != 0 meta mark != {valid} meta mark set 0")
        else:
            sched.append("meta mark != 0 meta mark set 0")
    expr = pick_expr(svc, marks)
    if expr is not None:
        sched.append(f"meta mark 0 meta mark set {expr}")
    sched.append("meta mark 0 reject with icmp port-unreachable")
    if marks:
        conns = _set(f'{m} : "{counter_names(svc.id, d)[0]}"' for d, m in marks.items())
        sched.append(f"counter name meta mark map {conns}")
    sched.append(f"goto f{svc.id}")

    t = rs.timeouts
    flow: list[str] = []
    if svc.persistent:
        flow.append(f"update @p{svc.id} {{ {_masked(svc)} : meta mark }}")
    if svc.proto == "tcp":  # c<N>: the flows that saw a FIN or RST (IPVS's FIN_WAIT, CLOSE...)
        c = f"c{svc.id}"
        flow.append(f"tcp flags & (syn | ack) == syn delete @{c} {{ {key} }}")
        flow.append(f"tcp flags & (fin | rst) != 0 update @{c} {{ {key} }}")
        # every packet refreshes its flow with the tcp timeout, a closing one then with tcpfin
        # (one lookup of c<N> per packet, not two)
        flow.append(f"update @f{svc.id} {{ {key} timeout {t.tcp}s : meta mark }}")
        flow.append(f"{key} @{c} update @{c} {{ {key} }} update @f{svc.id} "
                    f"{{ {key} timeout {t.tcpfin}s : meta mark }}")
    else:
        flow.append(f"update @f{svc.id} {{ {key} timeout {t.udp}s : meta mark }}")
    if marks:
        ins = _set(f'{m} : "{counter_names(svc.id, d)[1]}"' for d, m in marks.items())
        flow.append(f"counter name meta mark map {ins}")
    by_device: dict[str, dict[str, str]] = {}
    for d in svc.dests:
        by_device.setdefault(d.device or rs.devices[0], {})[marks[d.id]] = d.addr
    for dev, addrs in by_device.items():
        flow.append(f"meta mark {_set(addrs)} fwd ip to meta mark map "
                    f'{_set(f"{m} : {a}" for m, a in addrs.items())} device "{dev}"')
    flow.append("drop")
    return [(f"s{svc.id}", sched), (f"f{svc.id}", flow)]


def _dr_body(rs: Ruleset) -> list[str]:
    lines: list[str] = []
    devices = ", ".join(f'"{d}"' for d in rs.devices)
    lines.append("  chain ingress {")
    lines.append(f"    type filter hook ingress devices = {{ {devices} }} priority filter; "
                 "policy accept;")
    # a frame for another host's MAC (a bridge floods the master's frames to the backup while
    # it has not learnt the port) is not ours: IPVS never sees it (ip_rcv drops OTHERHOST)
    lines.append("    meta pkttype != host accept")
    # nor is a packet for a VIP this director does not hold (a VRRP backup, or a master that
    # handed the VIP back while a client's neighbour entry still names its MAC): IPVS sees only
    # what the stack delivers locally, so that traffic is left to the stack
    lines.append("    fib daddr type != local accept")
    lines.extend(f"    {r}" for r in _dispatch(rs.services, "s"))
    lines.append("  }")
    for svc in rs.services:
        for name, rules in _dr_service_chains(rs, svc):
            lines.append(f"  chain {name} {{")
            lines.extend(f"    {r}" for r in rules)
            lines.append("  }")
    return lines


# -- the transaction -------------------------------------------------------------------------

def _chains(rs: Ruleset) -> set[str]:
    if not rs.services:
        return set()
    if rs.family == "ip":
        base = {"pre", "nat_pre", "nat_post", "count"}
        return base | {f"s{s.id}" for s in rs.services}
    return {"ingress"} | {f"s{s.id}" for s in rs.services} | {f"f{s.id}" for s in rs.services}


def render(rs: Ruleset, previous: Ruleset | None) -> str:
    """The `nft -f` text that turns the kernel's table `previous` (None: unknown, maybe stale)
    into `rs`, as one transaction. A ruleset without services has no table (so a director
    with only DR services does not load conntrack and NAT for the whole namespace)."""
    name = f"{rs.family} {rs.table}"
    out: list[str] = []
    if previous is None:
        out += [f"table {name} {{ }}", f"delete table {name}"]
    elif previous.services:
        out.append(f"flush table {name}")
    if not rs.services:
        if previous is not None and previous.services:
            out.append(f"delete table {name}")
        return "\n".join(out) + "\n"
    objects = _objects(rs)
    body = [f"table {name} {{"]
    body.extend(f"  {decl}" for decl in objects.values())
    if previous is not None and rs.family == "netdev" and previous.services and \
            previous.devices != rs.devices:
        out.append(f"delete chain {name} ingress")
    body.extend(_nat_body(rs) if rs.family == "ip" else _dr_body(rs))
    body.append("}")
    out.extend(body)
    if previous is not None:
        for chain_name in sorted(_chains(previous) - _chains(rs)):
            out.append(f"delete chain {name} {chain_name}")
        for key in sorted(set(_objects(previous)) - set(objects)):
            kind, obj = key.rsplit(" ", 1)
            if kind == "ct timeout":  # conntrack entries may still use it: left till the end
                continue
            out.append(f"delete {kind} {name} {obj}")
    return "\n".join(out) + "\n"


def remove(family: str, table: str = TABLE) -> str:
    """The transaction deleting a halb table whether or not it exists."""
    return f"table {family} {table} {{ }}\ndelete table {family} {table}\n"
