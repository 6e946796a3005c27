"""Virtual server and location selection, as nginx does it (PURE).

Owns:
- `validate_host`: ngx_http_validate_host (Host header / absolute-URI host → $host, or invalid).
- `ListenTable`: which sockets to bind and which servers a connection's local addr:port selects
  (ngx_http_add_listen / ngx_http_init_listening: a wildcard socket per (family, port) serves
  every specific address of that port that has no `bind`).
- `ServerTable`: server_name lookup for one addr:port (ngx_http_find_virtual_server: exact name,
  longest leading wildcard, longest trailing wildcard, first regex, else the default server).
- `find_location` / `find_named`: ngx_http_core_find_location and
  ngx_http_core_find_static_location, including auto_redirect, "=" and prefix locations of the
  same name, `^~`, nested locations and the order in which regexes are tried.

Everything per request is a few dict lookups over tables built once per configuration.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from halb.config.model import Http, Listen, Location, Server

__all__ = ["EMPTY", "ListenTable", "LocationMatch", "ServerMatch", "ServerTable",
           "find_location", "find_named", "validate_host"]

EMPTY: Mapping[str, str | None] = MappingProxyType({})


def _empty() -> Mapping[str, str | None]:
    return EMPTY


# -- hosts -----------------------------------------------------------------------------------

_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_PLAIN_HOST = re.compile(r"[A-Za-z0-9_.-]+(?::[0-9]*)?")


def validate_host(host: str) -> str | None:
    """$host from a Host header or request-line host: the ":port" cut off, one trailing "."
    dropped, ASCII lower-cased; None when nginx answers 400.

    Invalid: empty (after the cuts), ".." anywhere (the port included), "/", a control character
    or a space. As nginx 1.22 on Unix, a leading ".", "\\" and a "[" without "]" are accepted
    ("[::1" stays "[::1"); "[::1]:80" is "[::1]".
    """
    if _PLAIN_HOST.fullmatch(host) is not None and ".." not in host:  # the common case
        colon = host.find(":")
        out = host if colon < 0 else host[:colon]
        return (out[:-1] if out.endswith(".") else out).lower() or None
    if not host:
        return None
    host_len = len(host)
    dot_pos = -2
    literal = False
    cut = False
    for i, ch in enumerate(host):
        if ch == ".":
            if dot_pos == i - 1:
                return None
            dot_pos = i
        elif ch == ":":
            if not cut and not literal:
                host_len = i
                cut = True
        elif ch == "[":
            if i == 0:
                literal = True
        elif ch == "]":
            if literal and not cut:
                host_len = i + 1
                cut = True
                literal = False
        elif ch == "/" or ch <= " " or ch == "\x7f":
            return None
    if dot_pos == host_len - 1:
        host_len -= 1
    if host_len <= 0:
        return None
    out = host[:host_len]
    return out.lower() if out.isascii() else out.translate(_ASCII_LOWER)


# -- locations -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocationMatch:
    location: Location | None  # None: nothing matched (the server-level config applies)
    captures: tuple[str | None, ...] = ()  # regex groups: captures[0] is $1
    named: Mapping[str, str | None] = field(default_factory=_empty)  # named groups
    redirect: bool = False  # auto_redirect: answer 301 to uri + "/"


NO_LOCATION = LocationMatch(None)

# ngx_http_core_find_static_location / ngx_http_core_find_location return codes
_OK, _AGAIN, _DONE, _DECLINED = 0, 1, 2, 3


class _Entry:
    """One location with what a lookup needs, built once."""

    __slots__ = ("child", "loc", "match", "noregex", "redirect_match")

    def __init__(self, loc: Location) -> None:
        self.loc = loc
        self.noregex = loc.noregex
        self.match = LocationMatch(loc)
        self.redirect_match = LocationMatch(loc, redirect=True)
        # nginx builds no static tree inside a regex location (ngx_http_init_locations splits
        # the regexes off before ngx_http_init_static_location_trees recurses): only its nested
        # regexes are ever tried
        children = loc.children if loc.regex is None else tuple(
            c for c in loc.children if c.regex is not None)
        self.child = _Level(children) if children else None


class _Level:
    """The locations of one level: nginx's static tree as dicts, and the regexes in order."""

    __slots__ = ("lengths", "nodes", "prefixes", "redirects", "regexes", "src")

    def __init__(self, locations: Sequence[Location]) -> None:
        self.src = locations
        exact: dict[str, _Entry] = {}
        prefix: dict[str, _Entry] = {}
        regexes: list[tuple[re.Pattern[str], _Entry]] = []
        for loc in locations:
            if loc.named:
                continue
            if loc.regex is not None:
                regexes.append((loc.regex, _Entry(loc)))
            elif loc.exact:
                exact.setdefault(loc.name, _Entry(loc))
            else:
                prefix.setdefault(loc.name, _Entry(loc))
        # a name equal to the URI: the "=" location wins, else the prefix one (NGX_AGAIN)
        nodes: dict[str, tuple[int, _Entry]] = {n: (_AGAIN, e) for n, e in prefix.items()}
        nodes.update((n, (_OK, e)) for n, e in exact.items())
        # a URI one character shorter than an auto_redirect name: the "=" one, else the prefix
        redirects: dict[str, _Entry] = {}
        for name, (_, first) in nodes.items():
            pre = prefix.get(name)
            if name and (first.loc.auto_redirect or (pre is not None and pre.loc.auto_redirect)):
                redirects.setdefault(name[:-1], first)
        self.nodes = nodes
        self.prefixes = prefix
        self.lengths = tuple(sorted({len(n) for n in prefix}, reverse=True))
        self.redirects = redirects
        self.regexes = tuple((rx.search, e) for rx, e in regexes)


