"""The virtual_server and real_server keywords of keepalived.conf (PURE).

keepalived 2.2.7's check_parser.c handlers, with their ranges and messages: scheduler and
forwarding method (with TUN's type/port/csum options), persistence, protocol, quorum and
hysteresis, sorry_server, the checker timing defaults a virtual or real server may set, weight,
thresholds, inhibit_on_failure, alpha/omega and the notify/quorum scripts. They register in
config/keepalived_lvs_parse.py's keyword tables; the checker blocks are in
config/keepalived_lvs_check.py.
"""

from __future__ import annotations

from typing import Any

from halb.config.errors import Pos
from halb.config.keepalived_lvs_model import Tunnel
from halb.config.keepalived_lvs_parse import (
    INT32_MAX,
    KEYWORDS,
    LVS_MAX_TIMEOUT,
    SCHEDULERS,
    SKIP,
    UINT,
    Frame,
    Handler,
    Keyword,
    PServer,
    PVs,
    Walk,
    ignore,
    inet_aton,
    keyword,
    script_of,
)
from halb.config.keepalived_model import RawStatement

# -- virtual_server --------------------------------------------------------------------------


def vs_of(frame: Frame) -> PVs:
    assert isinstance(frame.obj, PVs)
    return frame.obj


@keyword("vs", "ip_family", min_args=1)
def _ip_family(w: Walk, f: Frame, st: RawStatement) -> None:
    vs = vs_of(f)
    fam = {"inet": 4, "inet6": 6}.get(st.args[0])
    if fam is None:
        w.warn(f"unknown address family {st.args[0]}", st.pos)
    elif vs.family is not None and fam != vs.family:
        w.warn(f"Virtual server specified family {st.args[0]} conflicts with server family",
               st.pos)
    else:
        vs.family = fam


