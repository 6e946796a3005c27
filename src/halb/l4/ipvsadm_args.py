"""ipvsadm 1.31's command line (PURE): argv → a `model.Command`, a `Listing`, or one of the
other invocations, with ipvsadm's own error texts and exit codes.

Owns the grammar as ipvsadm.c implements it (reference l4-ipvs.md §3, read from the 1.31
source and checked against Debian's ipvsadm 1.31 binary); the lexical layer (popt, C number and
address parsing, -h text) is ipvsadm_syntax.py:

* the first option must be the command; -h and --version answer at once;
* the commands_v_options matrix (compulsory, illegal and mutually exclusive options per
  command) and its messages, `multiple '...' options specified`, the tunnel-type matrix;
* value checks in argv order with fail(2)'s texts, then --set's three values, leftover
  arguments, -b against the final scheduler, the matrix, and the per-command checks (zero port
  without -p, -o only for UDP, the dest port forced to the service port for -g/-i, address
  families, tunnel options);
* `-R`'s line reader (config_stream: whitespace-separated words, the word "ipvsadm" dropped,
  '#' starts a comment, which config_stream's comment says and its code misses).

Nothing here touches the network: resolution is the caller's `Names`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from halb.l4 import model
from halb.l4.ipvsadm_syntax import (
    EXIT_POPT,
    EXIT_USAGE,
    INT_MAX,
    NO_NAMES,
    VERSION,
    Names,
    Opt,
    UsageError,
    inet6,
    inet_aton,
    parse_service,
    popt_words,
    string_to_number,
    tryhelp,
    usage,
)
from halb.l4.model import Command, DestSpec, Forward, Op, Proto, ServiceKey, ServiceSpec, Timeouts

__all__ = ["EXIT_POPT", "EXIT_USAGE", "NO_NAMES", "VERSION", "Command", "DaemonCommand",
           "Listing", "Names", "Parsed", "Restore", "Text", "UsageError", "parse",
           "restore_lines", "restore_words", "usage"]

MAX_TIMEOUT = model.MAX_TIMEOUT


@dataclass(frozen=True, slots=True)
class Listing:
    """-L/-l (and -S, the rule format) with its options; `service` lists just one."""

    numeric: bool = False
    connections: bool = False
    service: ServiceKey | None = None
    timeout: bool = False
    daemon: bool = False
    stats: bool = False
    rate: bool = False
    thresholds: bool = False
    persistent_conn: bool = False
    nosort: bool = False
    exact: bool = False
    tun_info: bool = False
    save: bool = False


@dataclass(frozen=True, slots=True)
class Restore:
    """-R: commands follow on stdin, one per line (`restore_lines`)."""


@dataclass(frozen=True, slots=True)
class DaemonCommand:
    """--start-daemon / --stop-daemon (the connection sync daemon)."""

    start: bool
    state: str  # master | backup
    mcast_interface: str = ""
    syncid: int = 0
    sync_maxlen: int = 0
    mcast_group: str = ""
    mcast_port: int = 0
    mcast_ttl: int = 0


@dataclass(frozen=True, slots=True)
class Text:
    """-h / --version: printed on stdout, exit 0."""

    text: str


Parsed = Command | Listing | Restore | DaemonCommand | Text

# -- the option table ------------------------------------------------------------------------

CMDNAMES = ("add-service", "edit-service", "delete-service", "flush", "list", "add-server",
            "delete-server", "edit-server", "set", "start-daemon", "stop-daemon", "restore",
            "save", "zero")
OPTNAMES = ("numeric", "connection", "service-address", "scheduler", "persistent", "netmask",
            "real-server", "forwarding-method", "weight", "u-threshold", "l-threshold",
            "mcast-interface", "timeout", "daemon", "stats", "rate", "thresholds",
            "persistent-conn", "nosort", "syncid", "exact", "ops", "pe", "sched-flags",
            "mcast-group", "mcast-port", "mcast-ttl", "sync-maxlen", "tun-info", "tun-type",
            "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum")
_O = {name: i for i, name in enumerate(OPTNAMES)}

# commands_v_options of ipvsadm 1.31: '+' compulsory, 'x' illegal, '1' exclusive, ' ' optional.
# Columns in OPTNAMES order (34).
_MATRIX = {
    "add-service":    "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
    "edit-service":   "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
    "delete-service": "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "flush":          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "list":           " 11xxxxxxxxx11       xxxxxxx xxxxx",
    "add-server":     "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
    "delete-server":  "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "edit-server":    "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
    "set":            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "start-daemon":   "xxxxxxxxxxx xxxxxxx xxxx    xxxxxx",
    "stop-daemon":    "xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx",
    "restore":        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "save":           " xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "zero":           "xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
}
TUNNAMES = ("ipip", "gue", "gre")
_TUN_OPTS = ("tun-port", "tun-nocsum", "tun-csum", "tun-remcsum")
_TUN_MATRIX = {"ipip": "xxxx", "gue": "+111", "gre": "x11x"}

_COMMANDS = {"add-service": "add-service", "edit-service": "edit-service",
             "delete-service": "delete-service", "clear": "flush", "list": "list",
             "zero": "zero", "add-server": "add-server", "edit-server": "edit-server",
             "delete-server": "delete-server", "set": "set", "restore": "restore",
             "save": "save", "start-daemon": "start-daemon", "stop-daemon": "stop-daemon"}
_OPS = {"add-service": Op.ADD_SERVICE, "edit-service": Op.EDIT_SERVICE,
        "delete-service": Op.DEL_SERVICE, "flush": Op.CLEAR, "add-server": Op.ADD_DEST,
        "edit-server": Op.EDIT_DEST, "delete-server": Op.DEL_DEST, "zero": Op.ZERO,
        "set": Op.SET_TIMEOUTS}


def _netmask(text: str, names: Names) -> str | None:
    v4 = inet_aton(text)
    if v4 is None and names.host is not None:
        v4 = names.host(text)
    return v4


def _atoi(text: str) -> int:
    m = re.match(r"[ \t\n\v\f\r]*([+-]?[0-9]+)", text)
    return int(m.group(1)) if m else 0


def _parse_fwmark(text: str) -> int:
    n = string_to_number(text, 1, 2**32 - 1)
    if n is None:
        raise UsageError(f"invalid fwmark value `{text}' specified\n")
    return n


def _parse_timeout(text: str | None, lo: int, hi: int) -> int:
    if text is None:
        return model.DEFAULT_PERSISTENCE
    n = string_to_number(text, lo, hi)
    if n is None:
        raise UsageError(f"invalid timeout value `{text}' specified\n")
    return n


_SCHED_FLAG_BITS = {"flag-1": 1, "flag-2": 2, "flag-3": 4}
_SCHED_NAMED = {"sh-fallback": ("sh", 1), "sh-port": ("sh", 2),
                "mh-fallback": ("mh", 1), "mh-port": ("mh", 2)}


def sched_flag_names(scheduler: str, bits: int) -> tuple[str, ...]:
    """The flags as print_sched_flags() names them (sh-*, mh-* for sh and mh)."""
    if scheduler in ("sh", "mh"):
        names = (f"{scheduler}-fallback", f"{scheduler}-port", "flag-3")
    else:
        names = ("flag-1", "flag-2", "flag-3")
    return tuple(n for n, bit in zip(names, (1, 2, 4), strict=True) if bits & bit)


def parse_sched_flags(scheduler: str, text: str) -> tuple[str, ...]:
    sched = scheduler or model.DEFAULT_SCHEDULER
    bits = 0
    for flag in text.split(","):
        if flag in _SCHED_FLAG_BITS:
            bits |= _SCHED_FLAG_BITS[flag]
        elif flag in _SCHED_NAMED:
            owner, bit = _SCHED_NAMED[flag]
            bits |= bit
            if sched != owner:
                raise UsageError(f"incompatible scheduler flag `{flag}'\n")
        else:
            raise UsageError(f"invalid scheduler flag `{flag}'\n")
    return sched_flag_names(sched, bits)


# -- the parse ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    cmd: str = ""
    options: list[str] = field(default_factory=list)
    proto: Proto | None = None
    addr: str = ""
    port: int = 0
    fwmark: int = 0
    ipv6: bool = False
    scheduler: str = ""
    persistent: int = 0
    netmask: str = "255.255.255.255"
    pe: str = ""
    ops: bool = False
    sched_flags_arg: str = ""
    daddr: str = ""
    dport: int = 0
    dipv6: bool = False
    forward: Forward = Forward.ROUTE
    weight: int = 1
    u_threshold: int = 0
    l_threshold: int = 0
    tun_type: str = "ipip"
    tun_port: int = 0
    tun_flag: str = "nocsum"
    timeouts: tuple[int, int, int] = (0, 0, 0)
    daemon_state: str = ""
    mcast_interface: str = ""
    syncid: int = 0
    sync_maxlen: int = 0
    mcast_group: str = ""
    mcast_port: int = 0
    mcast_ttl: int = 0

    def set_option(self, name: str) -> None:
        if name in self.options:
            raise UsageError(f"multiple '{name}' options specified\n")
        self.options.append(name)


def _generic_opt_check(cmd: str, options: list[str]) -> None:
    row = _MATRIX[cmd]
    last = ""
    for j, name in enumerate(OPTNAMES):
        mark = row[j]
        if name not in options:
            if mark == "+":
                raise UsageError(f"You need to supply the '{name}' option for the '{cmd}' "
                                 "command\n")
            continue
        if mark == "x":
            raise UsageError(f"Illegal '{name}' option with the '{cmd}' command\n")
        if mark == "1":
            if not last:
                last = name
                continue
            raise UsageError(f"The option '{name}' conflicts with the '{last}' option in "
                             f"the '{cmd}' command\n")


def _tunnel_opt_check(tun_type: str, options: list[str]) -> None:
    row = _TUN_MATRIX[tun_type]
    last = ""
    for j, name in enumerate(_TUN_OPTS):
        if name not in options:
            if row[j] == "+":
                raise UsageError(f"You need to supply the '{name}' option for the "
                                 f"'{tun_type}' tunnel type\n")
            continue
        if row[j] == "x":
            raise UsageError(f"Illegal '{name}' option with the '{tun_type}' tunnel type\n")
        if row[j] == "1":
            if not last:
                last = name
                continue
            raise UsageError(f"The option '{name}' conflicts with the '{last}' option in "
                             f"the '{tun_type}' tunnel type\n")


def _first(opt: Opt, st: _State, prog: str) -> Parsed | None:
    """The command (ipvsadm requires it first); -h and -v answer at once."""
    if opt.name == "help":
        return Text(usage(prog))
    if opt.name == "version":
        return Text(VERSION)
    cmd = _COMMANDS.get(opt.name)
    if cmd is None:
        raise tryhelp(prog)
    st.cmd = cmd
    if cmd in ("start-daemon", "stop-daemon"):
        if opt.arg in ("master", "backup"):
            st.daemon_state = opt.arg
        elif cmd == "start-daemon":
            raise UsageError("illegal start-daemon parameter specified\n")
        else:
            raise UsageError("illegal start_daemon specified\n")
    return None


def _option(opt: Opt, st: _State, names: Names) -> None:
    name, arg = opt.name, opt.arg or ""
    if name in ("tcp-service", "udp-service", "sctp-service"):
        st.set_option("service-address")
        st.proto = {"tcp-service": Proto.TCP, "udp-service": Proto.UDP,
                    "sctp-service": Proto.SCTP}[name]
        found = parse_service(arg, st.proto, names)
        if found is None:
            raise UsageError("illegal virtual server address[:port] specified\n")
        st.addr, st.port, st.ipv6 = found.addr, found.port, found.ipv6
        if found.ipv6:
            st.netmask = "128"
    elif name == "fwmark-service":
        st.set_option("service-address")
        st.ipv6 = False
        st.proto = Proto.TCP  # "a sane value, even though it is not used"
        st.fwmark = _parse_fwmark(arg)
    elif name == "scheduler":
        st.set_option("scheduler")
        st.scheduler = arg
    elif name == "persistent":
        st.set_option("persistent")
        st.persistent = _parse_timeout(opt.arg, 1, MAX_TIMEOUT)
    elif name == "netmask":
        st.set_option("netmask")
        if not st.ipv6:
            mask = _netmask(arg, names)
            if mask is None:
                raise UsageError("illegal virtual server persistent mask specified\n")
            st.netmask = mask
        else:
            bits = _atoi(arg)
            if not 1 <= bits <= 128:
                raise UsageError("illegal ipv6 netmask specified\n")
            st.netmask = str(bits)
    elif name == "real-server":
        st.set_option("real-server")
        found = parse_service(arg, st.proto, names)
        if found is None:
            raise UsageError("illegal real server address[:port] specified\n")
        st.daddr, st.dipv6 = found.addr, found.ipv6
        st.dport = found.port if found.has_port else st.port
    elif name in ("ipip", "gatewaying", "masquerading"):
        st.set_option("forwarding-method")
        st.forward = {"ipip": Forward.TUNNEL, "gatewaying": Forward.ROUTE,
                      "masquerading": Forward.MASQ}[name]
    elif name in ("weight", "u-threshold", "l-threshold"):
        st.set_option(name)
        n = string_to_number(arg, 0, INT_MAX)
        if n is None:
            label = {"weight": "weight", "u-threshold": "u_threshold",
                     "l-threshold": "l_threshold"}[name]
            raise UsageError(f"illegal {label} specified\n")
        if name == "weight":
            st.weight = n
        elif name == "u-threshold":
            st.u_threshold = n
        else:
            st.l_threshold = n
    elif name in ("connection", "numeric", "timeout", "daemon", "stats", "rate", "thresholds",
                  "persistent-conn", "nosort", "exact", "tun-info", "tun-nocsum", "tun-csum",
                  "tun-remcsum"):
        st.set_option(name)
        if name.startswith("tun-") and name != "tun-info":
            st.tun_flag = name[4:]
    elif name == "sort":
        pass  # "does nothing, for backwards compatibility"
    elif name == "ipv6":
        if not st.fwmark:
            raise UsageError("-6 used before -f\n\n")
        st.ipv6, st.netmask = True, "128"
    elif name == "ops":
        st.set_option("ops")
        st.ops = True
    elif name == "pe":
        st.set_option("pe")
        st.pe = arg
    elif name == "sched-flags":
        st.set_option("sched-flags")
        st.sched_flags_arg = arg
    elif name == "mcast-interface":
        st.set_option("mcast-interface")
        st.mcast_interface = arg[:15]
    elif name == "syncid":
        st.set_option("syncid")
        n = string_to_number(arg, 0, 255)
        if n is None:
            raise UsageError("illegal syncid specified\n")
        st.syncid = n
    elif name == "mcast-group":
        st.set_option("mcast-group")
        _mcast_group(arg, st)
    elif name in ("mcast-port", "mcast-ttl", "sync-maxlen", "tun-port"):
        st.set_option(name)
        hi = {"mcast-port": 65535, "mcast-ttl": 255, "sync-maxlen": 65535 - 20 - 8,
              "tun-port": 65535}[name]
        n = string_to_number(arg, 1, hi)
        if n is None:
            label = "tunnel port" if name == "tun-port" else name
            raise UsageError(f"illegal {label} specified\n")
        setattr(st, name.replace("-", "_"), n)
    elif name == "tun-type":
        st.set_option("tun-type")
        if arg not in TUNNAMES:
            raise UsageError("illegal tunnel type specified\n")
        st.tun_type = arg
    else:  # a command word after the command
        raise UsageError(f"invalid option `{opt.text}'\n")


def _mcast_group(arg: str, st: _State) -> None:
    if ":" in arg:
        v6 = inet6(arg)
        if v6 is None or not ipaddress.IPv6Address(v6).is_multicast:
            raise UsageError(f"invalid IPv6 mcast-group `{arg}'\n")
        st.mcast_group = v6
        return
    try:
        v4 = ipaddress.IPv4Address(arg)
    except ValueError:
        v4 = None
    if v4 is None or not v4.is_multicast:
        raise UsageError(f"invalid IPv4 mcast-group `{arg}'\n")
    st.mcast_group = str(v4)


def parse(argv: Sequence[str], names: Names = NO_NAMES, *, prog: str = "ipvsadm",
          reading_stdin: bool = False) -> Parsed:
    """ipvsadm's process_options() up to the point where it calls libipvs.

    `argv` excludes the program name. Raises UsageError with ipvsadm's text and exit code."""
    if not argv and not reading_stdin:
        return Listing()  # "list the table if there is no other argument"
    st = _State()
    words = popt_words(argv)
    first = next(words, None)
    if not isinstance(first, Opt):
        raise tryhelp(prog)
    done = _first(first, st, prog)
    if done is not None:
        return done
    rest: list[str] = []
    for item in words:
        if isinstance(item, UsageError):
            raise item
        if isinstance(item, str):
            rest.append(item)
        else:
            _option(item, st, names)
    if st.cmd == "set":
        if len(rest) < 3:
            raise UsageError("--set option requires 3 timeout values\n")
        values = tuple(_parse_timeout(v, 0, MAX_TIMEOUT) for v in rest[:3])
        st.timeouts = (values[0], values[1], values[2])
        rest = rest[3:]
    if rest:
        raise UsageError(f"unexpected argument {rest[0]}\n")
    flags: tuple[str, ...] = ()
    if st.sched_flags_arg:
        flags = parse_sched_flags(st.scheduler, st.sched_flags_arg)
    _generic_opt_check(st.cmd, st.options)
    return _finish(st, flags, prog, reading_stdin)


