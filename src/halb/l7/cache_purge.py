"""The ngx_cache_purge module: `proxy_cache_purge ZONE KEY` as a location's content handler
(and the purge behind the method form, called from l7/cache.py), and finding a cache zone.

A purge removes the key's file and its node: 200 with the module's page (the key and the file's
path), 404 when the key is not cached (nginx's page), 403 for a method-form purge from an
address its `from` list does not name.
"""

from __future__ import annotations

import ipaddress
import os
from typing import TYPE_CHECKING, Any

from halb.l7 import handler
from halb.l7.cache_rules import md5_key
from halb.l7.cache_zone import ZONES, CacheZone, open_zones
from halb.l7.response import Response, error_page
from halb.l7.static import Finish
from halb.l7.variables import expand

if TYPE_CHECKING:
    from halb.l7.request import Request


def zone_for(r: Request, name: str) -> CacheZone | None:
    zone = ZONES.get(name)
    if zone is None:  # a single process (master_process off) opens its zones on first use
        http = r.conn.server.config.http
        paths = http.conf.extra.get("proxy_cache_path") if http is not None else None
        if paths and name in paths:
            open_zones(paths)
            zone = ZONES.get(name)
    return zone


def allowed(addr: str, nets: Any) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in nets)


_PURGED = ("<html>\r\n<head><title>Successful purge</title></head>\r\n"
           "<body bgcolor=\"white\">\r\n<center><h1>Successful purge</h1>\r\n"
           "<br>Key : {key}\r\n<br>Path: {path}\r\n</center>\r\n")


def purge(r: Request, value: tuple[str, Any]) -> object:
    """`proxy_cache_purge ZONE KEY`: remove the key's file (200 and the module's page; 404 when
    the key is not cached)."""
    name, tpl = value
    zone = zone_for(r, name)
    if zone is None:
        return Finish(500)
    key = expand(tpl, r)
    digest = md5_key(key)
    path = zone.path_of(digest)
    with zone:
        node = zone.peek(digest)
        cached = node is not None and node.valid != 0
        if cached:
            zone.forget(digest)
    if not cached:
        return Finish(404)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return Finish(404)
    except OSError as e:
        r.conn.log_error("crit", f'unlink() "{path}" failed ({e.errno}: {e.strerror})', r)
        return Finish(500)
    conf = r.conf
    assert conf is not None
    tail = error_page(404, conf.server_tokens) or b""
    footer = tail[tail.find(b"<hr>"):] if b"<hr>" in tail else b"</body>\r\n</html>\r\n"
    body = _PURGED.format(key=key, path=path).encode("utf-8", "surrogateescape") + footer
    return Response(200, body=body, content_type="text/html")


handler.CONTENT_HANDLERS["proxy_cache_purge"] = purge  # type: ignore[assignment]
