"""SSL_GET: HTTP_GET over TLS, without certificate verification, as keepalived (I/O only).

keepalived builds one client context for all SSL_GET checkers from the top-level `SSL` block
(certificate + key, with the password for the key, and a CA file it loads but never verifies
against) and never checks the server's certificate or name. The server name is sent (SNI) only
with `enable_sni`.
"""

from __future__ import annotations

import ssl as _ssl

from halb.config.keepalived_lvs_model import Checker, SslContext
from halb.health.events import ProbeResult
from halb.health.probes.http import http_get


def client_context(cfg: SslContext | None = None) -> _ssl.SSLContext:
    ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = _ssl.CERT_NONE
    if cfg is not None and cfg.certificate:
        ctx.load_cert_chain(cfg.certificate, cfg.key or None, cfg.password or None)
    return ctx


async def ssl_get(checker: Checker, url_index: int,
                  ctx: _ssl.SSLContext | None = None) -> ProbeResult:
    return await http_get(checker, url_index, ctx or client_context())
