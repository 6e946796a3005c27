"""TLS for the nginx role: the server contexts (certificates, SNI), the upstream contexts, and
nginx's wording for what goes wrong.

Server side. Every server block with ssl_certificate gets an SSLContext built from its merged
ssl_* settings. Each listen address:port with ssl gets a "front" context, the one of its
default server, whose SNI callback chooses the server block by the name the client sent
(server_name matching, as for Host) and switches to that server's context, so the certificate
served is that server's (nginx's ngx_http_ssl_servername). No SNI, or a name no server has:
the default server's certificate. Contexts are made once per configuration, in the master
before the workers fork (l7/tls.prepare is called where the configuration is loaded), so the
workers share session ticket keys and a session resumes on any worker, as nginx's shared
cache allows.

Client side (proxy_pass https://): one context per distinct set of proxy_ssl_* settings,
verification off unless proxy_ssl_verify on, SNI only with proxy_ssl_server_name on.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401  (ssl encodes names with it; workers may not import later)
import ipaddress
import os
import ssl
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

from halb.config.errors import ConfigError
from halb.config.model import NginxConfig, Server
from halb.config.nginx_ssl import (
    DEFAULT_CIPHERS,
    DEFAULT_PROTOCOLS,
    DEFAULT_PROXY_CIPHERS,
    SessionCache,
)
from halb.l7.request import Request
from halb.l7.variables import expand

_KEY = "halb.tls"  # where prepare() keeps its state in NginxConfig.extra
_VERSIONS = {"SSLv3": ssl.TLSVersion.SSLv3, "TLSv1": ssl.TLSVersion.TLSv1,
             "TLSv1.1": ssl.TLSVersion.TLSv1_1, "TLSv1.2": ssl.TLSVersion.TLSv1_2,
             "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_ORDER = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
_NO = {"TLSv1": "OP_NO_TLSv1", "TLSv1.1": "OP_NO_TLSv1_1", "TLSv1.2": "OP_NO_TLSv1_2",
       "TLSv1.3": "OP_NO_TLSv1_3"}

_BIO_MISSING = ("BIO_new_file() failed (SSL: error:80000002:system library::No such file or "
                "directory:calling fopen({path}, r) error:10000080:BIO routines::no such file)")


def _protocols(ctx: ssl.SSLContext, names: tuple[str, ...]) -> None:
    """ssl_protocols: the lowest and highest enabled, holes closed with OP_NO_*."""
    with warnings.catch_warnings():  # Python deprecates TLSv1 / TLSv1.1; nginx allows them
        warnings.simplefilter("ignore", DeprecationWarning)
        _set_protocols(ctx, names)


def _set_protocols(ctx: ssl.SSLContext, names: tuple[str, ...]) -> None:
    enabled = [p for p in _ORDER if p in names]
    if not enabled:
        ctx.options |= ssl.OP_NO_TLSv1 | ssl.OP_NO_TLSv1_1 | ssl.OP_NO_TLSv1_2 | \
            ssl.OP_NO_TLSv1_3
        return
    try:
        ctx.minimum_version = _VERSIONS[enabled[0]]
        ctx.maximum_version = _VERSIONS[enabled[-1]]
    except (ValueError, ssl.SSLError):
        pass
    for p in _ORDER[_ORDER.index(enabled[0]):_ORDER.index(enabled[-1])]:
        if p not in enabled:
            ctx.options |= getattr(ssl, _NO[p])


def _ciphers(ctx: ssl.SSLContext, ciphers: str) -> None:
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError:
        raise ConfigError(f'SSL_CTX_set_cipher_list("{ciphers}") failed (SSL: '
                          "error:0A0000B9:SSL routines::no cipher match)",
                          level="emerg") from None


def _load_pair(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    """load_cert_chain with nginx's messages (ngx_ssl_certificate)."""
    if not os.path.isfile(cert):
        raise ConfigError(f'cannot load certificate "{cert}": '
                          + _BIO_MISSING.format(path=cert), level="emerg")
    try:
        ssl._ssl._test_decode_cert(cert)  # type: ignore[attr-defined]
    except (ssl.SSLError, OSError):
        raise ConfigError(
            f'cannot load certificate "{cert}": PEM_read_bio_X509_AUX() failed (SSL: '
            "error:0480006C:PEM routines::no start line:Expecting: TRUSTED CERTIFICATE)",
            level="emerg") from None
    if not os.path.isfile(key):
        raise ConfigError(f'cannot load certificate key "{key}": '
                          + _BIO_MISSING.format(path=key), level="emerg")
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e) or "key values mismatch" in str(e):
            raise ConfigError(f'SSL_CTX_use_PrivateKey("{key}") failed (SSL: error:05800074:'
                              "x509 certificate routines::key values mismatch)",
                              level="emerg") from None
        raise ConfigError(
            f'cannot load certificate key "{key}": PEM_read_bio_PrivateKey() failed (SSL: '
            "error:1E08010C:DECODER routines::unsupported:No supported data to decode. "
            "Input type: PEM)", level="emerg") from None
    except OSError as e:
        raise ConfigError(f'cannot load certificate "{cert}": {e.strerror}',
                          level="emerg") from None


