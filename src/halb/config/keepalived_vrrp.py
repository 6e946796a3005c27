"""keepalived.conf's vrrp_script and vrrp_instance blocks (PURE).

The handlers register in config/keepalived.py's keyword tables and collect what each block says,
with keepalived's parse-time checks and messages (a vrrp_script must be defined before the
instance that tracks it, as in keepalived 2.2.7). config/keepalived_complete.py then resolves
the collected blocks into the model.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field
from typing import Any

from halb.config.errors import Pos
from halb.config.keepalived import Builder, Frame, Stmt, accept, keyword
from halb.config.keepalived_model import (
    Script,
    TrackInterface,
    TrackScript,
    UnicastPeer,
    VirtualIp,
)

_SCOPES = ("site", "link", "host", "nowhere", "global")
_NOTIFIES = ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify")


def script(args: list[str], pos: Pos) -> Script:
    """`"cmd arg 'a b'" [user [group]]`: keepalived splits the command like a shell word list."""
    try:
        argv = tuple(shlex.split(args[0]))
    except ValueError:
        argv = tuple(args[0].split())
    user = args[1] if len(args) > 1 else None
    group = args[2].lstrip(":") if len(args) > 2 else None
    return Script(argv, user, group, pos)


# -- vrrp_script -----------------------------------------------------------------------------


@dataclass(eq=False)
class _Script:
    name: str
    pos: Pos
    script: Script | None = None
    interval: float = 1.0
    timeout: float | None = None
    weight: int = 0
    reverse: bool = False
    rise: int = 1
    fall: int = 1
    user: tuple[str | None, str | None] = (None, None)
    init_fail: bool = False


@keyword("top", "vrrp_script", block=True, min_args=1)
def _vrrp_script(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    obj = _Script(st.args[0], st.pos)

    def close(b: Builder, frame: Frame, pos: Pos | None) -> None:
        if obj.script is None:
            b.warn(f"No script set for vrrp_script {obj.name} - removing", pos)
        else:
            b.scripts[obj.name] = obj

    return Frame("vrrp_script", obj, st.pos, on_close=close)


@keyword("vrrp_script", "script")
def _script(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    if st.args:
        frame.obj.script = script([" ".join(st.args)] if len(st.args) > 1 and not
                                  st.words[1].quoted else st.args[:1], st.pos)
    return None


@keyword("vrrp_script", "interval", min_args=1)
def _script_interval(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    name = frame.obj.name
    v = b.integer(st, st.args[0], 0, 2 ** 32 - 1)
    if v is None or v > 4294:
        b.warn(f"({name}): vrrp script interval '{st.args[0]}' must be between 1 and 4294 - "
               "ignoring", st.pos)
    elif v == 0:
        b.warn(f"({name}): vrrp script interval must be greater than 0, setting to 1", st.pos)
        frame.obj.interval = 1.0
    else:
        frame.obj.interval = float(v)
    return None


@keyword("vrrp_script", "timeout", min_args=1)
def _script_timeout(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    v = b.integer(st, st.args[0], 0, 2 ** 32 - 1)
    if v is None or v > 4294:
        b.warn(f"({frame.obj.name}): vrrp script timeout '{st.args[0]}' invalid - ignoring",
               st.pos)
    elif v == 0:
        b.warn(f"({frame.obj.name}): vrrp script timeout must be greater than 0, setting to 1",
               st.pos)
        frame.obj.timeout = 1.0
    else:
        frame.obj.timeout = float(v)
    return None


@keyword("vrrp_script", "weight", min_args=1)
def _script_weight(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    v = b.integer(st, st.args[0], -253, 253, signed=True)
    if v is None:
        b.warn(f"vrrp_script {frame.obj.name} weight {st.args[0]} must be in [-253, 253]",
               st.pos)
        return None
    frame.obj.weight = v
    frame.obj.reverse = len(st.args) > 1 and st.args[1] == "reverse"
    return None


@keyword("vrrp_script", "rise", "fall", min_args=1)
def _script_rise_fall(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    v = b.integer(st, st.args[0], 1, 2 ** 31 - 1)
    if v is None:
        b.warn(f"({frame.obj.name}): vrrp script {st.name} value '{st.args[0]}' invalid, "
               "defaulting to 1", st.pos)
        v = 1
    setattr(frame.obj, st.name, v)
    return None


@keyword("vrrp_script", "user", min_args=1)
def _script_user(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    frame.obj.user = (st.args[0], st.args[1].lstrip(":") if len(st.args) > 1 else None)
    return None


@keyword("vrrp_script", "init_fail")
def _script_init_fail(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    frame.obj.init_fail = True
    return None


# -- vrrp_instance ---------------------------------------------------------------------------


@dataclass(eq=False)
class _Instance:
    name: str
    pos: Pos
    state: str | None = None
    interface: str | None = None
    vrid: int | None = None
    priority: int | None = None
    advert_int: float | None = None
    version: int | None = None
    family: int | None = None
    auth_type: str | None = None
    auth_pass: str | None = None
    vips: list[VirtualIp] = field(default_factory=list)
    evips: list[VirtualIp] = field(default_factory=list)
    unicast_src: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    unicast_keyword: bool = False  # unicast_src_ip (not mcast_src_ip) was given
    peers: list[UnicastPeer] = field(default_factory=list)
    unicast_ttl: int | None = None
    mcast_dst: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    nopreempt: bool = False
    preempt_delay: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)  # optional overrides of globals
    track_scripts: list[TrackScript] = field(default_factory=list)
    track_ifs: list[TrackInterface] = field(default_factory=list)
    notify: dict[str, Script] = field(default_factory=dict)
    sync_group: str | None = None


@keyword("top", "vrrp_instance", block=True, named=True)
def _vrrp_instance(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    if not st.args:
        b.warn("vrrp_instance must have a name", st.pos)
        return None
    if any(i.name == st.args[0] for i in b.instances):
        b.warn(f"vrrp instance {st.args[0]} already defined", st.pos)
        return None
    obj = _Instance(st.args[0], st.pos)
    b.instances.append(obj)

    def close(b: Builder, frame: Frame, pos: Pos | None) -> None:
        obj.settings["other"] = frame.other
        if "unicast_ttl" in obj.settings and not obj.peers:
            b.warn(f"({obj.name}): Cannot use unicast_ttl without unicast peers - resetting",
                   pos)
            del obj.settings["unicast_ttl"]

    return Frame("vrrp_instance", obj, st.pos, on_close=close)


def _i(frame: Frame) -> _Instance:
    assert isinstance(frame.obj, _Instance)
    return frame.obj


@keyword("vrrp_instance", "state", min_args=1)
def _state(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    value = st.args[0]
    if value not in ("MASTER", "BACKUP"):
        b.warn(f"({_i(frame).name}) unknown state '{value}', defaulting to BACKUP", st.pos)
        value = "BACKUP"
    _i(frame).state = value
    return None


@keyword("vrrp_instance", "interface", min_args=1)
def _interface(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    _i(frame).interface = st.args[0]
    return None


@keyword("vrrp_instance", "virtual_router_id", min_args=1)
def _vrid(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    v = b.integer(st, st.args[0], 1, 255)
    if v is None:
        b.warn(f"({_i(frame).name}): VRID '{st.args[0]}' not valid - must be between 1 & 255",
               st.pos)
    else:
        _i(frame).vrid = v
    return None


@keyword("vrrp_instance", "priority", min_args=1)
def _priority(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    v = b.integer(st, st.args[0], 1, 255)
    if v is None:
        b.warn(f"({_i(frame).name}) Priority not valid! must be between 1 & 255. Using default "
               "100", st.pos)
        v = 100
    _i(frame).priority = v
    return None


@keyword("vrrp_instance", "advert_int", min_args=1)
def _advert_int(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    v = b.decimal(st, st.args[0], 0.01, 255)
    if v is None:
        b.warn(f"({_i(frame).name}) Advert interval ({st.args[0]}) not valid! Must be > 0 - "
               "ignoring", st.pos)
    else:
        _i(frame).advert_int = v
    return None


@keyword("vrrp_instance", "version", min_args=1)
def _version(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    v = b.integer(st, st.args[0], 2, 3, signed=True)
    if v is None:
        b.warn(f"({_i(frame).name}): Version must be either 2 or 3", st.pos)
    else:
        _i(frame).version = v
    return None


@keyword("vrrp_instance", "native_ipv6")
def _native_ipv6(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    _i(frame).family = 6
    return None


@keyword("vrrp_instance", "nopreempt", "preempt")
def _nopreempt(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    _i(frame).nopreempt = st.name == "nopreempt"
    return None


@keyword("vrrp_instance", "preempt_delay", min_args=1)
def _preempt_delay(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    v = b.decimal(st, st.args[0], 0, 1000)
    if v is not None:
        _i(frame).preempt_delay = v
    elif st.args[0].lstrip("+-")[:1].isdigit():  # keepalived says no more for "x"
        b.warn(f"({_i(frame).name}) Preempt_delay not valid! must be between 0-1000", st.pos)
    return None


def _setting(name: str, lo: float, hi: float, message: str, integer: bool,
             zero: str | None = None) -> None:
    def handler(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
        text = st.args[0]
        v = b.integer(st, text, int(lo), int(hi)) if integer else b.decimal(st, text, lo, hi)
        if v is None:
            b.warn(message.format(i=_i(frame).name, name=name, value=text), st.pos)
            return None
        if v == 0 and zero is not None:
            b.warn(zero.format(i=_i(frame).name, name=name), st.pos)
            v = 1
        _i(frame).settings[name] = v
        return None

    keyword("vrrp_instance", name, min_args=1)(handler)


_INVALID = "({i}): {name} '{value}' invalid - ignoring"
_UINT = 2 ** 32 - 1
_NOT_ZERO = "({i}): {name} must be greater than 0, setting to 1"
_setting("garp_master_delay", 0, _UINT, _INVALID, True)
_setting("garp_master_repeat", 0, _UINT, _INVALID, True, _NOT_ZERO)
_setting("garp_master_refresh", 0, _UINT, "({i}): Invalid {name} '{value}' - ignoring", True)
_setting("garp_master_refresh_repeat", 0, _UINT, _INVALID, True, _NOT_ZERO)
_setting("garp_lower_prio_delay", 0, _UINT, _INVALID, True)
_setting("garp_lower_prio_repeat", 0, _UINT, "({i}): Invalid {name} '{value}'", True)
_setting("down_timer_adverts", 1, 100, "({i}): Invalid {name} [1:100] '{value}'", True)
_setting("unicast_ttl", 0, 255, "({i}): TTL '{value}' not valid - must be between 0 & 255", True)


def _flag_setting(names: str, takes_bool: bool, value: bool = True) -> None:
    """Instance switches: some take an optional <BOOL>, the others ignore what follows them."""

    def handler(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
        inst = _i(frame)
        v = b.flag(st, f"({inst.name}) invalid {{name}} {{value}} specified") if takes_bool \
            else value
        if v is not None:
            inst.settings["accept" if st.name == "no_accept" else st.name] = v
        inst.unicast_keyword |= st.name == "check_unicast_src"  # keepalived counts it so
        return None

    keyword("vrrp_instance", *names.split())(handler)


_flag_setting("strict_mode skip_check_adv_addr lower_prio_no_advert higher_prio_send_advert "
              "v3_checksum_as_v2", True)
_flag_setting("dont_track_primary accept check_unicast_src", False)
_flag_setting("no_accept", False, value=False)


@keyword("vrrp_instance", "unicast_src_ip", "mcast_src_ip", min_args=1)
def _src_ip(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    inst = _i(frame)
    inst.unicast_keyword |= st.name == "unicast_src_ip"
    addr = b.address(st.args[0])
    if addr is None:
        b.warn(f"Configuration error: VRRP instance[{inst.name}] malformed src address"
               f"[{st.args[0]}]. Skipping...", st.pos)
    elif inst.family is not None and addr.version != inst.family:
        b.warn(f"Configuration error: VRRP instance[{inst.name}] and src address"
               f"[{st.args[0]}] MUST be of the same family !!! Skipping...", st.pos)
    else:
        inst.unicast_src = addr
    return None


@keyword("vrrp_instance", "mcast_dst_ip", min_args=1)
def _mcast_dst(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    addr = b.address(st.args[0])
    if addr is None:
        b.warn(f"({_i(frame).name}) malformed mcast dest address {st.args[0]}. Skipping...",
               st.pos)
    elif not addr.is_multicast:
        b.warn(f"({_i(frame).name}) mcast_dst_ip {st.args[0]} not multicast. Skipping...",
               st.pos)
    else:
        _i(frame).mcast_dst = addr
    return None


def _notify(name: str, ctx: str) -> None:
    def handler(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
        owner = frame.obj
        if name in owner.notify:
            b.warn(f"({owner.name}) {name} script already specified - ignoring {st.args[0]}",
                   st.pos)
        else:
            owner.notify[name] = script(st.args, st.pos)
        return None

    keyword(ctx, name, min_args=1)(handler)


for _n in _NOTIFIES:
    _notify(_n, "vrrp_instance")
    _notify(_n, "vrrp_sync_group")


@keyword("vrrp_instance", "authentication", block=True)
def _authentication(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    return Frame("authentication", frame.obj, st.pos)


@keyword("authentication", "auth_type", min_args=1)
def _auth_type(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    if st.args[0] in ("PASS", "AH"):
        _i(frame).auth_type = st.args[0]
    else:
        b.warn(f"({_i(frame).name}) unknown authentication type '{st.args[0]}'", st.pos)
    return None


@keyword("authentication", "auth_pass", min_args=1)
def _auth_pass(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    value = st.args[0]
    if len(value) > 8:
        b.warn("Truncating auth_pass to 8 characters", st.pos)
    _i(frame).auth_pass = value[:8]
    return None


# -- virtual_ipaddress -----------------------------------------------------------------------


def _vip(b: Builder, inst: _Instance, st: Stmt, excluded: bool) -> VirtualIp | None:
    words = [w.value for w in st.words]
    text, _, plen = words[0].partition("/")
    addr = b.address(text)
    if addr is None:
        b.warn(f"VRRP parsed invalid IP {words[0]}. skipping IP...", st.pos)
        return None
    bits = addr.max_prefixlen
    if plen:
        v = b.integer(st, plen, 0, bits)
        if v is None:
            b.warn(f"Invalid address prefix len {plen} for address {words[0]} - using {bits}",
                   st.pos)
        else:
            bits = v
    opts: dict[str, Any] = {}
    other: list[str] = []
    i = 1
    while i < len(words):
        word = words[i]
        if word in ("dev", "scope", "brd", "broadcast", "label", "peer", "preferred_lft",
                    "valid_lft", "track"):
            if i + 1 >= len(words):
                b.warn(f"No {word} parameter specified for {words[0]}", st.pos)
                break
            value = words[i + 1]
            i += 2
            if word == "scope" and value not in _SCOPES and not (
                    value.isdigit() and int(value) < 256):
                b.warn(f"Invalid scope '{value}' specified for {text} - ignoring", st.pos)
            elif word in ("scope", "label") and addr.version == 6:
                b.warn(f"Cannot specify {word} for IPv6 addresses ({text}) - ignoring {word}",
                       st.pos)
            elif word == "label" and len(value) > 15:
                b.warn(f"Address label {value} is longer than maximum length 15 - removing "
                       "address", st.pos)
                return None
            elif word == "peer":
                opts["peer"] = ipaddress.ip_interface(value) if b.address(
                    value.partition("/")[0]) else None
            elif word in ("dev", "scope", "label"):
                opts[word] = value
            elif word in ("brd", "broadcast"):
                opts["brd"] = value
            else:
                other += [word, value]
            continue
        if word == "no_track":
            opts["no_track"] = True
        elif word in ("home", "-nodad", "nodad", "noprefixroute", "autojoin", "use_vmac"):
            other.append(word)
        else:
            b.warn(f"Unknown configuration entry '{word}' for ip address - ignoring", st.pos)
        i += 1
    if not excluded:
        if inst.family is None:
            inst.family = addr.version
        elif addr.version != inst.family:
            b.warn(f"({inst.name}): address family must match VRRP instance [{words[0]}] - "
                   "ignoring", st.pos)
            return None
    return VirtualIp(ipaddress.ip_interface(f"{text}/{bits}"), other=tuple(other),
                     pos=st.pos, **opts)


def _vip_block(excluded: bool) -> None:
    def handler(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
        inst = _i(frame)

        def line(b: Builder, f: Frame, item: Stmt) -> Frame | None:
            vip = _vip(b, inst, item, excluded)
            if vip is not None:
                (inst.evips if excluded else inst.vips).append(vip)
            return None

        return Frame(st.name, inst, st.pos, lines=line)

    name = "virtual_ipaddress_excluded" if excluded else "virtual_ipaddress"
    keyword("vrrp_instance", name, block=True)(handler)


_vip_block(False)
_vip_block(True)


@keyword("vrrp_instance", "unicast_peer", block=True)
def _unicast_peer(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    inst = _i(frame)

    def line(b: Builder, f: Frame, item: Stmt) -> Frame | None:
        addr = b.address(item.name)
        if addr is None:
            b.warn(f"Configuration error: VRRP instance[{inst.name}] malformed unicast peer "
                   f"address[{item.name}]. Skipping...", item.pos)
            return None
        ttl = {"min_ttl": 0, "max_ttl": 255}
        args = item.args
        for key, value in zip(args[::2], args[1::2], strict=False):
            if key in ttl:
                v = b.integer(item, value, 0, 255)
                ttl[key] = ttl[key] if v is None else v
            else:
                b.warn(f"({inst.name}) unknown unicast_peer option {key}", item.pos)
        if ttl["min_ttl"] > ttl["max_ttl"]:
            b.warn(f"({inst.name}) min_ttl {ttl['min_ttl']} > max_ttl {ttl['max_ttl']} - all "
                   "packets will be discarded", item.pos)
        inst.peers.append(UnicastPeer(addr, ttl["min_ttl"], ttl["max_ttl"]))
        return None

    return Frame("unicast_peer", inst, st.pos, lines=line)


def _track_weight(b: Builder, owner: Any, st: Stmt, script: bool) -> tuple[int, bool] | None:
    """`NAME [weight W [reverse|noreverse]]`: (weight, reverse), or None for no override. The
    messages differ between track_script and track_interface in keepalived, typo included."""
    args, name, who = st.args, st.name, f"({owner.name})"
    if not args:
        return None
    if args[0] != "weight":
        b.warn(f"{who} unknown track script option {args[0]} - ignoring" if script else
               f"{who} unknown track_interface {name} option {args[0]} - ignoring", st.pos)
        return None
    if len(args) < 2:
        b.warn(f"{who} weight without value specified for "
               f"{'track script' if script else 'track_interface'} {name} - ignoring", st.pos)
        return None
    w = b.integer(st, args[1], -254, 254, signed=True)
    if w is None:
        b.warn(f"{who} track script {name}: weight must be between [-253..253] inclusive, "
               "ignoring..." if script else
               f"{who} weight {args[1]} for {name} must be between [-253..253] inclusive. "
               "Ignoring...", st.pos)
        return None
    if abs(w) == 254:
        b.warn(f"{who} weight for {name} cannot be +/-254. Setting to +/-253", st.pos)
        w = 253 if w > 0 else -253
    if len(args) > 2 and args[2] not in ("reverse", "noreverse"):
        b.warn(f"{who} unknown track_script {name} weight option {args[2]} - ignoring"
               if script else
               f"{who} unknown track_interace {name} weight option {args[2]} - ignoring",
               st.pos)
    return w, len(args) > 2 and args[2] == "reverse"


def _track_block(ctx: str) -> None:
    @keyword(ctx, "track_script", block=True)
    def scripts(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
        owner = frame.obj

        def line(b: Builder, f: Frame, item: Stmt) -> Frame | None:
            scr = b.scripts.get(item.name)
            if scr is None:
                b.warn(f"({owner.name}) track script {item.name} not found, ignoring...",
                       item.pos)
                return None
            if any(t.name == item.name for t in owner.track_scripts):
                b.warn(f"({owner.name}) duplicate track_script {item.name} - ignoring",
                       item.pos)
                return None
            w = _track_weight(b, owner, item, True) or (scr.weight, scr.reverse)
            owner.track_scripts.append(TrackScript(item.name, w[0], w[1], item.pos))
            return None

        return Frame("track_script", owner, st.pos, lines=line)

    @keyword(ctx, "track_interface", block=True)
    def interfaces(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
        owner = frame.obj

        def line(b: Builder, f: Frame, item: Stmt) -> Frame | None:
            if any(t.name == item.name for t in owner.track_ifs):
                b.warn(f"({owner.name}) duplicate track_interface {item.name} - ignoring",
                       item.pos)
                return None
            w = _track_weight(b, owner, item, False) or (0, False)
            owner.track_ifs.append(TrackInterface(item.name, w[0], w[1], item.pos))
            return None

        return Frame("track_interface", owner, st.pos, lines=line)


_track_block("vrrp_instance")
_track_block("vrrp_sync_group")


def _lines_block(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    """A block keepalived knows and halb does not use: its lines kept in `other`."""
    lines: list[str] = []
    frame.other[st.name] = ()

    def line(b: Builder, f: Frame, item: Stmt) -> Frame | None:
        lines.append(" ".join(w.value for w in item.words))
        frame.other[st.name] = tuple(lines)
        return None

    return Frame(st.name, frame.obj, st.pos, lines=line)


for _ctx, _names in (("vrrp_instance", "track_bfd track_file track_process virtual_routes "
                                       "virtual_rules"),
                     ("vrrp_sync_group", "track_bfd track_file track_process")):
    for _name in _names.split():
        keyword(_ctx, _name, block=True)(_lines_block)

accept("vrrp_instance", """debug garp_extra_if kernel_rx_buf_size linkbeat_use_polling
    lvs_sync_daemon_interface notify_deleted notify_master_rx_lower_pri notify_priority_changes
    old_unicast_checksum promote_secondaries smtp_alert track_src_ip unicast_fault_no_peer
    use_ipvlan use_vmac use_vmac_addr vmac_garp_intvl vmac_xmit_base vrf""")
