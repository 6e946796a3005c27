"""Reading virtual_server, virtual_server_group and SSL blocks as keepalived's checker does (PURE).

config/keepalived.py keeps these blocks verbatim (RawBlock / RawStatement trees). This module
walks them again with keepalived 2.2.7's keyword tables for its checker process
(check_parser.c, check_api.c, check_{tcp,http,misc}.c): the same handlers, the same value readers
(read_unsigned, read_timer with its microsecond rounding, check_true_false) and the same messages
with "(FILE: Line N)". The tree is flattened back into lines and closing braces so the walk can
do what keepalived's does with odd files: an unknown keyword's `{` is not entered ("Unexpected
'{' - ignoring"), so the next `}` closes the enclosing block and what follows is read one level
up; a keyword that needs a block but has no `{` reports "Missing '{'" and reads on; an invalid
real_server address skips its block. The virtual_server and real_server keywords are in
config/keepalived_lvs_vs.py, the checkers' in config/keepalived_lvs_check.py.

Positions of closing braces are not kept by RawStatement; messages keepalived reports at a block's
end ("HTTP/SSL_GET checker url has no path") use the statement's `end` attribute when the model
provides one, else the line after the block's last line.

The collected blocks are mutable `P*` objects; config/keepalived_lvs.py validates and freezes
them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from halb.config.errors import ConfigError, Pos
from halb.config.keepalived import FatalConfigError
from halb.config.keepalived_lvs_model import Address, Tunnel
from halb.config.keepalived_model import RawStatement, Script
from halb.config.keepalived_vrrp import script as _script

UINT = 2 ** 32 - 1
INT32_MAX = 2 ** 31 - 1
TIMER_MAX_US = 2 ** 64 - 2  # TIMER_MAXIMUM: read_timer's bound when max is 0
LVS_MAX_TIMEOUT = 86400 * 31
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "sh", "mh", "dh", "fo", "ovf", "lblcr", "sed",
              "nq", "twos")
SKIP = object()  # a handler's answer: skip the block that follows (keepalived's skip_block)


# -- what the walk collects ------------------------------------------------------------------


@dataclass(eq=False)
class PUrl:
    pos: Pos
    path: str | None = None
    digest: str | None = None
    status: set[int] = field(default_factory=set)
    virtualhost: str | None = None
    regex: str | None = None


@dataclass(eq=False)
class PCheck:
    kind: str
    pos: Pos
    default_retry: int = 1
    default_dbr: float = 1.0
    retry: int | None = None
    delay_loop: float | None = None
    warmup: float | None = None
    dbr: float | None = None
    alpha: bool | None = None
    log_all: bool = False
    has_co: bool = True
    connect_ip: Address | None = None
    connect_port: int = 0
    bindto: Address | None = None
    bind_port: int = 0
    bind_if: str | None = None
    fwmark: int = 0
    connect_timeout: float | None = None
    urls: list[PUrl] = field(default_factory=list)
    virtualhost: str | None = None
    http_protocol: str = "1.0"
    enable_sni: bool = False
    fast_recovery: bool = False
    misc_path: tuple[str, ...] = ()
    misc_timeout: float = 0.0
    misc_dynamic: bool = False
    user: str | None = None
    group: str | None = None
    removed: bool = False  # dequeued (keepalived's dequeue_new_checker)


@dataclass(eq=False)
class PServer:
    """A real_server, or a virtual server's sorry_server."""

    address: Address
    port: int
    pos: Pos
    method: str | None = None  # None: not set (keepalived's IP_VS_CONN_F_FWD_MASK)
    tunnel: Tunnel | None = None
    weight: int | None = None
    u_threshold: int = 0
    l_threshold: int = 0
    inhibit: bool | None = None
    alpha: bool | None = None
    notify_up: Script | None = None
    notify_down: Script | None = None
    retry: int | None = None
    connect_timeout: float | None = None
    delay_loop: float | None = None
    warmup: float | None = None
    dbr: float | None = None
    virtualhost: str | None = None
    checkers: list[PCheck] = field(default_factory=list)

    @property
    def family(self) -> int:
        return self.address.version