@keyword("vs", "retry", min_args=1)
def _vs_retry(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.unsigned(st.args[0], 1, UINT, st.pos)
    if v is None:
        w.warn(f"retry value invalid - {st.args[0]}", st.pos)
    else:
        vs_of(f).retry = v


def _vs_timer(attr: str, lo: int, hi: int, message: str) -> Handler:
    def handler(w: Walk, f: Frame, st: RawStatement) -> None:
        v = w.r.timer(st.args[0], lo, hi, st.pos)
        if v is None:
            w.warn(message.format(st.args[0]), st.pos)
        else:
            setattr(f.obj, attr, v)

    return handler


KEYWORDS["vs"].update({
    "delay_before_retry": Keyword(_vs_timer(
        "dbr", 0, 0, "virtual server delay before retry '{}' invalid - ignoring"), None, 1),
    "warmup": Keyword(_vs_timer(
        "warmup", 0, 0, "virtual server warmup '{}' invalid - ignoring"), None, 1),
    "connect_timeout": Keyword(_vs_timer(
        "connect_timeout", 1, UINT, "virtual server connect_timeout {} invalid - ignoring"),
        None, 1),
    "delay_loop": Keyword(_vs_timer(
        "delay_loop", 1, 0, "virtual server delay loop '{}' invalid - ignoring"), None, 1),
})


@keyword("vs", "inhibit_on_failure")
def _vs_inhibit(w: Walk, f: Frame, st: RawStatement) -> None:
    vs_of(f).inhibit = True


@keyword("vs", "lb_algo", "lvs_sched", min_args=1)
def _lb_algo(w: Walk, f: Frame, st: RawStatement) -> None:
    if st.args[0] not in SCHEDULERS:
        w.warn(f"Invalid lvs_scheduler '{st.args[0]}' - ignoring", st.pos)
    else:
        vs_of(f).sched = st.args[0]


@keyword("vs", "hashed", "ops", "flag-1", "flag-2", "flag-3", "sh-port", "sh-fallback",
         "mh-port", "mh-fallback")
def _lb_flags(w: Walk, f: Frame, st: RawStatement) -> None:
    vs, name = vs_of(f), st.name
    if name == "ops":
        vs.ops = True
    elif name.startswith("flag-") or (vs.sched in ("sh", "mh") and
                                      name in (f"{vs.sched}-port", f"{vs.sched}-fallback")):
        vs.flags.append(name)
    elif vs.sched not in ("sh", "mh"):
        w.warn(f"{name} only applies to sh scheduler - ignoring", st.pos)


def forwarding(w: Walk, st: RawStatement, kind: str,
               current: tuple[str | None, Tunnel | None]) -> tuple[str | None, Tunnel | None]:
    """svr_forwarding_handler: NAT | DR | TUN [type ipip|gue|gre] [port N] [csum...]."""
    method = st.args[0]
    if method not in ("NAT", "DR", "TUN"):
        w.warn(f"PARSER : unknown [{method}] routing method for {kind} server.", st.pos)
        return current
    tun_type, port, csum = "ipip", 0, "nocsum"
    args = st.args[1:]
    i = 0
    while i < len(args):
        word = args[i]
        if word == "type":
            if i + 1 == len(args):
                w.warn(f"Missing tunnel type for {kind} server.", st.pos)
                return method, current[1]
            if args[i + 1] not in ("ipip", "gue", "gre"):
                w.warn(f"Unknown tunnel type {args[i + 1]} for {kind} server.", st.pos)
                return method, current[1]
            tun_type = args[i + 1]
            i += 1
        elif word == "port":
            if i + 1 == len(args):
                w.warn(f"Missing port for {kind} server gue tunnel.", st.pos)
                return method, current[1]
            p = w.r.unsigned(args[i + 1], 1, 65535, st.pos)
            if p is None:
                w.warn(f"Invalid gue tunnel port {args[i + 1]} for {kind} server.", st.pos)
                return method, current[1]
            port = p
            i += 1
        elif word in ("nocsum", "csum", "remcsum"):
            csum = word
        else:
            w.warn(f"Invalid tunnel option {word} for {kind} server.", st.pos)
            return method, current[1]
        i += 1
    if (tun_type == "gue") != (port != 0):
        w.warn("gue tunnels require port, otherwise cannot have port.", st.pos)
        return method, current[1]
    if tun_type == "ipip" and csum != "nocsum":
        w.warn("ipip tunnels do not support checksum option.", st.pos)
        return method, current[1]
    if tun_type == "gre" and csum == "remcsum":
        w.warn("gre tunnels do not support remote checksum option.", st.pos)
        return method, current[1]
    return method, Tunnel(tun_type, port, csum) if method == "TUN" else None


@keyword("vs", "lb_kind", "lvs_method", min_args=1)
def _vs_method(w: Walk, f: Frame, st: RawStatement) -> None:
    vs = vs_of(f)
    vs.method, vs.tunnel = forwarding(w, st, "virtual", (vs.method, vs.tunnel))


@keyword("vs", "persistence_engine", min_args=1)
def _pe(w: Walk, f: Frame, st: RawStatement) -> None:
    if len(st.args[0]) > 15:
        w.warn(f"persistence_name too long, truncating - {st.args[0]}", st.pos)
    vs_of(f).engine = st.args[0][:15]


@keyword("vs", "persistence_timeout")
def _pto(w: Walk, f: Frame, st: RawStatement) -> None:
    vs = vs_of(f)
    if not st.args:
        vs.persistence_timeout = 360
        return
    v = w.r.unsigned(st.args[0], 1, LVS_MAX_TIMEOUT, st.pos)
    if v is None:
        w.warn("persistence_timeout invalid", st.pos)
    else:
        vs.persistence_timeout = v


@keyword("vs", "persistence_granularity", min_args=1)
def _pgr(w: Walk, f: Frame, st: RawStatement) -> None:
    vs, text = vs_of(f), st.args[0]
    fam = vs.family or (4 if "." in text else 6)
    if fam == 6:
        v = w.r.unsigned(text, 1, 128, st.pos)
        if v is None:
            w.warn(f"Invalid IPv6 persistence_granularity specified - {text}", st.pos)
            return
        vs.granularity = str(v)
    else:
        mask = inet_aton(text)
        if mask is None:
            w.warn(f"Invalid IPv4 persistence_granularity specified - {text}", st.pos)
            return
        vs.granularity = str(mask)
    if vs.family is None:
        vs.family = fam
    if not vs.persistence_timeout:
        vs.persistence_timeout = 360


@keyword("vs", "protocol", min_args=1)
def _protocol(w: Walk, f: Frame, st: RawStatement) -> None:
    proto = st.args[0].upper()
    if proto not in ("TCP", "UDP", "SCTP"):
        w.warn(f"Unknown protocol {st.args[0]} - ignoring", st.pos)
    else:
        vs_of(f).protocol = proto


@keyword("vs", "ha_suspend")
def _ha_suspend(w: Walk, f: Frame, st: RawStatement) -> None:
    vs_of(f).ha_suspend = True


@keyword("vs", "smtp_alert")
def _vs_smtp_alert(w: Walk, f: Frame, st: RawStatement) -> None:
    w.r.flag(list(st.args), "Invalid virtual_server smtp_alert parameter {}", st.pos)


@keyword("vs", "virtualhost")
def _vs_virtualhost(w: Walk, f: Frame, st: RawStatement) -> None:
    if not st.args:
        w.warn("virtual server virtualhost missing", st.pos)
    else:
        vs_of(f).virtualhost = st.args[0]


@keyword("vs", "snmp_name")
def _vs_snmp_name(w: Walk, f: Frame, st: RawStatement) -> None:
    if len(st.args) != 1:
        w.warn("virtual server snmp_name missing or extra parameters", st.pos)


@keyword("vs", "alpha")
def _vs_alpha(w: Walk, f: Frame, st: RawStatement) -> None:
    vs_of(f).alpha = True


@keyword("vs", "omega")
def _omega(w: Walk, f: Frame, st: RawStatement) -> None:
    vs_of(f).omega = True


@keyword("vs", "quorum_up", "quorum_down", min_args=1)
def _quorum_script(w: Walk, f: Frame, st: RawStatement) -> None:
    vs = vs_of(f)
    attr = st.name
    if getattr(vs, attr) is not None:
        w.warn(f"({vs.group or '(null)'}) {attr} script already specified - ignoring "
               f"{st.args[0]}", st.pos)
        return
    setattr(vs, attr, script_of(list(st.args), st.pos))


@keyword("vs", "quorum", min_args=1)
def _quorum(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.unsigned(st.args[0], 1, UINT, st.pos)
    if v is None:
        w.warn(f"Quorum {st.args[0]} must be in [1, {UINT}]. Setting to 1.", st.pos)
        v = 1
    vs_of(f).quorum = v


@keyword("vs", "hysteresis", min_args=1)
def _hysteresis(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.unsigned(st.args[0], 0, UINT, st.pos)
    if v is None:
        w.warn(f"Hysteresis {st.args[0]} must be in [0, {UINT}] - ignoring", st.pos)
    else:
        vs_of(f).hysteresis = v


@keyword("vs", "weight", min_args=1)
def _vs_weight(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.unsigned(st.args[0], 1, INT32_MAX, st.pos)
    if v is None:
        w.warn(f"Virtual server weight {st.args[0]} is outside range 1-{INT32_MAX}", st.pos)
    else:
        vs_of(f).weight = v


@keyword("vs", "sorry_server", min_args=1)
def _sorry_server(w: Walk, f: Frame, st: RawStatement) -> None:
    vs = vs_of(f)
    sa = w.r.sockaddr(st.args[0], st.args[1] if len(st.args) > 1 else None, st.pos)
    if sa is None:
        w.warn(f"Invalid sorry server IP address {st.args[0]} - skipping", st.pos)
        return
    vs.sorry = PServer(sa[0], sa[1], st.pos, method=vs.method, tunnel=vs.tunnel, weight=1)


@keyword("vs", "sorry_server_inhibit")
def _sorry_inhibit(w: Walk, f: Frame, st: RawStatement) -> None:
    vs = vs_of(f)
    if vs.sorry is None:
        w.warn("Ignoring sorry_server inhibit used before or without sorry_server", st.pos)
    else:
        vs.sorry.inhibit = True


@keyword("vs", "sorry_server_lvs_method", min_args=1)
def _sorry_method(w: Walk, f: Frame, st: RawStatement) -> None:
    vs = vs_of(f)
    if vs.sorry is None:
        w.warn("sorry_server forwarding used without sorry_server", st.pos)
    else:
        vs.sorry.method, vs.sorry.tunnel = forwarding(w, st, "sorry",
                                                      (vs.sorry.method, vs.sorry.tunnel))


# -- real_server -----------------------------------------------------------------------------


def rs_of(frame: Frame) -> tuple[PVs, PServer]:
    vs, rs = frame.obj
    return vs, rs


@keyword("vs", "real_server", sub="rs", min_args=1)
def _real_server(w: Walk, f: Frame, st: RawStatement) -> Any:
    vs = vs_of(f)
    port = st.args[1] if len(st.args) > 1 else None
    sa = w.r.sockaddr(st.args[0], port, st.pos)
    if sa is None:
        w.warn(f"Invalid real server ip address/port {st.args[0]}/{port or '(null)'} - skipping",
               st.pos)
        return SKIP
    rs = PServer(sa[0], sa[1], st.pos, method=vs.method, tunnel=vs.tunnel)
    vs.rss.append(rs)
    return Frame("rs", (vs, rs), on_close=_rs_end)


def _rs_end(w: Walk, f: Frame, pos: Pos) -> None:
    vs, rs = rs_of(f)
    if rs.method == "TUN":  # tunnelled: the families may differ (IPVS_DEST_ATTR_ADDR_FAMILY)
        return
    if vs.family is None:
        vs.family = rs.family
    elif vs.family != rs.family:
        w.warn(f"Address family of virtual server and real server {rs.address} don't match - "
               "skipping real server.", pos)
        vs.rss.remove(rs)


@keyword("rs", "weight", min_args=1)
def _rs_weight(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.unsigned(st.args[0], 0, INT32_MAX, st.pos)
    if v is None:
        w.warn(f"Real server weight {st.args[0]} is outside range 0-{INT32_MAX}", st.pos)
    else:
        rs_of(f)[1].weight = v


@keyword("rs", "lvs_method", min_args=1)
def _rs_method(w: Walk, f: Frame, st: RawStatement) -> None:
    rs = rs_of(f)[1]
    rs.method, rs.tunnel = forwarding(w, st, "real", (rs.method, rs.tunnel))


@keyword("rs", "uthreshold", "lthreshold", min_args=1)
def _threshold(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.unsigned(st.args[0], 0, UINT, st.pos)
    if v is None:
        w.warn(f"Invalid real_server {st.name} '{st.args[0]}' - ignoring", st.pos)
    elif st.name == "uthreshold":
        rs_of(f)[1].u_threshold = v
    else:
        rs_of(f)[1].l_threshold = v


@keyword("rs", "inhibit_on_failure")
def _rs_inhibit(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.flag(list(st.args), "Invalid inhibit_on_failure parameter {}", st.pos)
    if v is not None:
        rs_of(f)[1].inhibit = v


@keyword("rs", "alpha")
def _rs_alpha(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.flag(list(st.args), "Invalid alpha parameter {}", st.pos)
    if v is not None:
        rs_of(f)[1].alpha = v


@keyword("rs", "notify_up", "notify_down", min_args=1)
def _rs_notify(w: Walk, f: Frame, st: RawStatement) -> None:
    vs, rs = rs_of(f)
    if getattr(rs, st.name) is not None:
        w.warn(f"({vs.group or '(null)'}) {st.name} script already specified - ignoring "
               f"{st.args[0]}", st.pos)
        return
    setattr(rs, st.name, script_of(list(st.args), st.pos))


@keyword("rs", "retry", min_args=1)
def _rs_retry(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.unsigned(st.args[0], 1, UINT, st.pos)
    if v is None:
        w.warn(f"retry value invalid - {st.args[0]}", st.pos)
    else:
        rs_of(f)[1].retry = v


def _rs_timer(attr: str, lo: int, hi: int, message: str) -> Handler:
    def handler(w: Walk, f: Frame, st: RawStatement) -> None:
        v = w.r.timer(st.args[0], lo, hi, st.pos)
        if v is None:
            w.warn(message.format(st.args[0]), st.pos)
        else:
            setattr(rs_of(f)[1], attr, v)

    return handler


KEYWORDS["rs"].update({
    "delay_before_retry": Keyword(_rs_timer(
        "dbr", 0, 0, "real server delay_before_retry '{}' invalid - ignoring"), None, 1),
    "warmup": Keyword(_rs_timer(
        "warmup", 0, 0, "real server warmup '{}' invalid - ignoring"), None, 1),
    "connect_timeout": Keyword(_rs_timer(
        "connect_timeout", 1, UINT, "real server connect_timeout {} invalid - ignoring"),
        None, 1),
    "delay_loop": Keyword(_rs_timer(
        "delay_loop", 1, 0, "real server delay_loop '{}' invalid - ignoring"), None, 1),
})


@keyword("rs", "smtp_alert")
def _rs_smtp_alert(w: Walk, f: Frame, st: RawStatement) -> None:
    w.r.flag(list(st.args), "Invalid real_server smtp_alert parameter {}", st.pos)


@keyword("rs", "virtualhost")
def _rs_virtualhost(w: Walk, f: Frame, st: RawStatement) -> None:
    if not st.args:
        w.warn("real server virtualhost missing", st.pos)
    else:
        rs_of(f)[1].virtualhost = st.args[0]


@keyword("rs", "snmp_name")
def _rs_snmp_name(w: Walk, f: Frame, st: RawStatement) -> None:
    if len(st.args) != 1:
        w.warn("real server snmp_name missing or extra parameters", st.pos)


ignore("rs", "track_file track_bfd")
