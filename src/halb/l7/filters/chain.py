"""Running a location's output filters, in nginx's order: headers (add_header, expires), then
gzip. Called by the static writer (l7/http_write.py) and the proxy (l7/proxy.py) with the
response's headers, before they are rendered."""

from __future__ import annotations

import copy

from halb.config.nginx_filters import Filters
from halb.l7.filters import BodyFilter
from halb.l7.filters.gzip import client_ok, compressible, gzip_header
from halb.l7.filters.headers import apply_headers
from halb.l7.request import Request
from halb.l7.response import DATES, Response


def header_filter(r: Request, resp: Response, f: Filters, upstream: bool = False
                  ) -> BodyFilter | None:
    """Change resp's headers as the location's filters say; the body filter that the body
    must then pass through, or None."""
    now = DATES.second
    if f.headers or f.expires is not None:
        apply_headers(r, resp, f, now, upstream)
    if f.gzip is not None:
        return gzip_header(f.gzip, r.version, r.headers, resp, now, upstream)
    return None


def ranges_allowed(r: Request, resp: Response, f: Filters) -> bool:
    """False when gzip will compress this static file (nginx's range filter runs after gzip
    and finds no length: the whole file is sent, compressed). Called before the range is cut
    (gzip's header filter then leaves a static 206 alone)."""
    g = f.gzip
    if g is None or not compressible(g, resp):
        return True
    resp.vary = resp.vary or g.vary  # decided on the whole file, before a range
    probe = resp
    if "via" in r.headers and (f.headers or f.expires is not None):
        # gzip_proxied reads the Expires / Cache-Control that add_header and expires add
        probe = copy.copy(resp)
        probe.headers = list(resp.headers)
        apply_headers(r, probe, f, DATES.second, False)
    return not client_ok(g, r.version, r.headers, probe, DATES.second)