@dataclass(eq=False)
class PVs:
    pos: Pos
    address: Address | None = None
    port: int = 0
    fwmark: int = 0
    group: str | None = None
    group_index: int = 0
    family: int | None = None  # None: AF_UNSPEC
    protocol: str | None = None
    delay_loop: float = 60.0
    sched: str = ""
    method: str | None = None
    tunnel: Tunnel | None = None
    persistence_timeout: int = 0
    granularity: str | None = None
    engine: str | None = None
    ops: bool = False
    flags: list[str] = field(default_factory=list)
    virtualhost: str | None = None
    quorum: int = 1
    hysteresis: int = 0
    quorum_up: Script | None = None
    quorum_down: Script | None = None
    alpha: bool = False
    omega: bool = False
    inhibit: bool = False
    ha_suspend: bool = False
    sorry: PServer | None = None
    sorry_inhibit: bool = False
    rss: list[PServer] = field(default_factory=list)
    connect_timeout: float = 5.0
    retry: int | None = None
    dbr: float | None = None
    warmup: float | None = None
    weight: int = 1

    def name(self) -> str:
        if self.group is not None:
            return f"[{self.group}]:{self.group_index}"
        if self.fwmark:
            return f"FWM {self.fwmark}"
        return f"[{self.address}]:{(self.protocol or 'none').lower()}:{self.port}"

    def rs_name(self, rs: PServer) -> str:
        return f"[{rs.address}]:{(self.protocol or 'none').lower()}:{rs.port}"


@dataclass(eq=False)
class PVsgEntry:
    pos: Pos
    start: Address | None = None
    end: Address | None = None
    port: int = 0
    fwmark: int = 0
    fwmark_family: int | None = None


@dataclass(eq=False)
class PVsg:
    name: str
    pos: Pos
    entries: list[PVsgEntry] = field(default_factory=list)
    have4: bool = False
    have6: bool = False
    fwmark_no_family: bool = False


@dataclass(eq=False)
class PSsl:
    password: str | None = None
    ca: str | None = None
    certificate: str | None = None
    key: str | None = None


# -- keepalived's value readers (their -t semantics and messages) ----------------------------


def strtoul(text: str, base: int = 10) -> tuple[int, str, bool]:
    """C strtoul: (value, rest, any digits). Leading white space and a sign are taken; a
    negative value wraps as an unsigned long does."""
    m = re.match(r"[ \t\n\r\f\v]*([+-]?)", text)
    assert m is not None
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"[:base]
    i = m.end()
    j = i
    while j < len(text) and text[j].lower() in digits:
        j += 1
    if j == i:
        return 0, text, False
    value = int(text[i:j], base)
    if m.group(1) == "-":
        value = (-value) % 2 ** 64
    return value, text[j:], True


