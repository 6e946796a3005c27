"""Output filters: nginx's header and body filter chain, for static and proxied responses.

The interface (small on purpose):

- What a location filters is decided at configuration load: `LocConf.filters` is a
  config/nginx_filters.py `Filters` value, or None when the location has no filter (then
  nothing runs per request: the writers test that one attribute).
- `chain.header_filter(r, resp, filters, upstream)` runs the header filters, in nginx's order,
  on the Response whose headers are about to be rendered (a static one, a special page, or the
  head of a proxied one, whose upstream headers are in resp.headers), and returns a
  `BodyFilter` when the body must be transformed, else None.
- A `BodyFilter` takes the body as it goes out: `data(piece, flush)` returns what to send now
  (maybe b""), `last(piece)` the final bytes. The writers frame its output (chunked for
  HTTP/1.1 when the length changed, which a filter says by setting resp.unknown_length).

A new filter adds its settings to `Filters` (built in config/nginx_filters.filters_for) and
one step to chain.header_filter; a body filter that only observes can wrap another.

Modules: gzip.py (PURE), expires.py (PURE), headers.py (add_header, expires), chain.py.
valid_referers is a rewrite-phase check, not an output filter (it lives with the rewrite
module).
"""

from __future__ import annotations

from typing import Protocol


class BodyFilter(Protocol):
    def data(self, chunk: bytes, flush: bool = False) -> bytes: ...

    def last(self, chunk: bytes = b"") -> bytes: ...