class _AlertingSSLObject(ssl.SSLObject):
    """A server-side SSLObject that keeps the alert of a failed handshake on the exception
    (`halb_alert`): uvloop drops what OpenSSL wrote when it closes the transport, and nginx's
    clients get the alert (l7/tls_accept.py writes it)."""

    _halb_out: ssl.MemoryBIO

    @classmethod
    def _create(cls, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,  # type: ignore[override]
                server_side: bool = False, server_hostname: str | None = None,
                session: ssl.SSLSession | None = None,
                context: ssl.SSLContext | None = None) -> _AlertingSSLObject:
        self = super()._create(incoming, outgoing, server_side,  # type: ignore[misc]
                               server_hostname, session, context)
        self._halb_out = outgoing
        return self  # type: ignore[no-any-return]

    def do_handshake(self) -> None:
        try:
            self._sslobj.do_handshake()  # type: ignore[attr-defined]
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as e:
            e.halb_alert = self._halb_out.read()  # type: ignore[attr-defined]
            raise


def server_context(extra: Any) -> ssl.SSLContext:
    """An SSLContext for a server block's merged ssl_* settings (LocConf.extra)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.sslobject_class = _AlertingSSLObject
    certs: list[str] = extra.get("ssl_certificate") or []
    keys: list[str] = extra.get("ssl_certificate_key") or []
    for cert, key in zip(certs, keys, strict=False):
        _load_pair(ctx, cert, key)
    _protocols(ctx, extra.get("ssl_protocols", DEFAULT_PROTOCOLS))
    _ciphers(ctx, extra.get("ssl_ciphers", DEFAULT_CIPHERS))
    if extra.get("ssl_prefer_server_ciphers", False):
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if not extra.get("ssl_session_tickets", True):
        ctx.options |= ssl.OP_NO_TICKET
    _session_cache(ctx, extra.get("ssl_session_cache"), extra.get("ssl_session_timeout", 300))
    curve = extra.get("ssl_ecdh_curve")
    if curve and curve != "auto" and ":" not in curve:
        try:
            ctx.set_ecdh_curve(curve)
        except (ValueError, ssl.SSLError):
            raise ConfigError(f'SSL_CTX_set1_curves_list("{curve}") failed',
                              level="emerg") from None
    dh = extra.get("ssl_dhparam")
    if dh:
        try:
            ctx.load_dh_params(dh)
        except (OSError, ssl.SSLError):
            raise ConfigError(f'PEM_read_bio_DHparams("{dh}") failed', level="emerg") from None
    ctx.set_alpn_protocols(["http/1.1", "http/1.0"])
    return ctx


# -- OpenSSL's session cache settings, which the ssl module does not expose -------------------

_SESS_OFF, _SESS_SERVER, _NO_AUTO_CLEAR, _NO_INTERNAL_STORE = 0x0, 0x2, 0x80, 0x200
_CTRL_SET_SESS_CACHE_SIZE, _CTRL_SET_SESS_CACHE_MODE = 42, 44
_LIBSSL: Any = False  # not looked up yet; None: unavailable


def _libssl() -> Any:
    """libssl as the ssl module uses it (the same loaded library, checked by its version),
    or None: then OpenSSL's defaults apply."""
    global _LIBSSL
    if _LIBSSL is False:
        _LIBSSL = None
        try:
            import ctypes

            lib = ctypes.CDLL("libssl.so.3")
            lib.OpenSSL_version_num.restype = ctypes.c_ulong
            if lib.OpenSSL_version_num() == ssl.OPENSSL_VERSION_NUMBER and \
                    sys.version_info[:2] in ((3, 10), (3, 11), (3, 12), (3, 13)):
                lib.SSL_CTX_ctrl.restype = ctypes.c_long
                lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long,
                                             ctypes.c_void_p]
                lib.SSL_CTX_set_timeout.restype = ctypes.c_long
                lib.SSL_CTX_set_timeout.argtypes = [ctypes.c_void_p, ctypes.c_long]
                lib.SSL_CTX_get_options.restype = ctypes.c_uint64
                lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
                _LIBSSL = lib
        except (OSError, AttributeError, ImportError):
            pass
    return _LIBSSL