class Reader:
    """Warnings and the value readers; the walk and the validation share one."""

    def __init__(self, lookup_user: Callable[[str, str | None], bool] | None = None) -> None:
        self.warnings: list[ConfigError] = []
        self.lookup_user = lookup_user

    def warn(self, message: str, pos: Pos | None = None) -> None:
        self.warnings.append(ConfigError(message, pos, level="warn"))

    def info(self, message: str, pos: Pos | None = None) -> None:
        """What keepalived only logs (log_message): not part of `keepalived -t`'s output."""
        self.warnings.append(ConfigError(message, pos, level="info"))

    def unsigned(self, text: str, lo: int, hi: int, pos: Pos) -> int | None:
        """read_unsigned_strvec (as `keepalived -t` reads: any complaint rejects the value)."""
        stripped = text.lstrip(" \t\n\r\f\v")
        value, rest, _ = strtoul(stripped)
        if stripped.startswith("-"):
            self.warn(f"negative number '{text}'", pos)
        elif rest:
            self.warn(f"invalid number '{text}'", pos)
        elif value > UINT:
            self.warn(f"number '{text}' outside unsigned integer range", pos)
        elif not lo <= value <= hi:
            self.warn(f"number '{text}' outside range [{lo}, {hi}]", pos)
        else:
            return value
        return None

    def timer(self, text: str, lo_us: int, hi_us: int, pos: Pos) -> float | None:
        """read_timer: decimal seconds, microsecond resolution. As keepalived, a value with
        trailing junk is reported and still taken (its leading digits, after the decimal point
        is removed: "6x" is 6 microseconds); too many decimals are rounded."""
        hi_us = hi_us or TIMER_MAX_US
        if text.startswith("-"):
            self.warn(f"negative number '{text}'", pos)
            return None
        round_up = False
        dot = text.find(".")
        num_dp = len(text) - dot - 1 if dot >= 0 else 0
        if num_dp > 6:
            self.warn(f"number '{text}' has too many decimal places", pos)
            round_up = text[dot + 7] >= "5"
            num_dp = 6
        digits = text[:dot] + text[dot + 1:dot + 1 + num_dp] if dot >= 0 else text
        digits += "0" * (6 - num_dp)
        value, rest, _ = strtoul(digits)
        value += round_up
        if rest:
            self.warn(f"invalid number '{text}'", pos)
        elif value > 2 ** 64 - 1:
            self.warn(f"number '{text}' outside unsigned decimal range", pos)
            return None
        elif not lo_us <= value <= hi_us:
            self.warn(f"number '{text}' outside range [{lo_us // 10 ** 6}.{lo_us % 10 ** 6:06d}, "
                      f"{hi_us // 10 ** 6}.{hi_us % 10 ** 6:06d}]", pos)
            return None
        if not lo_us <= value <= hi_us:
            return None
        return value / 10 ** 6

    @staticmethod
    def true_false(text: str) -> bool | None:
        return {"true": True, "on": True, "yes": True,
                "false": False, "off": False, "no": False}.get(text)

    def flag(self, args: list[str], message: str, pos: Pos) -> bool | None:
        """An optional <BOOL> (keepalived's check_true_false, case-sensitive)."""
        if not args:
            return True
        value = self.true_false(args[0])
        if value is None:
            self.warn(message.format(args[0]), pos)
        return value

    def sockaddr(self, ip: str, port: str | None, pos: Pos) -> tuple[Address, int] | None:
        """inet_stosockaddr: the address up to any '-' or '/', the port read as unsigned
        1..65535 (port None or all zeros: port 0)."""
        if port is not None and not port.strip("0"):
            port = None
        port_num = 0
        if port is not None:
            value = self.unsigned(port, 1, 65535, pos)
            if value is None:
                return None
            port_num = value
        addr = parse_address(re.split(r"[-/]", ip, maxsplit=1)[0], ":" in ip)
        if addr is None:
            return None
        return addr, port_num


def parse_address(text: str, v6: bool | None = None) -> Address | None:
    """inet_pton: a plain IPv4 or IPv6 address (no scope, no mask)."""
    if "%" in text:
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if v6 is not None and (addr.version == 6) != v6:
        return None
    return addr


def inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """glibc's inet_aton (what getaddrinfo takes as a numeric IPv4 host): 1 to 4 parts, each
    decimal, 0-octal or 0x-hex, the last filling the remaining bytes ("64" is 0.0.0.64)."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        m = re.fullmatch(r"0[xX]([0-9a-fA-F]*)|0([0-7]*)|([1-9][0-9]*)", part)
        if m is None:
            return None
        values.append(int(m.group(1) or "0", 16) if m.group(1) is not None else
                      int(m.group(2) or "0", 8) if m.group(2) is not None else int(m.group(3)))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for i, v in enumerate(head):
        value |= v << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def script_of(args: list[str], pos: Pos) -> Script:
    return _script(args, pos)


# -- the walk --------------------------------------------------------------------------------


@dataclass(slots=True)
class Item:
    """A line (st is its statement) or a closing brace (st is None)."""

    st: RawStatement | None
    pos: Pos

    @property
    def opens(self) -> bool:
        return self.st is not None and self.st.block is not None


def _end_line(st: RawStatement) -> int:
    """The line of a statement's closing brace, estimated: the line after its last line."""
    if st.block is None:
        return st.pos.line
    end = getattr(st, "end", None)
    if isinstance(end, Pos):
        return end.line
    return max([st.pos.line, *(_end_line(c) for c in st.block)]) + 1


def end_pos(st: RawStatement) -> Pos:
    end = getattr(st, "end", None)
    if isinstance(end, Pos):
        return end
    return Pos(st.pos.file, _end_line(st), 1)


def flatten(statements: tuple[RawStatement, ...]) -> list[Item]:
    items: list[Item] = []
    for st in statements:
        items.append(Item(st, st.pos))
        if st.block is not None:
            items += flatten(st.block)
            items.append(Item(None, end_pos(st)))
    return items


Handler = Callable[["Walk", "Frame", RawStatement], Any]
Closer = Callable[["Walk", "Frame", Pos], None]