def _find(level: _Level, uri: str) -> tuple[int, _Entry | None, tuple[re.Match[str], ...]]:
    """ngx_http_core_find_location: (rc, the location chosen or None, regex matches outer→inner)."""
    # ngx_http_core_find_static_location: an equal name returns at once; otherwise an
    # auto_redirect candidate (always longer than any prefix of the URI) beats the longest prefix
    node = level.nodes.get(uri)
    if node is not None:
        rc, entry = node
        if rc == _OK:
            return _OK, entry, ()
    else:
        entry = level.redirects.get(uri) if level.redirects else None
        if entry is not None:
            return _DONE, entry, ()
        rc = _DECLINED
        n = len(uri)
        for ln in level.lengths:
            if ln < n:
                entry = level.prefixes.get(uri[:ln])
                if entry is not None:
                    rc = _AGAIN
                    break
    noregex = False
    if entry is not None:  # NGX_AGAIN: look up the nested locations
        noregex = entry.noregex
        rc = _DECLINED
        if entry.child is not None:
            rc, inner, ms = _find(entry.child, uri)
            if inner is not None:
                entry = inner
            if rc in (_OK, _DONE):
                return rc, entry, ms
    if not noregex:
        for search, rentry in level.regexes:
            m = search(uri)
            if m is not None:
                if rentry.child is not None:  # its nested regexes
                    _, inner, ms = _find(rentry.child, uri)
                    if inner is not None:
                        return _OK, inner, (m, *ms)
                return _OK, rentry, (m,)
    return rc, entry, ()


_LEVELS: dict[int, _Level] = {}
_LEVELS_MAX = 4096


def _level_for(locations: Sequence[Location]) -> _Level:
    level = _LEVELS.get(id(locations))
    if level is None or level.src is not locations:
        if len(_LEVELS) >= _LEVELS_MAX:
            _LEVELS.clear()
        level = _LEVELS[id(locations)] = _Level(locations)
    return level


def find_location(locations: Sequence[Location], uri: str) -> LocationMatch:
    """The location for a normalized URI among a server's (top-level) locations.

    captures are the groups of the last regex that matched (a nested regex without groups
    empties them, as in nginx); named groups accumulate from the outer regex inward.
    """
    if not locations:
        return NO_LOCATION
    rc, entry, ms = _find(_level_for(locations), uri)
    if entry is None:
        return NO_LOCATION
    if rc == _DONE:
        return entry.redirect_match
    if not ms:
        return entry.match
    last = ms[-1]
    captures = last.groups()
    named: Mapping[str, str | None] = EMPTY
    for m in ms:
        if m.re.groupindex:
            named = m.groupdict() if named is EMPTY else {**named, **m.groupdict()}
    if not captures and named is EMPTY:
        return entry.match
    return LocationMatch(entry.loc, captures, named)


def find_named(server: Server, name: str) -> Location | None:
    """The named location "@name" of a server (try_files, error_page targets)."""
    return server.named_locations.get(name)


# -- virtual servers -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerMatch:
    server: Server
    captures: tuple[str | None, ...] = ()
    named: Mapping[str, str | None] = field(default_factory=_empty)