def _ctx_pointer(ctx: ssl.SSLContext, lib: Any) -> int | None:
    """The SSL_CTX* of an SSLContext (CPython's PySSLContext: the object header, then it),
    confirmed by reading the options back."""
    import ctypes

    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not ptr or lib.SSL_CTX_get_options(ptr) != int(ctx.options):
        return None
    return int(ptr)


def _session_cache(ctx: ssl.SSLContext, cache: SessionCache | None, timeout: float) -> None:
    """ngx_ssl_session_cache: off tells clients no session is kept; none (the default) only
    pretends; builtin / shared keep sessions for ssl_session_timeout (halb keeps a shared
    cache per worker: the ticket keys are what all workers share)."""
    lib = _libssl()
    ptr = _ctx_pointer(ctx, lib) if lib is not None else None
    if ptr is None:
        return
    mode = cache.mode if cache is not None else "none"
    if mode == "off":
        lib.SSL_CTX_ctrl(ptr, _CTRL_SET_SESS_CACHE_MODE, _SESS_OFF, None)
        return
    if mode == "none":
        lib.SSL_CTX_ctrl(ptr, _CTRL_SET_SESS_CACHE_MODE,
                         _SESS_SERVER | _NO_AUTO_CLEAR | _NO_INTERNAL_STORE, None)
        lib.SSL_CTX_ctrl(ptr, _CTRL_SET_SESS_CACHE_SIZE, 1, None)
        return
    lib.SSL_CTX_ctrl(ptr, _CTRL_SET_SESS_CACHE_MODE, _SESS_SERVER, None)
    assert cache is not None
    size = cache.builtin_size or (cache.shared_size // 256 if mode == "shared" else 0)
    if size:  # (a shared zone holds about 4000 sessions per megabyte)
        lib.SSL_CTX_ctrl(ptr, _CTRL_SET_SESS_CACHE_SIZE, size, None)
    lib.SSL_CTX_set_timeout(ptr, int(timeout))


@dataclass
class ServerTls:
    """The contexts of one configuration: per server block and per listen address."""

    by_server: dict[int, ssl.SSLContext] = field(default_factory=dict)  # Server.index
    fronts: dict[tuple[str, int], ssl.SSLContext] = field(default_factory=dict)
    ssl_addrs: set[tuple[str, int]] = field(default_factory=set)  # addresses with ssl
    pp_addrs: set[tuple[str, int]] = field(default_factory=set)  # with proxy_protocol
    realip: bool = False  # some level sets set_real_ip_from

    @property
    def special(self) -> bool:
        return bool(self.ssl_addrs or self.pp_addrs or self.realip)


def prepare(config: NginxConfig) -> ServerTls:
    """Load the certificates of a configuration and build its contexts (once; ConfigError
    with nginx's message when a certificate or key cannot be used)."""
    state = config.extra.get(_KEY)
    if isinstance(state, ServerTls):
        return state
    state = ServerTls()
    _UPSTREAM.clear()  # a new configuration reads the files again
    http = config.http
    if http is not None:
        from halb.l7.routing import ListenTable

        for srv in http.servers:
            if srv.conf.extra.get("ssl_certificate"):
                state.by_server[srv.index] = server_context(srv.conf.extra)
        for table in ListenTable(http).tables():
            key = (table.addr, table.port)
            listens = [ls for s in table.servers for ls in s.listens if ls.key == key]
            if any(ls.proxy_protocol for ls in listens):
                state.pp_addrs.add(key)
            if any(ls.ssl for ls in listens) or table.default.conf.extra.get("ssl"):
                state.ssl_addrs.add(key)
                state.fronts[key] = _front(table, state)
        state.realip = any(c.extra.get("set_real_ip_from") for c in config.confs())
        for c in config.confs():
            _check_proxy_ssl(c.extra)
    config.extra[_KEY] = state
    return state


def _front(table: Any, state: ServerTls) -> ssl.SSLContext:
    default: Server = table.default
    ctx = server_context(default.conf.extra)

    def servername(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        if name is None:
            return
        try:
            sslobj.halb_server_name = name  # type: ignore[attr-defined]
        except AttributeError:
            pass
        srv = table.find(name.lower().rstrip(".")).server
        chosen = state.by_server.get(srv.index)
        if chosen is not None and srv is not default:
            sslobj.context = chosen

    ctx.sni_callback = servername  # type: ignore[assignment]
    return ctx


def server_name(sslobj: Any) -> str | None:
    """$ssl_server_name: the name the client sent (SNI)."""
    return getattr(sslobj, "halb_server_name", None)


def handshake_error(e: BaseException) -> str:
    """A failed handshake as nginx words it in the error log (OpenSSL's numeric error code
    is not available from Python: the library and reason are)."""
    if isinstance(e, ssl.SSLError) and e.reason:
        reason = e.reason.lower().replace("_", " ")
        return f"SSL_do_handshake() failed (SSL: error:{e.library or 'SSL'} routines::{reason})"
    if isinstance(e, OSError) and e.errno:
        return f"peer closed connection in SSL handshake ({e.errno}: {e.strerror})"
    return "peer closed connection in SSL handshake"


# -- upstream (proxy_pass https://) -------------------------------------------------------------

_UPSTREAM: dict[tuple[Any, ...], ssl.SSLContext] = {}


class _PeerContext(ssl.SSLContext):
    """A client context for one upstream peer that offers the peer's last session again
    (proxy_ssl_session_reuse on, nginx's default); uvloop calls wrap_bio for each connection."""

    session: ssl.SSLSession | None = None

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname,
                                session or self.session)


def upstream_context(extra: Any, peer: tuple[str, int] | None = None) -> ssl.SSLContext:
    """The client context for a location's proxy_ssl_* settings (cached by their values),
    one per upstream peer when sessions are reused."""
    key = (peer, extra.get("proxy_ssl_verify", False) and (
        "sni" if extra.get("proxy_ssl_server_name", False) else "name"),
           extra.get("proxy_ssl_trusted_certificate"),
           extra.get("proxy_ssl_verify_depth", 1), extra.get("proxy_ssl_protocols"),
           extra.get("proxy_ssl_ciphers"), extra.get("proxy_ssl_certificate"),
           extra.get("proxy_ssl_certificate_key"))
    ctx = _UPSTREAM.get(key)
    if ctx is not None:
        return ctx
    _, verify, trusted, _depth, protocols, ciphers, cert, ckey = key
    ctx = (_PeerContext if peer is not None else ssl.SSLContext)(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if trusted:
            try:
                ctx.load_verify_locations(trusted)
            except (OSError, ssl.SSLError):
                raise ConfigError(f'SSL_CTX_load_verify_locations("{trusted}") failed (SSL: '
                                  + _BIO_MISSING.format(path=trusted)[28:-1]
                                  + " error:05880002:x509 certificate routines::system lib)",
                                  level="emerg") from None
        else:
            ctx.load_default_certs()
        ctx.check_hostname = verify == "sni"  # else check_peer checks the name
    else:
        ctx.verify_mode = ssl.CERT_NONE
    _protocols(ctx, protocols or DEFAULT_PROTOCOLS)
    _ciphers(ctx, ciphers or DEFAULT_PROXY_CIPHERS)
    if cert:
        _load_pair(ctx, cert, ckey or cert)
    if len(_UPSTREAM) < 4096:
        _UPSTREAM[key] = ctx
    return ctx


def _check_proxy_ssl(extra: Any) -> None:
    """ngx_http_proxy_set_ssl, for a location proxying to https:// (or to a URL with
    variables, which may be one): the checks and loads nginx -t makes."""
    pp = extra.get("proxy_pass")
    if pp is None or not (pp.has_variables or pp.scheme == "https"):
        return
    cert = extra.get("proxy_ssl_certificate")
    if cert and not extra.get("proxy_ssl_certificate_key"):
        raise ConfigError(f'no "proxy_ssl_certificate_key" is defined for certificate "{cert}"',
                          level="emerg")
    if extra.get("proxy_ssl_verify", False) and not extra.get("proxy_ssl_trusted_certificate"):
        raise ConfigError("no proxy_ssl_trusted_certificate for proxy_ssl_verify", level="emerg")
    upstream_context(extra)


def upstream_error(e: OSError, name: str) -> str | None:
    """nginx's line for a failed TLS handshake with an upstream, or None for a plain
    connect() failure."""
    if isinstance(e, ssl.SSLCertVerificationError):
        if e.verify_code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
            return (f'upstream SSL certificate does not match "{name}" while SSL handshaking '
                    "to upstream")
        return (f"upstream SSL certificate verify error: ({e.verify_code}:"
                f"{e.verify_message}) while SSL handshaking to upstream")
    if isinstance(e, ssl.SSLError):
        return f"{handshake_error(e)} while SSL handshaking to upstream"
    return None


def _strip_port(name: str) -> str:
    if name.startswith("["):
        end = name.find("]")
        return name[:end + 1] if end > 0 else name
    host, colon, port = name.rpartition(":")
    return host if colon and port.isdigit() and ":" not in host else name


def upstream_tls(r: Request, proxy_host: str) -> dict[str, Any]:
    """The create_connection arguments for a request proxied to https://: the context of
    its location, and the name sent in SNI (proxy_ssl_server_name on) and verified
    (proxy_ssl_verify on): proxy_ssl_name, by default the host of the proxy_pass URL
    without its port."""
    conf = r.conf
    assert conf is not None
    extra = conf.extra
    ctx = upstream_context(extra)
    template = extra.get("proxy_ssl_name")
    name = _strip_port(expand(template, r) if template is not None else proxy_host)
    sni = extra.get("proxy_ssl_server_name", False)
    verify = extra.get("proxy_ssl_verify", False)
    return {"ssl": ctx, "server_hostname": name if sni else None, "name": name,
            "check": name if verify and not sni else None,
            "extra": extra if extra.get("proxy_ssl_session_reuse", True) else None}


def connection_args(args: dict[str, Any], peer: tuple[str, int],
                    unix: bool = False) -> dict[str, Any]:
    """create_connection's TLS arguments for a connection to `peer` (with session reuse, the
    peer's own context, which offers its last session); nginx waits 3 s for the peer's
    close_notify."""
    hostname = args["server_hostname"]
    extra = args["extra"]
    ctx = args["ssl"] if extra is None else upstream_context(extra, peer)
    return {"ssl": ctx, "server_hostname": "" if unix and hostname is None else hostname,
            "ssl_shutdown_timeout": 3.0}


def _name_matches(pattern: str, name: str) -> bool:
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*.") and "*" not in pattern[2:]:
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def check_peer(transport: Any, args: dict[str, Any]) -> str | None:
    """After a new connection's handshake: keep its session for the peer (session reuse);
    proxy_ssl_verify without SNI: the verified certificate must be for the name (as
    X509_check_host: DNS names, wildcards in the left-most label, IP addresses; the CN
    only when there is no DNS name). None when it is, or when there is nothing to check."""
    if transport is None:
        return None
    if args["extra"] is not None:  # keep the session for the next connection to this peer
        ctx = transport.get_extra_info("sslcontext")
        sslobj = transport.get_extra_info("ssl_object")
        if isinstance(ctx, _PeerContext) and sslobj is not None and sslobj.session is not None:
            ctx.session = sslobj.session
    name = args.get("check")
    if name is None:
        return None
    cert = transport.get_extra_info("peercert") or {}
    sans = cert.get("subjectAltName", ())
    dns = [v for k, v in sans if k == "DNS"]
    ips = [v for k, v in sans if k == "IP Address"]
    try:
        ip = ipaddress.ip_address(name)
        ok = any(ipaddress.ip_address(v.strip()) == ip for v in ips)
    except ValueError:
        cns = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
        ok = any(_name_matches(p, name) for p in (dns or cns))
    if ok:
        return None
    return f'upstream SSL certificate does not match "{name}" while SSL handshaking to upstream'

