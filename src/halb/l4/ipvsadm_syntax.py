"""ipvsadm's lexical layer (PURE): popt's option syntax, C's number and address parsing as
ipvsadm 1.31 uses them, and the -h / --version texts.

Owns:
* popt's rules: short clusters (`-Ln`, `-At VIP:80`, `-t1.2.3.4:80`), `--long` and
  `--long=value`; a required argument is the next word even when it starts with '-'; `-p`'s
  optional argument is taken only when the next word does not start with '-'; `--` ends the
  options; no abbreviations; popt's errors ("-t: missing argument", "--foo: unknown option")
  exit 255 as ipvsadm's do;
* strtol-based string_to_number(), glibc's inet_aton() forms (127.1, 0x7f.1, 010.0.0.1);
* parse_service(): host[:port], [v6]:port, port names per protocol, host names through a
  resolver that is passed in and is called only for what is not numeric.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from halb.l4.model import Proto

VERSION = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"
SCHEDULERS = "rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh"
INT_MAX = 2**31 - 1
EXIT_USAGE = 2  # fail(2, ...)
EXIT_POPT = 255  # tryhelp_exit(argv[0], -1) and popt's errors: exit(-1)


class UsageError(Exception):
    """What ipvsadm prints on stderr (with its newline) and the exit code it uses."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class Names:
    """Name resolution, passed in (PURE: this module never resolves by itself).

    host: name → IPv4 address text, or None (gethostbyname, AF_INET only).
    service: (name, "tcp"|"udp"|"sctp") → port, or None (getservbyname).
    """

    host: Callable[[str], str | None] | None = None
    service: Callable[[str, str], int | None] | None = None


NO_NAMES = Names()


def tryhelp(prog: str = "ipvsadm") -> UsageError:
    return UsageError(f"Try `{prog} -h' or '{prog} --help' for more information.\n",
                      EXIT_POPT)


# long name → (short letter or "", takes: "none" | "required" | "optional")
_LONG: dict[str, tuple[str, str]] = {
    "add-service": ("A", "none"), "edit-service": ("E", "none"),
    "delete-service": ("D", "none"), "clear": ("C", "none"), "list": ("L", "none"),
    "zero": ("Z", "none"), "add-server": ("a", "none"), "edit-server": ("e", "none"),
    "delete-server": ("d", "none"), "set": ("", "none"), "help": ("h", "none"),
    "version": ("v", "none"), "restore": ("R", "none"), "save": ("S", "none"),
    "start-daemon": ("", "required"), "stop-daemon": ("", "required"),
    "tcp-service": ("t", "required"), "udp-service": ("u", "required"),
    "sctp-service": ("", "required"), "fwmark-service": ("f", "required"),
    "scheduler": ("s", "required"), "persistent": ("p", "optional"),
    "netmask": ("M", "required"), "real-server": ("r", "required"),
    "masquerading": ("m", "none"), "ipip": ("i", "none"), "gatewaying": ("g", "none"),
    "weight": ("w", "required"), "u-threshold": ("x", "required"),
    "l-threshold": ("y", "required"), "numeric": ("n", "none"), "connection": ("c", "none"),
    "mcast-interface": ("", "required"), "syncid": ("", "required"),
    "timeout": ("", "none"), "daemon": ("", "none"), "stats": ("", "none"),
    "rate": ("", "none"), "thresholds": ("", "none"), "persistent-conn": ("", "none"),
    "nosort": ("", "none"), "sort": ("", "none"), "exact": ("X", "none"),
    "ipv6": ("6", "none"), "ops": ("o", "none"), "pe": ("", "required"),
    "sched-flags": ("b", "required"), "mcast-group": ("", "required"),
    "mcast-port": ("", "required"), "mcast-ttl": ("", "required"),
    "sync-maxlen": ("", "required"), "tun-info": ("", "none"), "tun-type": ("", "required"),
    "tun-port": ("", "required"), "tun-nocsum": ("", "none"), "tun-csum": ("", "none"),
    "tun-remcsum": ("", "none"),
}
_SHORT = {short: long for long, (short, _) in _LONG.items() if short}
_SHORT["l"] = "list"
# -- popt -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Opt:
    name: str  # the long name
    arg: str | None
    text: str  # the argv word it came from (poptBadOption)


