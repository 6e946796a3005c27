"""nginx.conf directives of the ssl, realip and proxy-ssl modules → settings (PURE).

ngx_http_ssl_module: ssl_certificate (several: RSA and ECDSA), ssl_certificate_key,
ssl_protocols, ssl_ciphers, ssl_prefer_server_ciphers, ssl_session_cache, ssl_session_timeout,
ssl_session_tickets, the deprecated `ssl on`, and a few accepted for compatibility
(ssl_ecdh_curve, ssl_dhparam, ssl_buffer_size, ssl_stapling*). ngx_http_realip_module:
set_real_ip_from, real_ip_header, real_ip_recursive. The proxy module's TLS side:
proxy_ssl_server_name, proxy_ssl_name, proxy_ssl_verify, proxy_ssl_trusted_certificate,
proxy_ssl_verify_depth, proxy_ssl_protocols, proxy_ssl_ciphers, proxy_ssl_session_reuse,
proxy_ssl_certificate(_key).

Values go into the block's settings (LocConf.extra after the merge), checked the way nginx
checks them while parsing; certificates are loaded later, by l7/tls.py, because loading them
is I/O (nginx -t reports those errors without file:line, as nginx does).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from halb.config.errors import ConfigError
from halb.config.lexer import Statement
from halb.config.nginx import (
    ANY_HTTP,
    FLAG,
    HTTP,
    ONEMORE,
    SRV,
    TAKE1,
    TAKE12,
    Block,
    Builder,
    directive,
)
from halb.config.nginx_slots import flag_slot
from halb.config.values import parse_size, parse_time

# ngx_ssl_protocols: the names nginx accepts
PROTOCOLS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
DEFAULT_PROTOCOLS = ("TLSv1", "TLSv1.1", "TLSv1.2")  # nginx 1.22 (1.23.4 adds TLSv1.3)
DEFAULT_CIPHERS = "HIGH:!aNULL:!MD5"
DEFAULT_PROXY_CIPHERS = "DEFAULT"
_PAGE = 4096


@dataclass(frozen=True, slots=True)
class SessionCache:
    """ssl_session_cache: off | none | builtin[:size] and/or shared:name:size."""

    mode: str = "none"  # off | none | builtin | shared
    builtin_size: int = 0
    shared_name: str = ""
    shared_size: int = 0


@dataclass(frozen=True, slots=True)
class RealIpFrom:
    """One set_real_ip_from: a network, or "unix:" for connections over unix sockets."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None  # None: unix:


def _text(name: str, contexts: int) -> None:
    def handler(b: Builder, blk: Block, st: Statement) -> None:
        b.set(blk, st, name, st.args[0].value)

    directive(name, contexts, TAKE1)(handler)


def _path(name: str, contexts: int) -> None:
    def handler(b: Builder, blk: Block, st: Statement) -> None:
        b.set(blk, st, name, b.path(st.args[0].value))

    directive(name, contexts, TAKE1)(handler)


def _protocols(b: Builder, st: Statement) -> tuple[str, ...]:
    out: list[str] = []
    for a in st.args:
        if a.value not in PROTOCOLS:  # ngx_conf_set_bitmask_slot
            raise ConfigError(f'invalid value "{a.value}"', st.end)
        out.append(a.value)
    return tuple(out)


# -- the server side ---------------------------------------------------------------------------


@directive("ssl_certificate", HTTP | SRV, TAKE1)
def _ssl_certificate(b: Builder, blk: Block, st: Statement) -> None:
    # several certificates (RSA and ECDSA) each with its key, in order
    blk.settings.setdefault("ssl_certificate", []).append(b.path(st.args[0].value))


@directive("ssl_certificate_key", HTTP | SRV, TAKE1)
def _ssl_certificate_key(b: Builder, blk: Block, st: Statement) -> None:
    blk.settings.setdefault("ssl_certificate_key", []).append(b.path(st.args[0].value))


