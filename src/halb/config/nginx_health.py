"""nginx Plus's active health checks in the configuration (PURE): `health_check` and `match`.

    health_check [interval=5s] [jitter=0] [fails=1] [passes=1] [uri=/] [port=N] [match=NAME]
                 [mandatory [persistent]] [type=http];          # in a location
    match NAME { status [!] 200 300-399 ...; header [!] NAME [= | != | ~ | !~ VALUE];
                 body ~ | !~ "REGEX"; }                         # in http

as ngx_http_upstream_hc_module documents them. A `health_check` belongs to the upstream group
of its location's `proxy_pass`; that group must live in a shared `zone` (the one checker of the
server publishes to every worker through it). Several checks of one group all have to pass.

The check request is made once, here: `GET <uri> HTTP/<proxy_http_version>` with the
location's proxy_set_header list over nginx's defaults (Host $proxy_host, Connection close)
where the value is static; as the module documents, variables are empty in health checks, so a
header set from variables is not sent. The location's proxy_connect_timeout / proxy_read_timeout
bound the probe.

nginx Plus's own wording for the errors found when the configuration is complete is not
public; these read like nginx (`... in file:line` of the health_check directive):
`health check requires an upstream zone in upstream "u"`,
`health check requires "proxy_pass" to an upstream group`, `match "m" not found`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from halb.config.errors import ConfigError, Pos
from halb.config.lexer import Statement
from halb.config.model import Upstream
from halb.config.nginx import ANYARGS, HTTP, LOC, NOARGS, TAKE1, Block, Builder, directive
from halb.config.nginx_slots import pcre_error
from halb.config.values import parse_time

BODY_LIMIT = 256 * 1024  # "Only the first 256k of the response body are examined."


@dataclass(frozen=True, slots=True)
class StatusTest:
    """`status [!] 200 204 300-399`: the status is (not) one of the codes / ranges."""

    negate: bool
    ranges: tuple[tuple[int, int], ...]

    def __call__(self, status: int) -> bool:
        hit = any(lo <= status <= hi for lo, hi in self.ranges)
        return hit != self.negate


@dataclass(frozen=True, slots=True)
class HeaderTest:
    """`header NAME` (present), `header ! NAME` (absent), `header NAME = | != | ~ | !~ VALUE`
    (some header of that name has that value / another value / matches / does not match)."""

    name: str  # lower case
    op: str  # "" | "!" | "=" | "!=" | "~" | "!~"
    value: str = ""
    regex: re.Pattern[str] | None = None

    def __call__(self, headers: list[tuple[str, str]]) -> bool:
        values = [v for n, v in headers if n.lower() == self.name]
        op = self.op
        if op == "":
            return bool(values)
        if op == "!":
            return not values
        if op == "=":
            return any(v == self.value for v in values)
        if op == "!=":
            return any(v != self.value for v in values)
        assert self.regex is not None
        if op == "~":
            return any(self.regex.search(v) for v in values)
        return any(not self.regex.search(v) for v in values)


@dataclass(frozen=True, slots=True)
class BodyTest:
    """`body ~ RE` / `body !~ RE` over the first 256k of the body."""

    negate: bool
    regex: re.Pattern[str]

    def __call__(self, body: str) -> bool:
        return (self.regex.search(body) is None) == self.negate


@dataclass(frozen=True, slots=True)
class Match:
    """A `match` block: a response passes when it passes every test."""

    name: str
    status: tuple[StatusTest, ...] = ()
    headers: tuple[HeaderTest, ...] = ()
    body: tuple[BodyTest, ...] = ()
    pos: Pos | None = None

    def __call__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> bool:
        if not all(t(status) for t in self.status):
            return False
        if not all(t(headers) for t in self.headers):
            return False
        if self.body:
            text = body[:BODY_LIMIT].decode("utf-8", "surrogateescape")
            return all(t(text) for t in self.body)
        return True


def default_ok(status: int) -> bool:
    """Without `match`: the response must be 2xx or 3xx."""
    return 200 <= status <= 399


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One `health_check` directive, resolved against its location and upstream."""

    upstream: str
    interval: float = 5.0
    jitter: float = 0.0
    fails: int = 1
    passes: int = 1
    uri: str = "/"
    port: int = 0  # 0: the server's port
    match: Match | None = None
    mandatory: bool = False
    persistent: bool = False
    request: bytes = b""
    tls: bool = False
    connect_timeout: float = 60.0
    read_timeout: float = 60.0
    pos: Pos | None = None

    def passed(self, status: int, headers: list[tuple[str, str]], body: bytes) -> bool:
        if self.match is None:
            return default_ok(status)
        return self.match(status, headers, body)


