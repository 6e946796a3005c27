"""keepalived.conf's global_defs, and the top-level blocks kept raw for later roles (PURE).

global_defs keywords halb acts on (router_id, vrrp_version, vrrp_garp_*, vrrp_strict, ...) are
parsed with keepalived's checks and messages; the others keepalived 2.2.7 knows are accepted and
kept verbatim in GlobalDefs.other. virtual_server, virtual_server_group, SSL, static_*, track
files/processes, bfd_instance ... are kept as RawBlocks (KeepalivedConfig.raw) for the L4 and
checker roles to build on.
"""

from __future__ import annotations

from collections.abc import Callable

from halb.config.errors import Pos
from halb.config.keepalived import (
    KEYWORDS,
    Builder,
    Frame,
    Keyword,
    Stmt,
    _discard,
    accept,
    keyword,
)
from halb.config.keepalived_model import RawBlock, RawStatement

# -- raw blocks: kept verbatim for later roles -----------------------------------------------


def _raw_lines(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    assert frame.raw is not None
    if not st.opens:
        frame.raw.append(RawStatement(st.name, tuple(st.args), st.pos))
        return None
    return _raw_frame(st, frame.raw.append)


def _raw_frame(st: Stmt, done: Callable[[RawStatement], None]) -> Frame:
    children: list[RawStatement] = []

    def close(b: Builder, frame: Frame, pos: Pos | None) -> None:
        done(RawStatement(st.name, tuple(st.args), st.pos, tuple(children)))

    return Frame("raw", pos=st.pos, lines=_raw_lines, on_close=close, raw=children)


_RAW_BLOCKS = ["virtual_server", "virtual_server_group", "SSL", "static_ipaddress", "static_routes", "static_rules", "linkbeat_interfaces", "vrrp_track_file", "track_file", "vrrp_track_process", "bfd_instance", "garp_group", "track_group"]
_RAW_LINES = ["child_wait_time", "instance", "interface_up_down_delays", "linkbeat_use_polling", "namespace_with_ipsets", "net_namespace", "net_namespace_ipvs", "use_pid_dir"]


def _raw_top(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    if not st.opens:
        b.raw.append(RawBlock(st.name, tuple(st.args), st.pos))
        return None
    return _raw_frame(st, lambda r: b.raw.append(RawBlock(r.name, r.args, r.pos, r.block)))


for _name in _RAW_BLOCKS:
    min_args = 1 if _name in ("virtual_server", "virtual_server_group", "vrrp_track_file",
                              "track_file", "vrrp_track_process") else 0
    KEYWORDS.setdefault("top", {})[_name] = Keyword(_raw_top, None, min_args)
for _name in _RAW_LINES:
    KEYWORDS["top"][_name] = Keyword(_raw_top, None)


# -- global_defs -----------------------------------------------------------------------------


@keyword("top", "global_defs", block=True)
def _global_defs(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    return Frame("global_defs", pos=st.pos, other=b.global_other)


@keyword("global_defs", "router_id")
def _router_id(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    if not st.args:
        b.warn("routerid name missing - ignoring", st.pos)
    else:
        b.global_defs["router_id"] = st.args[0]
    return None


@keyword("global_defs", "vrrp_version", min_args=1)
def _vrrp_version(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    v = b.integer(st, st.args[0], 2, 3, signed=True)
    if v is None:
        b.warn("VRRP Error: Version must be either 2 or 3", st.pos)
    else:
        b.global_defs["vrrp_version"] = v
    return None


def _global_number(name: str, lo: float, hi: float, message: str, integer: bool,
                   zero: str | None = None) -> None:
    def handler(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
        text = st.args[0]
        v = b.integer(st, text, int(lo), int(hi)) if integer else b.decimal(st, text, lo, hi)
        if v is None:
            b.warn(message.format(name=name, value=text), st.pos)
            return None
        if v == 0 and zero is not None:
            b.warn(zero.format(name=name), st.pos)
            v = 1
        b.global_defs[name] = v
        return None

    KEYWORDS.setdefault("global_defs", {})[name] = Keyword(handler, min_args=1)


UINT = 2 ** 32 - 1
_INVALID = "{name} '{value}' invalid - ignoring"
_IS_INVALID = "{name} '{value}' is invalid"
_NOT_ZERO = "{name} must be greater than 0, setting to 1"
_global_number("vrrp_garp_master_delay", 0, UINT, _INVALID, True)
_global_number("vrrp_garp_master_repeat", 0, UINT, _INVALID, True, _NOT_ZERO)
_global_number("vrrp_garp_master_refresh", 0, UINT, "Invalid {name} '{value}' - ignoring", True)
_global_number("vrrp_garp_master_refresh_repeat", 0, UINT, _INVALID, True, _NOT_ZERO)
_global_number("vrrp_garp_lower_prio_delay", 0, UINT, _INVALID, True)
_global_number("vrrp_garp_lower_prio_repeat", 0, UINT, "Invalid {name} '{value}'", True)
_global_number("vrrp_garp_interval", 0.000001, 4294.967295, _IS_INVALID, False)
_global_number("vrrp_gna_interval", 0.000001, 4294.967295, _IS_INVALID, False)
_global_number("vrrp_down_timer_adverts", 1, 100, "Invalid {name} [1:100] '{value}'", True)
_global_number("vrrp_startup_delay", 0.001, 4294.967295, _IS_INVALID, False)
_global_number("smtp_connect_timeout", 0, UINT, "{name} '{value}' must be in [0, 4294] - ignoring",
               True, "smtp_conect_timeout must be greater than 0, setting to 1")


def _global_flag(names: str, takes_bool: bool) -> None:
    """Global switches: some take an optional <BOOL>, the others ignore what follows them."""

    def handler(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
        value = b.flag(st, "Invalid value for {name} specified") if takes_bool else True
        if value is not None:
            b.global_defs[st.name] = value
        return None

    for name in names.split():
        KEYWORDS.setdefault("global_defs", {})[name] = Keyword(handler)


_global_flag("vrrp_strict vrrp_skip_check_adv_addr vrrp_check_unicast_src enable_script_security",
             False)
_global_flag("vrrp_min_garp vrrp_lower_prio_no_advert vrrp_higher_prio_send_advert "
             "v3_checksum_as_v2", True)


@keyword("global_defs", "dynamic_interfaces")
def _dynamic_interfaces(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    if st.args and st.args[0] != "allow_if_changes":
        b.warn(f"Unknown dynamic_interfaces option '{st.args[0]}'", st.pos)
    b.global_defs["dynamic_interfaces"] = True
    return None


@keyword("global_defs", "vrrp_mcast_group4", "vrrp_mcast_group6", min_args=1)
def _mcast_group(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    addr = b.address(st.args[0])
    if addr is None or addr.version != int(st.name[-1]):
        b.warn(f"Can't parse {st.name} [{st.args[0]}]. Skipping", st.pos)
    elif not addr.is_multicast:
        b.warn(f"{st.name} [{st.args[0]}] is not multicast. Skipping", st.pos)
    else:
        b.global_defs[st.name] = addr
    return None


@keyword("global_defs", "script_user")
def _script_user(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    if not st.args:
        b.warn("No script username specified", st.pos)
        return None
    b.global_defs["script_user"] = st.args[0]
    if len(st.args) > 1:
        b.global_defs["script_group"] = st.args[1].lstrip(":")
    return None


@keyword("global_defs", "notification_email_from")
def _email_from(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    if not st.args:
        b.warn("emailfrom missing - ignoring", st.pos)
    else:
        b.global_defs["notification_email_from"] = st.args[0]
    return None


@keyword("global_defs", "smtp_server", min_args=1)
def _smtp_server(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    b.global_defs["smtp_server"] = " ".join(st.args)
    return None


@keyword("global_defs", "notification_email", block=True)
def _notification_email(b: Builder, frame: Frame, st: Stmt) -> Frame | None:
    emails: list[str] = []

    def line(b: Builder, frame: Frame, item: Stmt) -> Frame | None:
        emails.extend(w.value for w in item.words)
        return _discard(b, frame, item)

    def close(b: Builder, frame: Frame, pos: Pos | None) -> None:
        if not emails:
            b.warn("Warning - empty notification_email block", pos)
        b.global_defs["notification_email"] = tuple(emails)

    return Frame("notification_email", pos=st.pos, lines=line, on_close=close)


# keepalived 2.2.7's other global_defs keywords, and a few newer ones (vrrp_owner_ignore_adverts)
accept("global_defs", """
    bfd_cpu_affinity bfd_no_swap bfd_priority bfd_process_name bfd_rlimit_rtime
    bfd_rlimit_rttime bfd_rt_priority checker_cpu_affinity checker_log_all_failures
    checker_no_swap checker_priority checker_process_name checker_rlimit_rtime
    checker_rlimit_rttime checker_rt_priority config_save_dir data_use_instance
    dbus_service_name default_interface disable_local_igmp enable_dbus enable_snmp_checker
    enable_snmp_keepalived enable_snmp_rfc enable_snmp_rfcv2 enable_snmp_rfcv3 enable_snmp_vrrp
    enable_traps fifo_write_vrrp_states_on_reload include_check log_unknown_vrids lvs_flush
    lvs_flush_on_stop lvs_flush_onstop lvs_netlink_cmd_rcv_bufs lvs_netlink_cmd_rcv_bufs_force
    lvs_netlink_monitor_rcv_bufs lvs_netlink_monitor_rcv_bufs_force lvs_notify_fifo
    lvs_notify_fifo_script lvs_process_name lvs_sync_daemon lvs_timeouts lvs_id
    max_auto_priority min_auto_priority_delay nftables nftables_counters nftables_ifindex
    nftables_ipvs nftables_ipvs_priority nftables_ipvs_start_fwmark nftables_priority
    no_checker_emails no_email_faults notify_fifo notify_fifo_script process_monitor_rcv_bufs
    process_monitor_rcv_bufs_force process_name process_names random_seed reload_check_config
    reload_file reload_repeat reload_time_file rs_init_notifies shutdown_script
    shutdown_script_timeout smtp_alert smtp_alert_checker smtp_alert_vrrp smtp_helo_name
    snmp_socket startup_script startup_script_timeout tmp_config_directory umask
    vmac_addr_prefix vmac_prefix vrrp_cpu_affinity vrrp_garp_extra_if vrrp_iptables
    vrrp_ipsets vrrp_netlink_cmd_rcv_bufs vrrp_netlink_cmd_rcv_bufs_force
    vrrp_netlink_monitor_rcv_bufs vrrp_netlink_monitor_rcv_bufs_force vrrp_no_swap
    vrrp_notify_fifo vrrp_notify_fifo_script vrrp_notify_priority_changes vrrp_priority
    vrrp_process_name vrrp_rlimit_rtime vrrp_rlimit_rttime vrrp_rt_priority
    vrrp_rx_bufs_multiplier vrrp_rx_bufs_policy vrrp_vmac_garp_intvl vrrp_owner_ignore_adverts
    vrrp_garp_lower_prio_no_advert
""")


