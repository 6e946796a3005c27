"""keepalived.conf's virtual_server part -> LvsConfig (PURE).

`virtual_servers(cfg)` reads the virtual_server, virtual_server_group and SSL blocks that
config/keepalived.py keeps raw (KeepalivedConfig.raw), the way keepalived 2.2.7's checker
process reads them (config/keepalived_lvs_parse.py and _check.py), then does what keepalived does
before it starts checking:

* link_vsg_to_vs: a `virtual_server group NAME` needs that group (else it is dropped, a message
  keepalived only logs); the group's virtual servers are numbered "[NAME]:0", "[NAME]:1", ...
* validate_check_config, with its messages and in its order: a virtual server without real
  servers is dropped; no protocol means UDP; no scheduler means wlc; no lvs_method means NAT;
  a duplicated real server is dropped; quorum is capped at the sum of the weights and hysteresis
  below quorum; ports of DR/TUN real servers follow the virtual server's; then every real server
  and checker takes what it did not set from its virtual server / real server / checker type
  (retry 1, MISC_CHECK 0; delay_before_retry 3 s for HTTP_GET and SSL_GET, else 1 s; warmup =
  delay_loop; connect_timeout 5 s; misc_timeout = the virtual server's delay_loop).

Problems are reported as keepalived reports them (LvsConfig.warnings) and never stop the load,
except a keyword missing its parameter, which stops keepalived too (FatalConfigError).
`lookup_user(user, group)` says whether a MISC_CHECK `user` exists (the caller's I/O); without it
every user is taken as existing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType

from halb.config import keepalived_lvs_check, keepalived_lvs_vs  # noqa: F401  (register keywords)
from halb.config.errors import Pos
from halb.config.keepalived_lvs_model import (
    MISC_CHECK,
    Checker,
    LvsConfig,
    RealServer,
    SorryServer,
    SslContext,
    Url,
    VirtualServer,
    VirtualServerGroup,
    VsgEntry,
)
from halb.config.keepalived_lvs_parse import (
    UINT,
    Frame,
    Item,
    PServer,
    PSsl,
    PVs,
    PVsg,
    Reader,
    Walk,
    end_pos,
    flatten,
    vsg_end,
    vsg_entry,
)
from halb.config.keepalived_model import KeepalivedConfig, RawBlock


@dataclass(eq=False)
class Collector:
    vss: list[PVs] = field(default_factory=list)
    groups: list[PVsg] = field(default_factory=list)
    ssl: PSsl | None = None


def virtual_servers(cfg: KeepalivedConfig, *,
                    lookup_user: Callable[[str, str | None], bool] | None = None) -> LvsConfig:
    reader = Reader(lookup_user)
    col = Collector()
    for block in cfg.raw:
        if block.name == "virtual_server":
            _read_vs(reader, col, block)
        elif block.name == "virtual_server_group":
            _read_vsg(reader, col, block)
        elif block.name == "SSL":
            _read_ssl(reader, col, block)
    _link_groups(reader, col)
    _validate(reader, col)
    return _freeze(reader, col)


def _items(block: RawBlock) -> list[Item]:
    return [*flatten(block.block or ()), Item(None, end_pos(block))]  # type: ignore[arg-type]


def _read_vs(r: Reader, col: Collector, block: RawBlock) -> None:
    args, pos = block.args, block.pos
    vs = PVs(pos)
    if args[0] == "group":
        vs.group = args[1] if len(args) > 1 else ""
    elif args[0] == "fwmark":
        text = args[1] if len(args) > 1 else ""
        mark = r.unsigned(text, 0, UINT, pos)
        if mark is None:
            r.warn(f"virtual server fwmark '{text}' must be in [0, {UINT}] - ignoring", pos)
            return
        vs.fwmark = mark
    else:
        port = args[1] if len(args) > 1 and args[1].strip("0") else None
        sa = r.sockaddr(args[0], port, pos)
        if sa is None:
            shown = f"/port {args[0]}/{port}" if port else f" {args[0]}"
            r.warn(f"Invalid virtual server IP address{shown} - skipping", pos)
            return
        vs.address, vs.port = sa
        vs.family = vs.address.version
    col.vss.append(vs)
    if block.block is None:
        return
    Walk(r, col).run(Frame("vs", vs, on_close=_vs_end), _items(block))


def _vs_end(w: Walk, f: Frame, pos: Pos) -> None:
    vs: PVs = f.obj
    sorry = vs.sorry
    if sorry is not None and sorry.method != "TUN":
        if vs.family is None:
            vs.family = sorry.family
        elif vs.family != sorry.family:
            w.warn(f"Address family of virtual server and sorry server {sorry.address} don't "
                   "match - skipping sorry server.", pos)
            vs.sorry = None
    if vs.family is None and vs.group is None:
        family = vs.sorry.family if vs.sorry is not None else None
        mixed = False
        for rs in vs.rss:
            if family is None:
                family = rs.family
            elif family != rs.family:
                mixed = True
                break
        vs.family = 4 if mixed or family is None else family


def _read_vsg(r: Reader, col: Collector, block: RawBlock) -> None:
    vsg = PVsg(block.args[0], block.pos)
    Walk(r, col).run(Frame("vsg", vsg, on_close=vsg_end, lines=vsg_entry), _items(block))


def _read_ssl(r: Reader, col: Collector, block: RawBlock) -> None:
    if col.ssl is not None:
        r.warn("SSL context already specified - replacing", block.pos)
    col.ssl = PSsl()
    Walk(r, col).run(Frame("ssl", col.ssl), _items(block))


# -- link_vsg_to_vs --------------------------------------------------------------------------


def _link_groups(r: Reader, col: Collector) -> None:
    by_name: dict[str, PVsg] = {}
    for g in col.groups:
        by_name.setdefault(g.name, g)
    for vs in list(col.vss):
        if vs.group is None:
            continue
        vsg = by_name.get(vs.group)
        if vsg is None:
            r.info(f"Virtual server group {vs.group} specified but not configured - ignoring "
                   f"virtual server {vs.name()}")
            col.vss.remove(vs)
            continue
        vsg_family = None if vsg.have4 == vsg.have6 else (4 if vsg.have4 else 6)
        if vsg.have4 and vsg.have6 and vs.family is not None:
            r.info(f"{vs.group}: virtual server group with IPv4 & IPv6 doesn't match virtual "
                   f"server {vs.name()} - ignoring")
            col.vss.remove(vs)
        elif (vsg.have4 and vs.family == 6) or (vsg.have6 and vs.family == 4):
            r.info(f"{vs.group}: address family doesn't match virtual server {vs.name()} - "
                   "ignoring")
            col.vss.remove(vs)
        elif vsg_family is not None:
            vs.family = vsg_family
        elif vs.family is None and vsg.fwmark_no_family:
            r.info(f"{vs.group}: Virtual server {vs.name()} address family cannot be determined,"
                   " defaulting to IPv4")
    for g in col.groups:
        n = 0
        for vs in col.vss:
            if vs.group == g.name:
                vs.group_index = n
                n += 1
    for vs in col.vss:
        if vs.family is None:
            vs.family = 4


# -- validate_check_config -------------------------------------------------------------------


def _group(col: Collector, vs: PVs) -> PVsg | None:
    for g in col.groups:
        if g.name == vs.group:
            return g
    return None


def _validate(r: Reader, col: Collector) -> None:
    for vs in list(col.vss):
        if not vs.rss:
            r.warn(f"Virtual server {vs.name()} has no real servers - ignoring")
            col.vss.remove(vs)
            continue
        _validate_vs(r, vs, _group(col, vs))


def _validate_vs(r: Reader, vs: PVs, vsg: PVsg | None) -> None:
    marks = [e for e in vsg.entries if e.start is None] if vsg else []
    ranges = [e for e in vsg.entries if e.start is not None] if vsg else []
    if vs.ha_suspend and (vs.fwmark or marks):
        r.warn(f"Virtual server {vs.name()}: cannot use ha_suspend with fwmarks - clearing "
               "ha_suspend")
        vs.ha_suspend = False
    if ranges or (vsg is None and not vs.fwmark):
        if not vs.protocol:
            r.warn(f"Virtual server {vs.name()}: no protocol set - defaulting to UDP")
            vs.protocol = "UDP"
        if vs.ops and vs.protocol != "UDP":
            r.warn(f"Virtual server {vs.name()}: one packet scheduling requires UDP - resetting")
            vs.ops = False
        if not vs.persistence_timeout and vsg is None and not vs.fwmark and not vs.port:
            r.warn(f"Virtual server {vs.name()}: zero port only valid for persistent services - "
                   "setting")
            vs.persistence_timeout = 360
    if not vs.persistence_timeout and vsg is not None:
        for e in ranges:
            if not e.port:
                r.warn(f"Virtual server {vs.name()}: zero port only valid for persistent "
                       "services - setting")
                vs.persistence_timeout = 360
                break
    if vs.protocol and ((vsg is not None and not ranges and marks) or
                        (vsg is None and vs.fwmark)):
        r.warn(f"Warning: Virtual server {vs.name()}: protocol specified for fwmark - protocol "
               "will be ignored")
        vs.protocol = None
    if not vs.sched:
        r.warn(f"Virtual server {vs.name()}: no scheduler set, setting default 'wlc'")
        vs.sched = "wlc"

    def default_method() -> None:
        if vs.method is None:
            r.warn(f"Virtual server {vs.name()}: no forwarding method set, setting default NAT")
            vs.method = "NAT"

    weight_sum = 0
    for rs in list(vs.rss):
        before = vs.rss[:vs.rss.index(rs)]
        if any((o.address, o.port) == (rs.address, rs.port) for o in before):
            r.warn(f"VS {vs.name()}: real server {vs.rs_name(rs)} is duplicated - removing second "
                   "rs")
            vs.rss.remove(rs)
            continue
        if rs.method is None:
            default_method()
            rs.method, rs.tunnel = vs.method, vs.tunnel
        rs.alpha = vs.alpha if rs.alpha is None else rs.alpha
        rs.inhibit = vs.inhibit if rs.inhibit is None else rs.inhibit
        rs.retry = vs.retry if rs.retry is None else rs.retry
        if rs.connect_timeout is None:
            rs.connect_timeout = vs.connect_timeout
        rs.delay_loop = vs.delay_loop if rs.delay_loop is None else rs.delay_loop
        rs.warmup = vs.warmup if rs.warmup is None else rs.warmup
        rs.dbr = vs.dbr if rs.dbr is None else rs.dbr
        rs.weight = vs.weight if rs.weight is None else rs.weight
        weight_sum += rs.weight
        sorry = vs.sorry
        if (sorry is not None and (sorry.address, sorry.port) == (rs.address, rs.port) and
                bool(sorry.inhibit) != rs.inhibit):
            r.warn(f"Virtual server {vs.name()}: real server {vs.rs_name(rs)} matches sorry "
                   f"server, but inhibit setting differs, "
                   f"{'sett' if rs.inhibit else 'clear'}ing on sorry server")
            sorry.inhibit = rs.inhibit
    if vs.sorry is not None and vs.sorry.method is None:
        default_method()
        vs.sorry.method, vs.sorry.tunnel = vs.method, vs.tunnel
    if vs.quorum > weight_sum:
        r.warn(f"Warning - quorum {vs.quorum} for {vs.name()} exceeds total weight of real "
               f"servers {weight_sum}, reducing quorum to {weight_sum}")
        vs.quorum = weight_sum
    if vs.hysteresis >= vs.quorum:
        new = (vs.quorum - 1) % 2 ** 32
        r.warn(f"Virtual server {vs.name()}: hysteresis {vs.hysteresis} >= quorum {vs.quorum}; "
               f"setting hysteresis to {new}")
        vs.hysteresis = new
    _ports(r, vs, marks, ranges, vsg is not None)
    for rs in vs.rss:
        for check in rs.checkers:
            if check.removed:
                continue
            if check.alpha is None:
                check.alpha = rs.alpha
            if check.retry is None:
                check.retry = rs.retry if rs.retry is not None else check.default_retry
            if check.connect_timeout is None:
                check.connect_timeout = rs.connect_timeout
            if check.delay_loop is None:
                check.delay_loop = rs.delay_loop
            if check.warmup is None:
                check.warmup = rs.warmup if rs.warmup is not None else check.delay_loop
            if check.dbr is None:
                check.dbr = rs.dbr if rs.dbr is not None else (check.default_dbr or
                                                               check.delay_loop)


def _ports(r: Reader, vs: PVs, marks: list, ranges: list, grouped: bool) -> None:
    """Unless NAT, a real (or sorry) server's port must be the virtual server's (or none for
    a fwmark service): keepalived says so and, for a plain virtual server, corrects it."""
    if grouped:
        if marks:
            for rs in vs.rss:
                if rs.method != "NAT" and rs.port:
                    r.warn(f"WARNING - fwmark virtual server {vs.name()}, real server "
                           f"{vs.rs_name(rs)} has port specified - port will be ignored")
            if vs.sorry and vs.sorry.method != "NAT" and vs.sorry.port:
                r.warn(f"WARNING - fwmark virtual server {vs.name()}, sorry server has port "
                       "specified - port will be ignored")
        for e in ranges:
            shown = (f"{e.start},{e.port}" if e.start == e.end
                     else f"{e.start}-{e.end},{e.port}")
            for rs in vs.rss:
                if rs.method != "NAT" and rs.port and e.port != rs.port:
                    r.warn(f"virtual server {vs.name()}:[{shown}] and real server "
                           f"{vs.rs_name(rs)} ports don't match")
            if (vs.sorry and vs.sorry.method != "NAT" and vs.sorry.port and
                    e.port != vs.sorry.port):
                r.warn(f"WARNING - virtual server {vs.name()}, sorry server has port specified "
                       "- port will be ignored")
        return
    for rs in vs.rss:
        if rs.method == "NAT":
            if not vs.fwmark and not rs.port:
                rs.port = vs.port
            continue
        if vs.fwmark:
            if rs.port:
                r.warn(f"WARNING - fwmark virtual server {vs.name()}, real server "
                       f"{vs.rs_name(rs)} has port specified - clearing")
                rs.port = 0
        elif not rs.port:
            rs.port = vs.port
        elif rs.port != vs.port:
            r.warn(f"WARNING - virtual server {vs.name()} and real server {vs.rs_name(rs)} ports "
                   "don't match - resetting")
            rs.port = vs.port
    s = vs.sorry
    if s is not None and s.method != "NAT":
        if vs.fwmark:
            if s.port:
                r.warn(f"WARNING - virtual server {vs.name()}, sorry server has port specified - "
                       "clearing")
                s.port = 0
        elif not s.port:
            s.port = vs.port
        elif s.port != vs.port:
            r.warn(f"WARNING - virtual server {vs.name()} and sorry server ports don't match - "
                   "resetting")
            s.port = vs.port


# -- freezing --------------------------------------------------------------------------------


def _freeze(r: Reader, col: Collector) -> LvsConfig:
    vss = tuple(_freeze_vs(vs) for vs in col.vss)
    groups: dict[str, VirtualServerGroup] = {}
    for g in col.groups:
        entries = tuple(VsgEntry(e.start, e.end, e.port, e.fwmark, e.fwmark_family, e.pos)
                        for e in g.entries)
        groups.setdefault(g.name, VirtualServerGroup(g.name, entries, g.pos))
    ssl = None
    if col.ssl is not None:
        s = col.ssl
        ssl = SslContext(s.password, s.ca, s.certificate, s.key)
    return LvsConfig(vss, MappingProxyType(groups), ssl, tuple(r.warnings))


def _freeze_vs(vs: PVs) -> VirtualServer:
    sorry = None
    if vs.sorry is not None:
        s = vs.sorry
        sorry = SorryServer(s.address, s.port, vs.protocol, bool(s.inhibit), s.method or "NAT",
                            s.tunnel, s.pos)
    rss = tuple(_freeze_rs(vs, rs) for rs in vs.rss)
    return VirtualServer(
        address=vs.address, port=vs.port, fwmark=vs.fwmark, group=vs.group,
        group_index=vs.group_index, protocol=vs.protocol, family=vs.family or 4,
        delay_loop=vs.delay_loop, lvs_sched=vs.sched, lvs_method=vs.method or "NAT",
        tunnel=vs.tunnel, persistence_timeout=vs.persistence_timeout,
        persistence_granularity=vs.granularity, persistence_engine=vs.engine, ops=vs.ops,
        sched_flags=tuple(vs.flags), virtualhost=vs.virtualhost, quorum=vs.quorum,
        hysteresis=vs.hysteresis, quorum_up=vs.quorum_up, quorum_down=vs.quorum_down,
        alpha=vs.alpha, omega=vs.omega, inhibit_on_failure=vs.inhibit, ha_suspend=vs.ha_suspend,
        sorry_server=sorry, real_servers=rss, pos=vs.pos)


def _freeze_rs(vs: PVs, rs: PServer) -> RealServer:
    checkers = []
    for c in rs.checkers:
        if c.removed:
            continue
        assert c.delay_loop is not None and c.retry is not None and c.dbr is not None
        assert c.warmup is not None and c.connect_timeout is not None
        urls = tuple(Url(u.path or "/", u.digest, frozenset(u.status), u.virtualhost, u.regex,
                         u.pos) for u in c.urls)
        checkers.append(Checker(
            kind=c.kind, delay_loop=c.delay_loop, retry=c.retry, delay_before_retry=c.dbr,
            warmup=c.warmup, alpha=bool(c.alpha), log_all_failures=c.log_all,
            connect_ip=c.connect_ip if c.has_co else None,
            connect_port=c.connect_port if c.has_co else 0,
            bindto=c.bindto, bind_port=c.bind_port, bind_if=c.bind_if, fwmark=c.fwmark,
            connect_timeout=c.connect_timeout, urls=urls, virtualhost=c.virtualhost,
            http_protocol=c.http_protocol, enable_sni=c.enable_sni,
            fast_recovery=c.fast_recovery,
            default_host=c.virtualhost or rs.virtualhost or vs.virtualhost,
            default_sni=c.virtualhost or vs.virtualhost,
            misc_path=c.misc_path,
            misc_timeout=(c.misc_timeout or vs.delay_loop) if c.kind == MISC_CHECK else 0.0,
            misc_dynamic=c.misc_dynamic, user=c.user, group=c.group, pos=c.pos))
    return RealServer(
        address=rs.address, port=rs.port, protocol=vs.protocol,
        weight=rs.weight if rs.weight is not None else 1, lvs_method=rs.method or "NAT",
        tunnel=rs.tunnel, u_threshold=rs.u_threshold, l_threshold=rs.l_threshold,
        inhibit_on_failure=bool(rs.inhibit), alpha=bool(rs.alpha), notify_up=rs.notify_up,
        notify_down=rs.notify_down, virtualhost=rs.virtualhost, checkers=tuple(checkers),
        pos=rs.pos)