@dataclass(frozen=True, slots=True)
class Keyword:
    handler: Handler
    sub: str | None = None  # the context of the block it opens (keepalived's sublevel)
    min_args: int = 0  # fewer: keepalived's fatal "missing a parameter"


KEYWORDS: dict[str, dict[str, Keyword]] = {}


def keyword(ctx: str, *names: str, sub: str | None = None,
            min_args: int = 0) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            KEYWORDS.setdefault(ctx, {})[name] = Keyword(fn, sub, min_args)
        return fn

    return register


def ignore(ctx: str, names: str, min_args: int = 0) -> None:
    """Keywords keepalived knows that halb does not act on (smtp_alert, snmp_name, ...)."""
    for name in names.split():
        KEYWORDS.setdefault(ctx, {})[name] = Keyword(lambda w, f, st: None, None, min_args)


@dataclass(eq=False)
class Frame:
    ctx: str
    obj: Any = None
    on_close: Closer | None = None
    lines: Handler | None = None  # a value block: every line goes here (virtual_server_group)
    depth: int = 0  # skip frames: open braces


class Walk:
    """One top-level block walked through the keyword tables."""

    def __init__(self, reader: Reader, state: Any) -> None:
        self.r = reader
        self.state = state  # the collector (config/keepalived_lvs.py's Collector)

    def warn(self, message: str, pos: Pos | None = None) -> None:
        self.r.warn(message, pos)

    def run(self, root: Frame, items: list[Item]) -> None:
        stack = [root]
        for i, item in enumerate(items):
            if not stack:
                self._top(item)
                continue
            frame = stack[-1]
            if frame.ctx == "skip":
                frame.depth += 1 if item.opens else (-1 if item.st is None else 0)
                if frame.depth == 0:
                    stack.pop()
                continue
            if item.st is None:
                stack.pop()
                if frame.on_close is not None:
                    frame.on_close(self, frame, item.pos)
                continue
            nxt = items[i + 1].pos if i + 1 < len(items) else item.pos
            child = self._statement(frame, item.st, nxt)
            if child is not None:
                stack.append(child)
        while stack:  # the file ended inside the block: keepalived closes it
            frame = stack.pop()
            if frame.on_close is not None and frame.ctx != "skip":
                frame.on_close(self, frame, items[-1].pos if items else root_pos(root))

    def _top(self, item: Item) -> None:
        """A line after the block was closed early: keepalived reads it at top level, where
        only the top-level keywords (already read by config/keepalived.py) are known."""
        if item.st is None:
            self.warn("Unknown keyword '}'", item.pos)
            return
        self.warn(f"Unknown keyword '{item.st.name}'", item.pos)
        if item.opens:
            self.warn("Unexpected '{' - ignoring", item.pos)

    def _statement(self, frame: Frame, st: RawStatement, nxt: Pos) -> Frame | None:
        if frame.lines is not None:
            frame.lines(self, frame, st)
            return None
        kw = KEYWORDS.get(frame.ctx, {}).get(st.name)
        if kw is None:
            self.warn(f"Unknown keyword '{st.name}'", st.pos)
            if st.block is not None:
                self.warn("Unexpected '{' - ignoring", st.pos)
            return None
        if len(st.args) < kw.min_args:
            raise FatalConfigError(
                f"*** Configuration line starting `{st.name}` is missing a parameter after "
                f"keyword `{st.name}` at word position {len(st.args) + 2}", st.pos,
                list(self.r.warnings))
        if st.block is not None and kw.sub is None:
            self.warn("Unexpected '{' - ignoring", st.pos)
        child = kw.handler(self, frame, st)
        if kw.sub is None:
            return None
        if st.block is None:
            if child is SKIP:
                return None
            self.warn("Missing '{' at beginning of configuration block", nxt)
        if child is SKIP or child is None:
            return Frame("skip", depth=1) if st.block is not None else Frame("discard")
        assert isinstance(child, Frame)
        return child


def root_pos(frame: Frame) -> Pos:
    pos = getattr(frame.obj, "pos", None)
    return pos if isinstance(pos, Pos) else Pos("", 0)


# -- virtual_server_group --------------------------------------------------------------------