class ServerTable:
    """The virtual servers of one listen addr:port and their server_name tables."""

    __slots__ = ("_default", "_exact", "_lead", "_regex", "_trail", "addr", "default", "port",
                 "servers")

    def __init__(self, servers: Sequence[Server], addr: str, port: int) -> None:
        if not servers:
            raise ValueError(f"no server for {addr}:{port}")
        self.servers = tuple(servers)
        self.addr = addr
        self.port = port
        key = (addr, port)
        self.default = next((s for s in servers for ls in s.listens
                             if ls.key == key and ls.default_server), servers[0])
        self._default = ServerMatch(self.default)
        # None in _exact: a name nginx reserved but does not match (a ".x" that lost to "*.x")
        exact: dict[str, ServerMatch | None] = {}
        lead: dict[str, ServerMatch] = {}
        trail: dict[str, ServerMatch] = {}
        regex: list[tuple[re.Pattern[str], ServerMatch]] = []
        for srv in servers:
            sm = ServerMatch(srv)
            names = srv.names
            i = 0
            while i < len(names):
                sn = names[i]
                nxt = names[i + 1] if i + 1 < len(names) else None
                if (sn.kind == "exact" and nxt is not None and nxt.kind == "lead"
                        and nxt.raw == sn.raw and sn.raw.startswith(".")):
                    # ".example.org" is one key in nginx: it conflicts as a whole with an
                    # earlier "example.org", and with an earlier "*.example.org" it keeps the
                    # exact name reserved yet matching nothing
                    i += 2
                    if sn.name in exact:
                        continue
                    if nxt.name in lead:
                        exact[sn.name] = None
                        continue
                    exact[sn.name] = sm
                    lead[nxt.name] = sm
                    continue
                i += 1
                if sn.kind == "regex":
                    assert sn.regex is not None
                    regex.append((sn.regex, sm))
                elif sn.kind == "lead":
                    lead.setdefault(sn.name, sm)
                elif sn.kind == "trail":
                    trail.setdefault(sn.name, sm)
                else:
                    exact.setdefault(sn.name, sm)
        self._exact = exact
        self._lead = lead
        self._trail = trail
        self._regex = tuple(regex)

    def find(self, host: str) -> ServerMatch:
        """The server for a validated, lower-cased host ("" when the request has none)."""
        sm = self._exact.get(host)
        if sm is not None:
            return sm
        if self._lead:  # "*.example.org" is stored as ".example.org": longest suffix first
            lead = self._lead
            i = host.find(".")
            while i >= 0:
                sm = lead.get(host[i:])
                if sm is not None:
                    return sm
                i = host.find(".", i + 1)
        if self._trail:  # "mail.*" is stored as "mail.": longest prefix first
            trail = self._trail
            i = host.rfind(".")
            while i >= 0:
                sm = trail.get(host[:i + 1])
                if sm is not None:
                    return sm
                i = host.rfind(".", 0, i)
        if host:
            for rx, sm in self._regex:
                m = rx.search(host)
                if m is not None:
                    if not rx.groups:
                        return sm
                    return ServerMatch(sm.server, m.groups(),
                                       m.groupdict() if rx.groupindex else EMPTY)
        return self._default


def _family(addr: str) -> str:
    if addr.startswith("unix:"):
        return "unix"
    return "inet6" if ":" in addr else "inet"


def _has_socket_options(ls: Listen) -> bool:
    # nginx sets `bind` for every socket option (backlog=, rcvbuf=, reuseport, ipv6only=, ...)
    return ls.bind or ls.reuseport or ls.backlog != 511


class ListenTable:
    """The listening sockets of the http block and the server tables behind them."""

    __slots__ = ("_binds", "_tables")

    def __init__(self, http: Http) -> None:
        groups: dict[tuple[str, int], list[Server]] = {}
        listens: dict[tuple[str, int], list[Listen]] = {}
        for srv in http.servers:
            for ls in srv.listens:
                group = groups.setdefault(ls.key, [])
                if not group or group[-1] is not srv:
                    group.append(srv)
                listens.setdefault(ls.key, []).append(ls)
        self._tables = {key: ServerTable(srvs, *key) for key, srvs in groups.items()}
        wild_ports = {(_family(a), p) for a, p in listens if a in ("*", "::")}
        binds: list[Listen] = []
        for (addr, port), lss in listens.items():
            chosen = next((ls for ls in lss if _has_socket_options(ls)), lss[0])
            if any(ls.default_server for ls in lss) and not chosen.default_server:
                chosen = replace(chosen, default_server=True)
            if (addr in ("*", "::") or addr.startswith("unix:")
                    or (_family(addr), port) not in wild_ports
                    or _has_socket_options(chosen)):
                binds.append(chosen)
        self._binds = binds

    def bind_list(self) -> list[Listen]:
        """The sockets to bind, in configuration order: the wildcard of a (family, port) when
        there is one plus the specific addresses with socket options, else every address."""
        return list(self._binds)

    def lookup(self, addr: str, port: int) -> ServerTable:
        """The servers for a connection accepted on local addr:port (("unix:/path", 0) for a
        unix socket): the ones listening on exactly that address, else on the wildcard."""
        table = self._tables.get((addr, port))
        if table is None:
            table = self._tables.get(("::" if ":" in addr else "*", port))
            if table is None:
                raise KeyError(f"no server listens on {addr}:{port}")
        return table

    def tables(self) -> list[ServerTable]:
        """Every addr:port's server table, in configuration order."""
        return list(self._tables.values())