@directive("ssl", HTTP | SRV, FLAG)
def _ssl(b: Builder, blk: Block, st: Statement) -> None:
    b.set(blk, st, "ssl", st.args[0].value.lower() == "on")
    b.warn('the "ssl" directive is deprecated, use the "listen ... ssl" directive instead',
           st.end)


@directive("ssl_protocols", HTTP | SRV, ONEMORE)
def _ssl_protocols(b: Builder, blk: Block, st: Statement) -> None:
    b.set(blk, st, "ssl_protocols", _protocols(b, st))


@directive("ssl_session_timeout", HTTP | SRV, TAKE1)
def _ssl_session_timeout(b: Builder, blk: Block, st: Statement) -> None:
    t = parse_time(st.args[0].value, allow_ms=False)
    if t is None:
        raise b.err(st, "invalid value")
    b.set(blk, st, "ssl_session_timeout", t)


@directive("ssl_session_cache", HTTP | SRV, TAKE12)
def _ssl_session_cache(b: Builder, blk: Block, st: Statement) -> None:
    """ngx_http_ssl_session_cache."""
    mode, builtin, name, size = "none", 0, "", 0
    for a in st.args:
        v = a.value
        if v == "off":
            mode = "off"
            continue
        if v == "none":
            mode = "none"
            continue
        if v == "builtin":
            mode = "builtin" if mode != "shared" else mode
            builtin = 20480
            continue
        if v.startswith("builtin:"):
            n = v[8:]
            if not n.isdigit():
                raise ConfigError(f'invalid session cache "{v}"', st.end)
            builtin = int(n)
            mode = "builtin" if mode != "shared" else mode
            continue
        if v.startswith("shared:"):
            rest = v[7:]
            zname, colon, zsize = rest.rpartition(":")
            if not colon or not zname:
                raise ConfigError(f'invalid session cache "{v}"', st.end)
            n = parse_size(zsize)
            if n is None:
                raise ConfigError(f'invalid session cache "{v}"', st.end)
            if n < 8 * _PAGE:
                raise ConfigError(f'session cache "{v}" is too small', st.end)
            mode, name, size = "shared", zname, n
            continue
        raise ConfigError(f'invalid session cache "{v}"', st.end)
    b.set(blk, st, "ssl_session_cache", SessionCache(mode, builtin, name, size))


flag_slot("ssl_prefer_server_ciphers", HTTP | SRV)
flag_slot("ssl_session_tickets", HTTP | SRV)
_text("ssl_ciphers", HTTP | SRV)
_text("ssl_ecdh_curve", HTTP | SRV)
_path("ssl_dhparam", HTTP | SRV)
_path("ssl_trusted_certificate", HTTP | SRV)
flag_slot("ssl_stapling", HTTP | SRV)
flag_slot("ssl_stapling_verify", HTTP | SRV)


@directive("ssl_buffer_size", HTTP | SRV, TAKE1)
def _ssl_buffer_size(b: Builder, blk: Block, st: Statement) -> None:
    n = parse_size(st.args[0].value)
    if n is None:
        raise b.err(st, "invalid value")
    b.set(blk, st, "ssl_buffer_size", n)


# -- realip ------------------------------------------------------------------------------------


@directive("set_real_ip_from", ANY_HTTP, TAKE1)
def _set_real_ip_from(b: Builder, blk: Block, st: Statement) -> None:
    """ngx_http_realip_from: "unix:", an address, or a CIDR (halb resolves no host names)."""
    v = st.args[0].value
    items: list[RealIpFrom] = blk.settings.setdefault("set_real_ip_from", [])
    if v == "unix:":
        items.append(RealIpFrom(None))
        return
    if v == "all":
        items.append(RealIpFrom(ipaddress.ip_network("0.0.0.0/0")))
        items.append(RealIpFrom(ipaddress.ip_network("::/0")))
        return
    try:
        net = ipaddress.ip_network(v, strict=False)
        if "/" in v and ipaddress.ip_address(v.split("/")[0]) != net.network_address:
            b.warn(f"low address bits of {v} are meaningless", st.end)
    except ValueError:
        raise ConfigError(f'host not found in set_real_ip_from "{v}"', st.end) from None
    items.append(RealIpFrom(net))


