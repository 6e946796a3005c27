"""The checker blocks of a real_server: TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK (PURE).

Keywords, ranges and messages are keepalived 2.2.7's (check_api.c's common keywords,
check_tcp.c, check_http.c, check_misc.c). One addition: TCP_CHECK also takes the old
`nb_get_retry` as HTTP_GET does (keepalived 2.2.7 reports "Unknown keyword 'nb_get_retry'" there
and keeps retry 1; configurations written for older keepalived, such as the seeds', mean the
retry count), with keepalived's deprecation warning.

keepalived's other checkers (SMTP_CHECK, DNS_CHECK, PING_CHECK, UDP_CHECK, FILE_CHECK,
BFD_CHECK) are read and dropped with a logged note: halb does not run them.
"""

from __future__ import annotations

from typing import Any

from halb.config.errors import Pos
from halb.config.keepalived_lvs_model import HTTP_GET, MISC_CHECK, SSL_GET, TCP_CHECK
from halb.config.keepalived_lvs_parse import (
    KEYWORDS,
    SKIP,
    UINT,
    Frame,
    Handler,
    Keyword,
    PCheck,
    PUrl,
    Walk,
    keyword,
    parse_address,
    script_of,
    strtoul,
)
from halb.config.keepalived_lvs_vs import rs_of
from halb.config.keepalived_model import RawStatement

CONNECTION = ("tcp", "http")
ALL = ("tcp", "http", "misc")
IFNAMSIZ = 16


def _new(w: Walk, f: Frame, st: RawStatement, kind: str, ctx: str) -> Frame:
    vs, rs = rs_of(f)
    check = PCheck(kind, st.pos, has_co=kind != MISC_CHECK,
                   connect_ip=rs.address, connect_port=rs.port)
    if kind in (HTTP_GET, SSL_GET):
        check.default_dbr = 3.0
    if kind == MISC_CHECK:
        check.default_retry = 0
    rs.checkers.append(check)
    return Frame(ctx, (vs, rs, check), on_close=_END[ctx])


def check_of(frame: Frame) -> PCheck:
    check = frame.obj[2]
    assert isinstance(check, PCheck)
    return check


@keyword("rs", TCP_CHECK, sub="tcp")
def _tcp_check(w: Walk, f: Frame, st: RawStatement) -> Frame:
    return _new(w, f, st, TCP_CHECK, "tcp")


@keyword("rs", HTTP_GET, SSL_GET, sub="http")
def _http_get(w: Walk, f: Frame, st: RawStatement) -> Frame:
    return _new(w, f, st, st.name, "http")


@keyword("rs", MISC_CHECK, sub="misc")
def _misc_check(w: Walk, f: Frame, st: RawStatement) -> Frame:
    return _new(w, f, st, MISC_CHECK, "misc")


def _unsupported(w: Walk, f: Frame, st: RawStatement) -> Any:
    w.r.info(f"{st.name} is not supported by halb - ignoring", st.pos)
    return SKIP


for _name in ("SMTP_CHECK", "DNS_CHECK", "PING_CHECK", "UDP_CHECK", "FILE_CHECK", "BFD_CHECK"):
    KEYWORDS["rs"][_name] = Keyword(_unsupported, "unsupported")


def _conn_ok(w: Walk, check: PCheck, pos: Pos) -> bool:
    """check_conn_opts: a link-local IPv6 destination needs bind_if."""
    dst = check.connect_ip
    if dst is not None and dst.version == 6 and dst.is_link_local and not check.bind_if:
        w.warn(f"Checker link local address {dst} requires a bind_if", pos)
        return False
    return True


def _dequeue(f: Frame) -> None:
    check_of(f).removed = True


def _tcp_end(w: Walk, f: Frame, pos: Pos) -> None:
    if not _conn_ok(w, check_of(f), pos):
        _dequeue(f)


def _http_end(w: Walk, f: Frame, pos: Pos) -> None:
    check = check_of(f)
    if not check.urls:
        w.warn("HTTP/SSL_GET checker has no urls specified - ignoring", pos)
        _dequeue(f)
    if not _conn_ok(w, check, pos):
        _dequeue(f)


def _misc_end(w: Walk, f: Frame, pos: Pos) -> None:
    check = check_of(f)
    if check.removed:
        return
    if not check.misc_path:
        w.warn("No script path has been specified for MISC_CHECKER - skipping", pos)
        _dequeue(f)


_END = {"tcp": _tcp_end, "http": _http_end, "misc": _misc_end}


# -- keywords common to the checkers (install_checker_common_keywords) ------------------------


def _common(names: str, contexts: tuple[str, ...], min_args: int = 1) -> Any:
    def register(fn: Handler) -> Handler:
        for ctx in contexts:
            for name in names.split():
                KEYWORDS.setdefault(ctx, {})[name] = Keyword(fn, None, min_args)
        return fn

    return register


