"""proxy_cache_background_update: refreshing an expired cache entry after its client was
answered from the old copy (nginx's background subrequest).

With `proxy_cache_background_update on` and `proxy_cache_use_stale updating`, an EXPIRED
lookup answers its client at once from the expired file (STALE) and hands the key's fill marker
to a second ProxyRequest that runs without a client: a copy of the request whose connection is a
sink (the client-side output is dropped; errors are logged with the client's context; the
refresh is not access-logged, as nginx does not log subrequests by default). It stores what it
gets (or revalidates the file with proxy_cache_revalidate); meanwhile other requests for the key
get UPDATING.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from halb.l7.cache import CacheRequest


class _Sink:
    """The client connection of a background refresh: output goes nowhere, the rest (loop,
    server, addresses, error log) is the real connection's."""

    draining = False

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def send_continue(self, r: Any) -> None:
        pass

    def stream_start(self, r: Any, resp: Any, *args: Any, **kwargs: Any) -> None:
        r.response = resp
        r.status = resp.status

    def stream_body(self, r: Any, data: bytes) -> bool:
        return True

    def stream_end(self, r: Any, tail: bytes = b"") -> None:
        pass

    def stream_abort(self, r: Any) -> None:
        pass

    def finish_request(self, r: Any, result: object, amend: Any = None) -> None:
        pass

    def write_buffered(self) -> int:
        return 0

    def tunnel_pause(self, pause: bool) -> None:
        pass

    def tunnel_write(self, data: bytes) -> None:
        pass


def refresh(c: CacheRequest) -> None:
    """Start the background refresh of c's key; c's fill marker moves to it."""
    from halb.l7.cache import CacheRequest
    from halb.l7.proxy import ProxyRequest

    p = c.proxy
    r = p.r
    sink = _Sink(r.conn)
    r2 = copy.copy(r)
    r2.conn = sink
    r2.proxy = None
    r2.on_body = None
    r2.on_body_done = None
    r2.body_chunks = []
    r2.keepalive = False
    bg = ProxyRequest(sink, r2, p.pp, p.group, p.proxy_host, p.proxy_port,  # type: ignore[arg-type]
                      p.uri_part)
    r2.proxy = bg
    c2 = CacheRequest(bg, c.zone, c.cc)
    c2.converted = r2.method == "HEAD"
    c2.key, c2.main, c2.digest, c2.path, c2.secondary = c.key, c.main, c.digest, c.path, \
        c.secondary
    c2.status = "EXPIRED"
    c2.store = True
    c2.owner, c.owner = c.owner, 0
    if c.cc.revalidate:
        opened = c2._open()
        if opened is not None:
            c2.stale = opened
            c2._revalidate(opened[1])
    bg.cache = c2

    def go() -> None:
        try:
            bg.start()
        except Exception as e:
            bg.crashed(e)

    p.loop.call_soon(go)