@directive("real_ip_header", ANY_HTTP, TAKE1)
def _real_ip_header(b: Builder, blk: Block, st: Statement) -> None:
    v = st.args[0].value
    low = v.lower()
    kind = low if low in ("x-real-ip", "x-forwarded-for", "proxy_protocol") else "header"
    b.set(blk, st, "real_ip_header", (kind, low))


flag_slot("real_ip_recursive", ANY_HTTP)


# -- the proxy's TLS side ----------------------------------------------------------------------

flag_slot("proxy_ssl_server_name", ANY_HTTP)
flag_slot("proxy_ssl_verify", ANY_HTTP)
flag_slot("proxy_ssl_session_reuse", ANY_HTTP)
_path("proxy_ssl_trusted_certificate", ANY_HTTP)
_path("proxy_ssl_certificate", ANY_HTTP)
_path("proxy_ssl_certificate_key", ANY_HTTP)
_text("proxy_ssl_ciphers", ANY_HTTP)


@directive("proxy_ssl_name", ANY_HTTP, TAKE1)
def _proxy_ssl_name(b: Builder, blk: Block, st: Statement) -> None:
    b.set(blk, st, "proxy_ssl_name", b.template(st.args[0], st.end))


@directive("proxy_ssl_verify_depth", ANY_HTTP, TAKE1)
def _proxy_ssl_verify_depth(b: Builder, blk: Block, st: Statement) -> None:
    if not st.args[0].value.isdigit():
        raise b.err(st, "invalid number")
    b.set(blk, st, "proxy_ssl_verify_depth", int(st.args[0].value))


@directive("proxy_ssl_protocols", ANY_HTTP, ONEMORE)
def _proxy_ssl_protocols(b: Builder, blk: Block, st: Statement) -> None:
    b.set(blk, st, "proxy_ssl_protocols", _protocols(b, st))


# -- the checks at the end of the http block ---------------------------------------------------


def _effective(hb: Block, sb: Block, key: str) -> object:
    return sb.settings[key] if key in sb.settings else hb.settings.get(key)


def check_ssl(b: Builder, hb: Block) -> None:
    """ngx_http_ssl_merge_srv_conf and ngx_http_ssl_init: a server with certificates has a key
    for each; `ssl on` needs a certificate; the default server of an address with
    `listen ... ssl` needs one."""
    for sb in hb.servers:
        certs = _effective(hb, sb, "ssl_certificate")
        keys = _effective(hb, sb, "ssl_certificate_key") or []
        ssl_on = sb.seen.get("ssl") or hb.seen.get("ssl")
        if certs is None:
            if ssl_on is not None and _effective(hb, sb, "ssl"):
                raise ConfigError('no "ssl_certificate" is defined for the "ssl" directive',
                                  ssl_on.end)
            continue
        assert isinstance(certs, list) and isinstance(keys, list)
        if len(keys) < len(certs):
            raise ConfigError('no "ssl_certificate_key" is defined for certificate '
                              f'"{certs[len(keys)]}"')
    for key, entry in b.listen_addrs.items():
        servers: list[Block] = entry["servers"]
        if not any(ls.ssl for sb in servers for ls in sb.listens if ls.key == key):
            continue
        default = next((sb for sb in servers if any(
            ls.default_server for ls in sb.listens if ls.key == key)), servers[0])
        if _effective(hb, default, "ssl_certificate") is None:
            raise ConfigError('no "ssl_certificate" is defined for the "listen ... ssl" '
                              f"directive in {default.pos.file}:{default.pos.line}"
                              if default.pos else 'no "ssl_certificate" is defined for the '
                              '"listen ... ssl" directive')