@_common("connect_ip", CONNECTION)
def _connect_ip(w: Walk, f: Frame, st: RawStatement) -> None:
    # as keepalived, a bad address leaves the destination without a family: such a checker
    # cannot open its socket and never changes the server's state
    check = check_of(f)
    addr = parse_address(st.args[0], ":" in st.args[0])
    check.connect_ip = addr
    if addr is None:
        w.warn(f"Invalid connect_ip address {st.args[0]} - ignoring", st.pos)
    elif check.bindto is not None and check.bindto.version != addr.version:
        w.warn(f"connect_ip address {st.args[0]} does not match address family of bindto - "
               "skipping", st.pos)
        check.connect_ip = None


@_common("connect_port bind_port", CONNECTION)
def _port(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.unsigned(st.args[0], 1, 65535, st.pos)
    if v is None:
        w.warn(f"Invalid checker {st.name} '{st.args[0]}'", st.pos)
    elif st.name == "connect_port":
        check_of(f).connect_port = v
    else:
        check_of(f).bind_port = v


@_common("bindto", CONNECTION)
def _bindto(w: Walk, f: Frame, st: RawStatement) -> None:
    check = check_of(f)
    addr = parse_address(st.args[0], ":" in st.args[0])
    check.bindto = None  # as keepalived: a bad bindto leaves none
    if addr is None:
        w.warn(f"Invalid bindto address {st.args[0]} - ignoring", st.pos)
    elif check.connect_ip is not None and check.connect_ip.version != addr.version:
        w.warn(f"bindto address {st.args[0]} does not match address family of connect_ip - "
               "skipping", st.pos)
    else:
        check.bindto = addr


@_common("bind_if", CONNECTION)
def _bind_if(w: Walk, f: Frame, st: RawStatement) -> None:
    if len(st.args[0]) > IFNAMSIZ - 1:
        w.warn(f"Interface name {st.args[0]} is too long - ignoring", st.pos)
    else:
        check_of(f).bind_if = st.args[0]


@_common("connect_timeout", CONNECTION)
def _connect_timeout(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.timer(st.args[0], 1, UINT, st.pos)
    if v is None:
        w.warn(f"connect_timeout {st.args[0]} invalid - ignoring", st.pos)
    else:
        check_of(f).connect_timeout = v


@_common("fwmark", CONNECTION)
def _fwmark(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.unsigned(st.args[0], 0, UINT, st.pos)
    if v is None:
        w.warn(f"Invalid fwmark connection value '{st.args[0]}'", st.pos)
    else:
        check_of(f).fwmark = v


@_common("retry", ALL)
def _retry(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.unsigned(st.args[0], 0, UINT, st.pos)
    if v is None:
        w.warn(f"Invalid retry connection value '{st.args[0]}'", st.pos)
    else:
        check_of(f).retry = v


@_common("nb_get_retry", ("tcp", "http"))
def _nb_get_retry(w: Walk, f: Frame, st: RawStatement) -> None:
    w.warn("nb_get_retry is deprecated - please use 'retry'", st.pos)
    v = w.r.unsigned(st.args[0], 0, UINT, st.pos)
    if v is None:
        w.warn(f"Invalid nb_get_retry value '{st.args[0]}'", st.pos)
    else:
        check_of(f).retry = v


def _checker_timer(attr: str, lo: int, message: str) -> Handler:
    def handler(w: Walk, f: Frame, st: RawStatement) -> None:
        v = w.r.timer(st.args[0], lo, 0, st.pos)
        if v is None:
            w.warn(message.format(st.args[0]), st.pos)
        else:
            setattr(check_of(f), attr, v)

    return handler


for _ctx in ALL:
    KEYWORDS[_ctx].update({
        "delay_before_retry": Keyword(_checker_timer(
            "dbr", 0, "Invalid delay_before_retry connection value '{}'"), None, 1),
        "warmup": Keyword(_checker_timer(
            "warmup", 0, "Invalid warmup connection value '{}'"), None, 1),
        "delay_loop": Keyword(_checker_timer(
            "delay_loop", 1, "delay_loop '{}' is invalid - ignoring"), None, 1),
    })


@_common("alpha", ALL, 0)
def _alpha(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.flag(list(st.args), "Invalid alpha parameter {}", st.pos)
    if v is not None:
        check_of(f).alpha = v


@_common("log_all_failures", ALL, 0)
def _log_all(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.flag(list(st.args), "Invalid log_all_failures parameter {}", st.pos)
    if v is not None:
        check_of(f).log_all = v


# -- HTTP_GET / SSL_GET ----------------------------------------------------------------------


@keyword("http", "virtualhost")
def _http_virtualhost(w: Walk, f: Frame, st: RawStatement) -> None:
    if not st.args:
        w.warn("HTTP_GET virtualhost name missing", st.pos)
    else:
        check_of(f).virtualhost = st.args[0]


@keyword("http", "http_protocol")
def _http_protocol(w: Walk, f: Frame, st: RawStatement) -> None:
    if not st.args:
        w.warn("Missing http_protocol version", st.pos)
        return
    version = {"1.0": "1.0", "1.1": "1.1", "1.0C": "1.0C", "1.0c": "1.0C"}.get(st.args[0])
    if version is None:
        w.warn(f"Invalid http_protocol version {st.args[0]}", st.pos)
    else:
        check_of(f).http_protocol = version


@keyword("http", "enable_sni", "fast_recovery")
def _http_flag(w: Walk, f: Frame, st: RawStatement) -> None:
    v = w.r.flag(list(st.args), f"Invalid {st.name} parameter {{}}", st.pos)
    if v is not None:
        setattr(check_of(f), st.name, v)


@keyword("http", "url", sub="url")
def _url(w: Walk, f: Frame, st: RawStatement) -> Frame:
    url = PUrl(st.pos)
    check_of(f).urls.append(url)
    return Frame("url", (*f.obj, url), on_close=_url_end)


def url_of(frame: Frame) -> PUrl:
    url = frame.obj[3]
    assert isinstance(url, PUrl)
    return url


def _url_end(w: Walk, f: Frame, pos: Pos) -> None:
    url = url_of(f)
    if url.path is None:
        w.warn("HTTP/SSL_GET checker url has no path - ignoring", pos)
        check_of(f).urls.remove(url)
        return
    if not url.status:
        url.status = set(range(200, 300))


@keyword("url", "path", min_args=1)
def _path(w: Walk, f: Frame, st: RawStatement) -> None:
    url_of(f).path = st.args[0]


def _hex_byte(pair: str) -> int | None:
    value, rest, ok = strtoul(pair, 16)
    return value % 256 if ok and not rest else None


@keyword("url", "digest", min_args=1)
def _digest(w: Walk, f: Frame, st: RawStatement) -> None:
    url, digest = url_of(f), st.args[0]
    if url.digest is not None:
        w.warn(f"Digest '{digest}' is a duplicate", st.pos)
        return
    if len(digest) != 32:
        w.warn(f"digest '{digest}' character length should be 32 rather than {len(digest)}",
               st.pos)
        return
    out = bytearray(16)
    for i in range(15, -1, -1):  # keepalived reads it from the end, truncating as it goes
        value = _hex_byte(digest[2 * i:2 * i + 2])
        if value is None:
            w.warn(f"Unable to interpret hex digit in '{digest[:2 * i + 2]}' at offset "
                   f"{2 * i}/{2 * i + 1}", st.pos)
            return
        out[i] = value
    url.digest = out.hex()


@keyword("url", "status_code")
def _status_code(w: Walk, f: Frame, st: RawStatement) -> None:
    url = url_of(f)
    for text in st.args:
        lo, rest, _ = strtoul(text)
        hi = lo
        if rest.startswith("-"):
            hi, rest, _ = strtoul(rest[1:])
        if rest or not 100 <= lo <= 599 or not 100 <= hi <= 599 or lo > hi:
            w.warn(f"Invalid HTTP_GET status code '{text}'", st.pos)
            continue
        url.status.update(range(lo, hi + 1))


@keyword("url", "virtualhost")
def _url_virtualhost(w: Walk, f: Frame, st: RawStatement) -> None:
    if not st.args:
        w.warn("Missing HTTP_GET virtualhost name", st.pos)
    else:
        url_of(f).virtualhost = st.args[0]


@keyword("url", "regex")
def _regex(w: Walk, f: Frame, st: RawStatement) -> None:
    if len(st.args) == 1:
        url_of(f).regex = st.args[0]


KEYWORDS["url"].update({name: Keyword(lambda w, f, st: None) for name in (
    "regex_no_match", "regex_options", "regex_min_offset", "regex_max_offset", "regex_stack")})


# -- MISC_CHECK ------------------------------------------------------------------------------


@keyword("misc", "misc_path")
def _misc_path(w: Walk, f: Frame, st: RawStatement) -> None:
    check = check_of(f)
    if check.removed or not st.args:
        return
    check.misc_path = script_of([st.args[0]], st.pos).argv


@keyword("misc", "misc_timeout", min_args=1)
def _misc_timeout(w: Walk, f: Frame, st: RawStatement) -> None:
    check = check_of(f)
    if check.removed:
        return
    v = w.r.unsigned(st.args[0], 0, UINT // 1_000_000, st.pos)
    if v is None:
        w.warn(f"Invalid misc_timeout value '{st.args[0]}'", st.pos)
    else:
        check.misc_timeout = float(v)


@keyword("misc", "misc_dynamic")
def _misc_dynamic(w: Walk, f: Frame, st: RawStatement) -> None:
    check = check_of(f)
    if not check.removed:
        check.misc_dynamic = True


@keyword("misc", "user")
def _misc_user(w: Walk, f: Frame, st: RawStatement) -> None:
    check = check_of(f)
    if check.removed:
        return
    shown = " ".join(check.misc_path)
    if not st.args:
        w.warn(f"No user specified for misc checker script {shown}", st.pos)
        return
    group = st.args[1] if len(st.args) > 1 else None
    if w.r.lookup_user is not None and not w.r.lookup_user(st.args[0], group):
        w.warn(f"Failed to set uid/gid for misc checker script {shown} - removing", st.pos)
        check.removed = True
        return
    check.user, check.group = st.args[0], group