def _key(st: _State) -> ServiceKey:
    if st.fwmark:
        return ServiceKey(Proto.FWM, fwmark=st.fwmark, ipv6=st.ipv6)
    return ServiceKey(st.proto or Proto.TCP, st.addr, st.port, ipv6=st.ipv6)


def _finish(st: _State, flags: tuple[str, ...], prog: str, reading_stdin: bool) -> Parsed:
    cmd = st.cmd
    if cmd in ("add-service", "edit-service"):
        if not st.fwmark and not st.port and not st.persistent:
            raise UsageError("Zero port specified for non-persistent service\n")
        if st.ops and not st.fwmark and st.proto is not Proto.UDP:
            raise UsageError("One-Packet Scheduling is only for UDP virtual services\n")
    if cmd in ("add-server", "edit-server"):
        if not st.fwmark and st.forward in (Forward.TUNNEL, Forward.ROUTE):
            st.dport = st.port
        if st.dipv6 != st.ipv6 and st.forward is not Forward.TUNNEL:
            raise UsageError("Different address family is allowed only for tunneling "
                             "servers\n")
        tun_opts = {"tun-type", "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum"}
        if tun_opts & set(st.options) and st.forward is not Forward.TUNNEL:
            raise UsageError("Tunnel options conflict with forward method\n")
        _tunnel_opt_check(st.tun_type, st.options)
    opts = set(st.options)
    if cmd == "list":
        if ((opts & {"connection", "timeout", "daemon"} and
             opts & {"stats", "rate", "thresholds"}) or
                (opts & {"timeout", "daemon"} and "persistent-conn" in opts)):
            raise UsageError("options conflicts in the list command\n")
        return Listing(numeric="numeric" in opts, connections="connection" in opts,
                       service=_key(st) if "service-address" in opts else None,
                       timeout="timeout" in opts, daemon="daemon" in opts,
                       stats="stats" in opts, rate="rate" in opts,
                       thresholds="thresholds" in opts,
                       persistent_conn="persistent-conn" in opts, nosort="nosort" in opts,
                       exact="exact" in opts, tun_info="tun-info" in opts)
    if cmd == "save":
        return Listing(numeric="numeric" in opts, save=True)
    if cmd == "restore":
        if reading_stdin:
            raise tryhelp(prog)
        return Restore()
    if cmd in ("start-daemon", "stop-daemon"):
        return DaemonCommand(start=cmd == "start-daemon", state=st.daemon_state,
                             mcast_interface=st.mcast_interface or
                             ("eth0" if cmd == "start-daemon" else ""),
                             syncid=st.syncid, sync_maxlen=st.sync_maxlen,
                             mcast_group=st.mcast_group, mcast_port=st.mcast_port,
                             mcast_ttl=st.mcast_ttl)
    op = _OPS[cmd]
    if op is Op.SET_TIMEOUTS:
        return Command(op, timeouts=Timeouts(*st.timeouts))
    if op is Op.CLEAR:
        return Command(op)
    if op is Op.ZERO and "service-address" not in opts:
        return Command(op)
    service = ServiceSpec(_key(st))
    if op in (Op.ADD_SERVICE, Op.EDIT_SERVICE):
        service = replace(service, scheduler=st.scheduler or model.DEFAULT_SCHEDULER,
                          persistent=st.persistent, netmask=st.netmask, pe=st.pe,
                          ops=st.ops, sched_flags=flags)
        return Command(op, service=service)
    if op in (Op.DEL_SERVICE, Op.ZERO):
        return Command(op, service=service)
    dest = DestSpec(st.daddr, st.dport)
    if op in (Op.ADD_DEST, Op.EDIT_DEST):
        tunnel = st.forward is Forward.TUNNEL
        dest = replace(dest, forward=st.forward, weight=st.weight,
                       u_threshold=st.u_threshold, l_threshold=st.l_threshold,
                       tun_type=st.tun_type if tunnel else "",
                       tun_port=st.tun_port if tunnel and st.tun_type == "gue" else 0,
                       tun_flags=(st.tun_flag,) if tunnel and st.tun_type != "ipip" else ())
    return Command(op, service=service, dest=dest)


# -- -R ----------------------------------------------------------------------------------------


def restore_words(text: str) -> Iterator[list[str]]:
    """config_stream_read(): each line's words, without the word "ipvsadm"; '#' starts a
    comment; lines without words are skipped."""
    for line in text.splitlines():
        words: list[str] = []
        for word in re.split(r"[ \t\r\n]+", line):
            if word.startswith("#"):
                break
            if word and word != "ipvsadm":
                words.append(word)
        if words:
            yield words


def restore_lines(text: str, names: Names = NO_NAMES) -> Iterator[Parsed]:
    """Every -R line parsed as ipvsadm would (a UsageError stops the reading)."""
    for words in restore_words(text):
        yield parse(words, names, reading_stdin=True)