def vsg_entry(w: Walk, f: Frame, st: RawStatement) -> None:
    """alloc_vsg_entry: `IP[-END|/MASK] [PORT]` or `fwmark N [inet|inet6]`."""
    vsg: PVsg = f.obj
    words = [st.name, *st.args]
    pos = st.pos
    if words[0] == "fwmark":
        text = words[1] if len(words) > 1 else ""
        mark = w.r.unsigned(text, 0, UINT, pos)
        if mark is None:
            w.warn(f"({vsg.name}): fwmark '{text}' must be in [0, {UINT}] - ignoring", pos)
            return
        family = None
        if len(words) > 2:
            family = {"inet": 4, "inet6": 6}.get(words[2])
            if family is None:
                w.warn(f"({vsg.name}): fwmark '{mark}' family {words[2]} unknown - ignoring", pos)
                return
            vsg.have4 |= family == 4
            vsg.have6 |= family == 6
        else:
            vsg.fwmark_no_family = True
        vsg.entries.append(PVsgEntry(pos, fwmark=mark, fwmark_family=family))
        return
    addr_str = words[0]
    port = words[1] if len(words) > 1 and words[1].strip("0") else None
    sa = w.r.sockaddr(addr_str, port, pos)
    if sa is None:
        shown = f"/port/{port}" if port else ""
        w.warn(f"Invalid virtual server group IP address {addr_str} {shown} - skipping", pos)
        return
    start, port_num = sa
    end = start
    if "/" in addr_str:
        mask_text = addr_str.split("/", 1)[1]
        mask, rest, _ = strtoul(mask_text)
        bits = start.max_prefixlen
        if rest or not mask or mask > bits:
            w.warn(f"Invalid netmask - {addr_str} - skipping", pos)
            return
        host = (1 << (bits - mask)) - 1
        if int(start) & host:
            w.warn(f"Address mask bits not empty - {addr_str} - skipping", pos)
            return
        end = ipaddress.ip_address(int(start) | host)
    elif "-" in addr_str:
        end_text = addr_str.split("-", 1)[1]
        if ("." if start.version == 4 else ":") in end_text:
            parsed = parse_address(end_text)
            if parsed is None:
                w.warn(f"Invalid range end {addr_str} - skipping", pos)
                return
            if parsed.version != start.version:
                w.warn(f"Range address families do not match {addr_str} - skipping", pos)
                return
            if int(parsed) < int(start):
                w.warn(f"Address range end is less than address range start - {addr_str} - "
                       "skipping", pos)
                return
            end = parsed
        else:
            value, rest, _ = strtoul(end_text, 16 if start.version == 6 else 10)
            if rest:
                w.warn(f"Virtual server group range '{addr_str}' has extra characters at end "
                       f"'{rest}'", pos)
                return
            if value > (0xFFFF if start.version == 6 else 255):
                w.warn(f"Virtual server group range '{addr_str}' end '{end_text}' too large", pos)
                return
            low = 0xFFFF if start.version == 6 else 0xFF
            if (int(start) & low) >= value:
                w.warn("Address range end is not greater than address range start - "
                       f"{addr_str} - skipping", pos)
                return
            end = ipaddress.ip_address((int(start) & ~low) | value)
    vsg.entries.append(PVsgEntry(pos, start, end, port_num))
    vsg.have4 |= start.version == 4
    vsg.have6 |= start.version == 6


def vsg_end(w: Walk, f: Frame, pos: Pos) -> None:
    vsg: PVsg = f.obj
    if not vsg.entries:
        w.warn(f"virtual server group {vsg.name} has no entries - removing", pos)
    elif vsg.have4 and vsg.have6 and vsg.fwmark_no_family:
        w.warn(f"virtual server group {vsg.name} cannot have IPv4, IPv6 and fwmark without "
               "family - removing", pos)
    else:
        w.state.groups.append(vsg)


# -- SSL -------------------------------------------------------------------------------------


@keyword("ssl", "password", "ca", "certificate", "key")
def _ssl_file(w: Walk, f: Frame, st: RawStatement) -> None:
    ssl: PSsl = f.obj
    kind = {"password": "password", "ca": "cafile", "certificate": "certfile",
            "key": "keyfile"}[st.name]
    if not st.args:
        w.warn(f"SSL {kind} missing", st.pos)
        return
    attr = st.name
    if getattr(ssl, attr) is not None:
        w.warn(f"SSL {kind} already specified - replacing", st.pos)
    setattr(ssl, attr, st.args[0])