# -- health_check ---------------------------------------------------------------------------


def _positive(v: str) -> int | None:
    return int(v) if v.isdigit() and int(v) > 0 else None


@directive("health_check", LOC, NOARGS | ANYARGS)
def _health_check(b: Builder, blk: Block, st: Statement) -> None:
    opts: dict[str, Any] = {}
    for a in st.args:
        v = a.value
        key, eq, val = v.partition("=")
        bad = ConfigError(f'invalid parameter "{v}"', st.end)
        if key in ("interval", "jitter") and eq:
            t = parse_time(val)
            if t is None or (key == "interval" and t <= 0):
                raise bad
            opts[key] = t
        elif key in ("fails", "passes") and eq:
            n = _positive(val)
            if n is None:
                raise bad
            opts[key] = n
        elif key == "uri" and eq:
            if not val:
                raise bad
            opts["uri"] = val
        elif key == "port" and eq:
            n = _positive(val)
            if n is None or n > 65535:
                raise bad
            opts["port"] = n
        elif key == "match" and eq:
            if not val:
                raise bad
            opts["match"] = val
        elif v == "mandatory":
            opts["mandatory"] = True
        elif v == "persistent":
            if not opts.get("mandatory"):  # `mandatory [persistent]`
                raise bad
            opts["persistent"] = True
        elif key == "type" and eq:
            if val == "grpc":
                raise ConfigError('health check "type=grpc" is not supported', st.end)
            if val != "http":
                raise bad
        else:
            raise bad
    pending: list[tuple[Block, Statement, dict[str, Any]]] = b.__dict__.setdefault(
        "health_checks", [])
    pending.append((blk, st, opts))


# -- match ----------------------------------------------------------------------------------


def _regex(pattern: str, st: Statement) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ConfigError(pcre_error(e, pattern), st.end) from None


def _status(st: Statement) -> StatusTest:
    vals = st.values
    negate = bool(vals) and vals[0] == "!"
    if negate:
        vals = vals[1:]
    if not vals:
        raise ConfigError('invalid number of arguments in "status" directive', st.end)
    ranges = []
    for v in vals:
        lo, dash, hi = v.partition("-")
        if not dash:
            hi = lo
        if not (lo.isdigit() and hi.isdigit() and 100 <= int(lo) <= int(hi) <= 599):
            raise ConfigError(f'invalid status "{v}"', st.end)
        ranges.append((int(lo), int(hi)))
    return StatusTest(negate, tuple(ranges))


_HEADER_OPS = ("=", "!=", "~", "!~")


def _header(st: Statement) -> HeaderTest:
    vals = st.values
    if len(vals) == 1 and vals[0] != "!":
        return HeaderTest(vals[0].lower(), "")
    if len(vals) == 2 and vals[0] == "!":
        return HeaderTest(vals[1].lower(), "!")
    if len(vals) == 3 and vals[1] in _HEADER_OPS:
        op = vals[1]
        rx = _regex(vals[2], st) if op in ("~", "!~") else None
        return HeaderTest(vals[0].lower(), op, vals[2], rx)
    if len(vals) == 3:
        raise ConfigError(f'invalid parameter "{vals[1]}"', st.end)
    raise ConfigError('invalid number of arguments in "header" directive', st.end)


def _body(st: Statement) -> BodyTest:
    vals = st.values
    if len(vals) != 2:
        raise ConfigError('invalid number of arguments in "body" directive', st.end)
    if vals[0] not in ("~", "!~"):
        raise ConfigError(f'invalid parameter "{vals[0]}"', st.end)
    return BodyTest(vals[0] == "!~", _regex(vals[1], st))