def popt_words(argv: Sequence[str]) -> Iterator[Opt | str | UsageError]:
    """Options in order, then the leftover arguments (as str); a UsageError ends it."""
    i, rest = 0, []
    while i < len(argv):
        word = argv[i]
        i += 1
        if word == "--":
            rest.extend(argv[i:])
            break
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if name not in _LONG:
                yield UsageError(f"{word}: unknown option\n", EXIT_POPT)
                return
            takes = _LONG[name][1]
            if takes == "none":
                if eq:
                    yield UsageError(f"{word}: option does not take an argument\n",
                                     EXIT_POPT)
                    return
                yield Opt(name, None, word)
            elif eq:
                yield Opt(name, value, word)
            else:
                value, i = _separate(takes, argv, i)
                if value is _MISSING:
                    yield UsageError(f"{word}: missing argument\n", EXIT_POPT)
                    return
                yield Opt(name, value, word)
            continue
        if word.startswith("-") and len(word) > 1:
            j = 1
            while j < len(word):
                letter = word[j]
                j += 1
                name = _SHORT.get(letter)
                if name is None:
                    yield UsageError(f"{word}: unknown option\n", EXIT_POPT)
                    return
                takes = _LONG[name][1]
                if takes == "none":
                    yield Opt(name, None, word)
                    continue
                if j < len(word):
                    yield Opt(name, word[j:], word)
                else:
                    value, i = _separate(takes, argv, i)
                    if value is _MISSING:
                        yield UsageError(f"{word}: missing argument\n", EXIT_POPT)
                        return
                    yield Opt(name, value, word)
                break
            continue
        rest.append(word)
    yield from rest


_MISSING = "\0missing"  # a sentinel no argv word can be (argv words hold no NUL)


def _separate(takes: str, argv: Sequence[str], i: int) -> tuple[str | None, int]:
    """An option's argument given as the next word (popt): required ones take it whatever it
    is (_MISSING at the end of argv), optional ones only when it does not start with '-'."""
    if takes == "required":
        return (argv[i], i + 1) if i < len(argv) else (_MISSING, i)
    if i < len(argv) and not argv[i].startswith("-"):
        return argv[i], i + 1
    return None, i


# -- value parsing (C semantics) --------------------------------------------------------------

_STRTOL = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")


def string_to_number(text: str, lo: int, hi: int) -> int | None:
    """ipvsadm's string_to_number: strtol(s, 10), the whole string, lo <= n <= hi."""
    if not _STRTOL.fullmatch(text):
        return None
    n = int(text)
    if not -(2**63) <= n < 2**63:
        return None
    return n if lo <= n <= hi else None


def _c_uint(part: str) -> int | None:
    if re.fullmatch(r"0[xX][0-9a-fA-F]*", part):
        return int(part[2:] or "0", 16)
    if re.fullmatch(r"0[0-7]*", part):
        return int(part, 8)
    if re.fullmatch(r"[1-9][0-9]*", part):
        return int(part)
    return None


def inet_aton(text: str) -> str | None:
    """glibc inet_aton: a.b.c.d, a.b.c, a.b or a; each part decimal, 0octal or 0xhex; what
    follows whitespace is ignored. Returns the dotted quad, or None."""
    head = re.split(r"[ \t\n\v\f\r]", text, maxsplit=1)[0]
    parts = head.split(".")
    if not head or len(parts) > 4:
        return None
    vals = [_c_uint(p) for p in parts]
    nums = [v for v in vals if v is not None]
    if len(nums) != len(parts):
        return None
    last_limit = 2 ** (8 * (5 - len(nums)))
    if any(v > 255 for v in nums[:-1]) or nums[-1] >= last_limit:
        return None
    value = nums[-1]
    for i, v in enumerate(nums[:-1]):
        value |= v << (24 - 8 * i)
    return str(ipaddress.IPv4Address(value))


