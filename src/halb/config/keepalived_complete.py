"""keepalived.conf's vrrp_sync_group, and resolving the VRRP blocks into the model (PURE).

`complete` applies keepalived's vrrp_complete_instance to each instance, in its order and with its
messages: the version from the VIPs' family and global_defs, the priority and the initial state
derived from each other, strict mode, authentication only for v2, nopreempt / preempt_delay
against the initial state, accept mode, the garp and advert defaults from global_defs,
advert_int clamped and rounded per version; then sync group membership and the duplicate-VRID
check. What stops keepalived (no virtual_router_id, no interface, no VIP for v3, two instances on
one VRID) raises FatalConfigError. Checks that need the running system (does the interface
exist, is it a loopback, does it do multicast, does the script user exist) belong to the I/O
layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType

from halb.config.errors import Pos
from halb.config.keepalived import Builder, Frame, Stmt, accept, keyword
from halb.config.keepalived_model import (
    GlobalDefs,
    Script,
    TrackInterface,
    TrackScript,
    VrrpInstance,
    VrrpScript,
    VrrpSyncGroup,
)
from halb.config.keepalived_vrrp import _NOTIFIES, _Instance

DEFAULT_MTU = 1500


# -- vrrp_sync_group -------------------------------------------------------------------------


@dataclass(eq=False)
class _Group:
    name: str
    pos: Pos
    group: list[tuple[str, Pos]] | None = None
    track_scripts: list[TrackScript] = field(default_factory=list)
    track_ifs: list[TrackInterface] = field(default_factory=list)
    notify: dict[str, Script] = field(default_factory=dict)
    other: dict[str, tuple[str, ...]] = field(default_factory=dict)


@keyword("top", "vrrp_sync_group", block=True, named=True)
def _vrrp_sync_group(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    if not st.args:
        b.warn("vrrp_sync_group must have a name - skipping", st.pos)
        return None
    obj = _Group(st.args[0], st.pos)
    b.groups.append(obj)
    child = Frame("vrrp_sync_group", obj, st.pos)
    child.other = obj.other
    return child


@keyword("vrrp_sync_group", "group", block=True)
def _group(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    obj = frame.obj
    if obj.group is not None:
        b.warn(f"Group list already specified for sync group {obj.name}", st.pos)
        return None
    obj.group = []

    def line(b: Builder, f: Frame, item: Stmt) -> Frame | None:
        obj.group.extend((w.value, item.pos) for w in item.words)
        return None

    def close(b: Builder, f: Frame, pos: Pos | None) -> None:
        if not obj.group:
            b.warn(f"Warning - sync group {obj.name} has empty group block", pos)

    return Frame("group", obj, st.pos, lines=line, on_close=close)


accept("vrrp_sync_group", "global_tracking notify_priority_changes smtp_alert "
                          "sync_group_tracking_weight")


# -- completion (keepalived's vrrp_complete_instance and friends) ----------------------------


def complete(b: Builder, g: GlobalDefs
             ) -> tuple[dict[str, VrrpScript], list[VrrpInstance], list[VrrpSyncGroup]]:
    scripts = {name: VrrpScript(name, s.script, s.interval, s.timeout, s.weight, s.reverse,
                                s.rise, s.fall, s.init_fail, s.pos) for name, s in b.scripts.items()
               if s.script is not None}
    for name, s in b.scripts.items():
        if s.user != (None, None) and s.script is not None:
            scripts[name] = _replace_user(scripts[name], *s.user)
    groups = _complete_groups(b)
    instances = [_complete(b, g, inst) for inst in b.instances]
    seen: dict[tuple[str | None, int, int], str] = {}
    for inst in instances:
        if inst.interface is None:
            continue
        key = (inst.interface, inst.family, inst.virtual_router_id)
        if key in seen:
            raise b.fatal(f"{seen[key]} and {inst.name} both use VRID {inst.virtual_router_id}"
                          f" with IPv{inst.family} on interface {inst.interface}")
        seen[key] = inst.name
    return scripts, instances, groups


def _replace_user(s: VrrpScript, user: str | None, group: str | None) -> VrrpScript:
    cmd = Script(s.script.argv, user, group, s.script.pos)
    return VrrpScript(s.name, cmd, s.interval, s.timeout, s.weight, s.weight_reverse, s.rise,
                      s.fall, s.init_fail, s.pos)


def _complete_groups(b: Builder) -> list[VrrpSyncGroup]:
    names = {i.name: i for i in b.instances}
    out: list[VrrpSyncGroup] = []
    for grp in b.groups:
        members: list[str] = []
        for name, _pos in grp.group or []:
            inst = names.get(name)
            if inst is None:
                b.warn(f"Virtual router {name} specified in sync group {grp.name} doesn't "
                       "exist - ignoring", None)
            elif inst.sync_group is not None:
                b.warn(f"Virtual router {name} cannot exist in more than one sync group; "
                       f"ignoring {grp.name}", None)
            else:
                members.append(name)
        if not grp.group:
            b.warn(f"Sync group {grp.name} has no virtual router(s). removing", None)
            continue
        if not members:
            b.warn(f"Sync group {grp.name}, no matching virtual router found in group "
                   "declaration - removing", None)
            continue
        if len(members) == 1:
            b.warn(f"Sync group {grp.name} has only 1 virtual router(s) - this probably isn't "
                   "what you want", None)
        for name in members:
            names[name].sync_group = grp.name
        out.append(VrrpSyncGroup(grp.name, tuple(members),
                                 *(grp.notify.get(n) for n in _NOTIFIES),
                                 tuple(grp.track_scripts), tuple(grp.track_ifs),
                                 MappingProxyType(dict(grp.other)), grp.pos))
    return out


def _complete(b: Builder, g: GlobalDefs, i: _Instance) -> VrrpInstance:
    s = i.settings
    name = f"({i.name})"

    def warn(message: str, pos: Pos | None = None) -> None:
        b.warn(f"{name} {message}", pos)

    if i.vrid is None:
        raise b.fatal(f"{name} the virtual router id must be set")
    strict = s.get("strict_mode", g.vrrp_strict)
    family = i.family or 4
    version = i.version
    if family == 6:
        if version == 2:  # keepalived says so only in strict mode; v2 has no IPv6 (RFC 3768)
            warn("cannot use IPv6 with VRRP version 2; setting version 3")
        version = 3
    version = version or g.vrrp_version
    if not i.vips:
        if version == 3 or strict:
            raise b.fatal(f"{name} No VIP specified; at least one is required")
        warn("No VIP specified; at least one is sensible")
    priority = i.priority or (255 if i.state == "MASTER" else 100)
    state = i.state or ("MASTER" if priority == 255 else "BACKUP")
    if i.state is not None and strict and (state == "MASTER") != (priority == 255):
        warn("State MASTER must match being address owner")
        state = "MASTER" if priority == 255 else "BACKUP"
    auth_type, auth_pass = i.auth_type, i.auth_pass
    if auth_type is not None:
        if strict:
            warn("Strict mode does not support authentication. Ignoring.")
            auth_type = None
        elif version == 3:
            warn("VRRP version 3 does not support authentication. Ignoring.")
            auth_type = None
        elif not auth_pass:
            warn("Authentication specified but no password given. Ignoring")
            auth_type = None
        elif family == 6 and auth_type == "AH":
            warn("Cannot use AH authentication with IPv6. ignoring")
            auth_type = None
        elif auth_type == "AH" and state == "MASTER" and priority != 255:
            warn("Initial state master is incompatible with AH authentication - clearing")
            state = "BACKUP"
    if auth_type == "AH":
        warn("IPSEC-AH authentication is not implemented by halb: adverts with AH headers "
             "are refused")
    if i.interface is None and not i.peers:
        raise b.fatal(f"{name} Unknown interface!")
    if i.unicast_keyword and not i.peers:
        warn("A unicast keyword has been specified without any unicast peers. Defaulting to "
             "multicast. This usage is deprecated - please update your configuration.")
    if family == 6 and not i.peers and i.vips and not i.vips[0].ip.is_link_local and strict:
        warn("the first IPv6 VIP address must be link local")  # otherwise only logged
    vips, evips = list(i.vips), list(i.evips)
    hdr = 14 + (20 + 8 + (8 if version == 2 else 0) if family == 4 else 40 + 8)
    max_addr = min(255, (DEFAULT_MTU - hdr) // (4 if family == 4 else 16))
    if len(vips) > max_addr:
        warn(f"Number of VIPs ({len(vips)}) exceeds maximum/space available in packet (max "
             f"{max_addr} addresses) - excess moved to eVIPs")
        keep = max_addr - 1  # sic: keepalived keeps one fewer than it says
        vips, evips = vips[:keep], vips[keep:] + evips
    nopreempt, preempt_delay = i.nopreempt, i.preempt_delay
    if priority == 255 and nopreempt:
        warn("nopreempt is incompatible with priority 255. resetting nopreempt")
        nopreempt = False
    if state == "MASTER":
        if nopreempt:
            warn("Warning - nopreempt will not work with initial state MASTER - clearing")
            nopreempt = False
        if preempt_delay:
            warn("Warning - preempt delay will not work with initial state MASTER - clearing")
            preempt_delay = 0.0
    if preempt_delay and strict:
        warn("preempt_delay is incompatible with strict mode - resetting")
        preempt_delay = 0.0
    if preempt_delay and nopreempt:
        warn("preempt_delay is incompatible with nopreempt mode - resetting")
        preempt_delay = 0.0
    accept = s.get("accept", True if priority == 255 else not strict)
    if accept and priority != 255 and strict and version == 2:
        warn("warning - accept mode for VRRP version 2 does not comply with RFC3768 - "
             "resetting")
        accept = False
    lower = {k: s.get(k, 0 if strict else getattr(g, f"vrrp_{k}"))
             for k in ("garp_lower_prio_repeat", "garp_lower_prio_delay")}
    if strict and s.get("garp_lower_prio_repeat"):
        warn("Strict mode requires no repeat garps. resetting")
        lower["garp_lower_prio_repeat"] = 0
    if strict and s.get("garp_lower_prio_delay"):
        warn("Strict mode requires no repeat garp delay. resetting")
        lower["garp_lower_prio_delay"] = 0
    lpna = s.get("lower_prio_no_advert", True if strict else g.vrrp_lower_prio_no_advert)
    if strict and not lpna:
        warn("Strict mode requires no lower priority advert. resetting")
        lpna = True
    hpsa = s.get("higher_prio_send_advert", False if strict else
                 g.vrrp_higher_prio_send_advert)
    if strict and hpsa:
        warn("strict mode requires higher_prio_send_advert to be clear. resetting")
        hpsa = False
    down_adverts = s.get("down_timer_adverts", g.vrrp_down_timer_adverts)
    if strict and down_adverts != 3:
        warn("down_timer_adverts is incompatible with strict mode - resetting")
        down_adverts = 3
    advert_int = _advert_int(warn, version, i.advert_int or 1.0)
    tracks = list(i.track_ifs)
    for t in list(tracks):
        if t.name == i.interface:
            warn(f"Ignoring track_interface {t.name} since own interface")
            tracks.remove(t)
    unicast_ttl = s.get("unicast_ttl", 255)
    garp_delay = s.get("garp_master_delay", 0.0 if g.vrrp_min_garp else g.vrrp_garp_master_delay)
    garp_repeat = s.get("garp_master_repeat", 1 if g.vrrp_min_garp else g.vrrp_garp_master_repeat)
    return VrrpInstance(
        i.name, i.interface, i.vrid, priority, state, version, family, advert_int,
        auth_type, auth_pass if auth_type else None, tuple(vips), tuple(evips),
        i.unicast_src, tuple(i.peers), unicast_ttl, i.mcast_dst, nopreempt, preempt_delay,
        garp_delay, garp_repeat,
        s.get("garp_master_refresh", g.vrrp_garp_master_refresh),
        s.get("garp_master_refresh_repeat", g.vrrp_garp_master_refresh_repeat),
        lower["garp_lower_prio_delay"], lower["garp_lower_prio_repeat"],
        tuple(i.track_scripts), tuple(tracks), s.get("dont_track_primary", False),
        *(i.notify.get(n) for n in _NOTIFIES),
        accept=accept, strict_mode=strict,
        skip_check_adv_addr=s.get("skip_check_adv_addr", g.vrrp_skip_check_adv_addr),
        check_unicast_src=s.get("check_unicast_src", g.vrrp_check_unicast_src),
        lower_prio_no_advert=lpna, higher_prio_send_advert=hpsa,
        down_timer_adverts=down_adverts,
        v3_checksum_as_v2=s.get("v3_checksum_as_v2", g.v3_checksum_as_v2),
        sync_group=i.sync_group, other=MappingProxyType(dict(s.get("other", {}))), pos=i.pos)


def _advert_int(warn: Callable[[str], None], version: int, seconds: float) -> float:
    """keepalived's advert_int checks, in microseconds as it keeps them."""
    us = round(seconds * 1_000_000)
    if version == 2:
        if us >= 256 * 1_000_000:
            warn(f"VRRPv2 advertisement interval {us / 1e6:.2f}s is out of range. Must be less "
                 "than 256s. Setting to 255s")
            us = 255 * 1_000_000
        elif us % 1_000_000:
            warn(f"VRRPv2 advertisement interval {us / 1e6:f}s must be an integer. rounding")
            us = max(1_000_000, (us + 500_000) // 1_000_000 * 1_000_000)
    elif us >= 4096 * 10_000:
        warn(f"VRRPv3 advertisement interval {us / 1e6:.2f}s is out of range. Must be less "
             "than 40.96s. Setting to 40.95s")
        us = 4095 * 10_000
    elif us % 10_000:
        warn(f"VRRPv3 advertisement interval {us / 1e6:f}s must be in units of 10ms - rounding")
        us = max(10_000, (us + 5_000) // 10_000 * 10_000)
    return us / 1e6