@directive("match", HTTP, TAKE1, block=True)
def _match(b: Builder, blk: Block, st: Statement) -> None:
    name = st.args[0].value
    matches: dict[str, Match] = b.__dict__.setdefault("matches", {})
    if name in matches:
        raise ConfigError(f'duplicate match "{name}"', st.end)
    status: list[StatusTest] = []
    headers: list[HeaderTest] = []
    body: list[BodyTest] = []
    assert st.block is not None
    for inner in st.block:
        word = inner.name.value
        if inner.block is not None:
            raise ConfigError(f'directive "{word}" is not terminated by ";"', inner.end)
        if word == "status":
            status.append(_status(inner))
        elif word == "header":
            headers.append(_header(inner))
        elif word == "body":
            body.append(_body(inner))
        elif word == "require":
            raise ConfigError('"require" in "match" is not supported', inner.end)
        else:
            raise ConfigError(f'unknown directive "{word}"', inner.end)
    matches[name] = Match(name, tuple(status), tuple(headers), tuple(body), st.end)


# -- the end of http: each health_check joins its upstream ----------------------------------


def _inherited(blk: Block | None, key: str) -> Any:
    while blk is not None:
        if key in blk.settings:
            return blk.settings[key]
        blk = blk.parent
    return None


def _request(blk: Block, uri: str, proxy_host: str) -> bytes:
    version = _inherited(blk, "proxy_http_version") or "1.0"
    own: list[tuple[str, Any]] = _inherited(blk, "proxy_set_header") or []
    names = {n.lower() for n, _ in own}
    lines = [f"GET {uri} HTTP/{version}\r\n"]
    defaults = [(n, v) for n, v in (("Host", "$proxy_host"), ("Connection", "close"))
                if n.lower() not in names]
    for name, value in (*((n, t.raw) for n, t in own), *defaults):
        if value == "$proxy_host":
            value = proxy_host
        elif "$" in value:
            continue  # variables are empty in health checks: an empty header is not sent
        if value:
            lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1", "replace")


def attach(b: Builder, upstreams: dict[str, Upstream]) -> dict[str, Upstream]:
    """Resolve every health_check against its location's proxy_pass, the group's zone and the
    match blocks; return the upstreams with their checks (in configuration order)."""
    pending: list[tuple[Block, Statement, dict[str, Any]]] = b.__dict__.get("health_checks", [])
    matches: dict[str, Match] = b.__dict__.get("matches", {})
    checks: dict[str, list[HealthCheck]] = {}
    for blk, st, opts in pending:
        pp = blk.settings.get("proxy_pass")
        name = pp.upstream if pp is not None else None
        ups = upstreams.get(name) if name is not None else None
        if ups is None:
            raise ConfigError('health check requires "proxy_pass" to an upstream group',
                              st.end)
        if ups.zone is None:
            raise ConfigError(f'health check requires an upstream zone in upstream "{name}"',
                              st.end)
        match = None
        if "match" in opts:
            match = matches.get(opts["match"])
            if match is None:
                raise ConfigError(f'match "{opts["match"]}" not found', st.end)
        params = {k: v for k, v in opts.items() if k != "match"}
        uri = params.get("uri", "/")
        checks.setdefault(ups.name, []).append(HealthCheck(
            ups.name, match=match, request=_request(blk, uri, pp.host), tls=pp.scheme == "https",
            connect_timeout=_inherited(blk, "proxy_connect_timeout") or 60.0,
            read_timeout=_inherited(blk, "proxy_read_timeout") or 60.0, pos=st.end, **params))
    out = dict(upstreams)
    for name, hcs in checks.items():
        out[name] = dataclasses.replace(out[name], health_checks=tuple(hcs))
    return out


__all__ = ["BODY_LIMIT", "BodyTest", "HeaderTest", "HealthCheck", "Match", "StatusTest",
           "attach", "default_ok"]