def inet6(text: str) -> str | None:
    if "%" in text or not text or text.strip() != text:
        return None
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        return None


_PROTO_NAME = {Proto.TCP: "tcp", Proto.UDP: "udp", Proto.SCTP: "sctp"}


@dataclass(slots=True)
class _Addr:
    addr: str = ""
    port: int = 0
    ipv6: bool = False
    has_port: bool = False


def parse_service(text: str, proto: Proto | None, names: Names) -> _Addr | None:
    """parse_service(): None when no address could be read (SERVICE_NONE)."""
    if text == "" or (text.isdigit() and text.isascii()):
        return None
    buf, port = text, None
    if buf.startswith("["):
        close = buf.find("]", 1)
        if close < 0:
            return None
        after = buf[close + 1:]
        if not after.startswith(":"):
            return None
        buf, port = buf[1:close], after[1:]
        bracketed = True
    else:
        bracketed = False
    found = _Addr()
    v6 = inet6(buf)
    if v6 is not None:
        found.addr, found.ipv6 = v6, True
    else:
        # ipvsadm looks for the port separator in what is left of the buffer: after a
        # bracketed non-IPv6 host that is nothing, so the port is dropped (as ipvsadm does).
        if bracketed:
            port = None
        else:
            host, sep, tail = buf.rpartition(":")
            if sep:
                buf, port = host, tail
        v4 = inet_aton(buf)
        if v4 is None and names.host is not None:
            v4 = names.host(buf)
        if v4 is None:
            return None
        found.addr = v4
    if port is not None:
        found.has_port = True
        n = string_to_number(port, 0, 65535)
        if n is None and proto in _PROTO_NAME and names.service is not None:
            n = names.service(port, _PROTO_NAME[proto])
        if n is None:
            return None
        found.port = n
    return found


# -- -h ----------------------------------------------------------------------------------------


def usage(prog: str = "ipvsadm") -> str:
    p = prog
    return (
        VERSION + "Usage:\n"
        f"  {p} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] "
        "[--pe persistence_engine] [-b sched-flags]\n"
        f"  {p} -D virtual-service\n  {p} -C\n  {p} -R\n  {p} -S [-n]\n"
        f"  {p} -a|e virtual-service -r server-address [options]\n"
        f"  {p} -d virtual-service -r server-address\n"
        f"  {p} -L|l [virtual-service] [options]\n  {p} -Z [virtual-service]\n"
        f"  {p} --set tcp tcpfin udp\n"
        f"  {p} --start-daemon {{master|backup}} [daemon-options]\n"
        f"  {p} --stop-daemon {{master|backup}}\n  {p} -h\n\n" + _HELP)


_HELP = f"""\
Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --start-daemon              start connection sync daemon
  --stop-daemon               stop connection sync daemon
  --help            -h        display this help message

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --sctp-service    service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of {SCHEDULERS},
                                      the default scheduler is wlc.
  --pe            engine              alternate persistence engine may be sip,
                                      not set by default.
  --persistent   -p [timeout]         persistent service
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --tun-type      type                one of ipip|gue|gre,
                                      the default tunnel type is ipip.
  --tun-port      port                tunnel destination port
  --tun-nocsum                        tunnel encapsulation without checksum
  --tun-csum                          tunnel encapsulation with checksum
  --tun-remcsum                       tunnel encapsulation with remote checksum
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --daemon                            output of daemon information
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --ops          -o                   one-packet scheduling
  --numeric      -n                   numeric output of addresses and ports
  --sched-flags  -b flags             scheduler flags (comma-separated)
Daemon Options:
  --syncid sid                        syncid for connection sync (default=255)
  --sync-maxlen length                Max sync message length (default=1472)
  --mcast-interface interface         multicast interface for connection sync
  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)
  --mcast-port port                   UDP port (default=8848)
  --mcast-ttl ttl                     Multicast TTL (default=1)
"""
