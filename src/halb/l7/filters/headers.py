"""The add_header and expires filter: nginx's ngx_http_headers_filter_module.

Both apply to 200 201 204 206 301 302 303 304 307 308 only; an `add_header ... always` to
every status. Values are complex values (variables), with NUL, CR and LF turned into spaces;
an empty value adds nothing. Some names are special as in nginx: ETag and Last-Modified
replace the response's own (an empty value removes it), Cache-Control adds a line. `expires`
sets Expires and replaces the first Cache-Control (dropping the others), in place when the
response already has them (a proxied one), else as new lines.

Headers nginx adds to the list after this filter (gzip's Content-Encoding, the range filter's
Accept-Ranges and Content-Range) come after the added ones, as in nginx.
"""

from __future__ import annotations

from halb.config.nginx_filters import MODIFIED, OFF, Filters, parse_expires
from halb.l7.filters.expires import expires_values, parse_http_time
from halb.l7.request import Request
from halb.l7.response import Response
from halb.l7.variables import expand

SAFE_STATUSES = frozenset({200, 201, 204, 206, 301, 302, 303, 304, 307, 308})
_UNSAFE_CHARS = str.maketrans({"\0": " ", "\r": " ", "\n": " "})


def _find(headers: list[tuple[str, str]], low: str) -> int:
    for i, (name, _) in enumerate(headers):
        if name.lower() == low:
            return i
    return -1


def _replace(headers: list[tuple[str, str]], low: str, value: str) -> bool:
    """add_header of a header the answer has: its value replaced (an empty value removes it);
    False when the answer has no such header."""
    i = _find(headers, low)
    if i < 0:
        return False
    if value:
        headers[i] = (headers[i][0], value)
    else:
        del headers[i]
    return True


def apply_headers(r: Request, resp: Response, f: Filters, now: int, upstream: bool) -> None:
    hs = resp.headers
    if resp.status == 416 and not upstream and hs and hs[-1][0] == "Content-Range":
        # nginx ran this filter on the file's 200 before its range filter made the 416, then
        # again on the error page: the 200's headers, Content-Range, the `always` ones
        resp.status = 200
        added = _added(r, resp, f, now, True)
        resp.status = 416
        resp.headers = hs[:-1] + added + hs[-1:] + _added(r, resp, f, now, False)
        return
    added = _added(r, resp, f, now, resp.status in SAFE_STATUSES)
    if not added:
        return
    if upstream:
        hs.extend(added)
        return
    # a static answer: ETag is written before the list; Accept-Ranges and Content-Range
    # (the range filter's) after what this filter adds
    late = [h for h in hs if h[0] == "Content-Range"]
    if late:
        hs = [h for h in hs if h[0] != "Content-Range"]
    if resp.accept_ranges:
        resp.accept_ranges = False
        added.append(("Accept-Ranges", "bytes"))
    resp.headers = hs + added + late


def _added(r: Request, resp: Response, f: Filters, now: int, safe: bool
           ) -> list[tuple[str, str]]:
    """What expires and add_header add (special names change resp in place)."""
    hs = resp.headers
    added: list[tuple[str, str]] = []
    if f.expires is not None and safe:
        _expires(r, resp, f, now, added)
    for h in f.headers:
        if not safe and not h.always:
            continue
        value = h.value.static if h.value.is_static else expand(h.value, r)
        if "\0" in value or "\r" in value or "\n" in value:
            value = value.translate(_UNSAFE_CHARS)
        low = h.low
        if low == "etag":
            if resp.etag is not None:
                resp.etag = value or None
                continue
            if _replace(hs, "etag", value):
                continue
        elif low == "last-modified":
            resp.last_modified = None
            resp.last_modified_raw = None
            if _replace(hs, "last-modified", value):
                continue
        if value:
            added.append((h.name, value))
    return added


def _expires(r: Request, resp: Response, f: Filters, now: int,
             added: list[tuple[str, str]]) -> None:
    exp = f.expires
    assert exp is not None
    kind, seconds = exp.kind, exp.seconds
    conf_seconds = None
    if exp.value is not None:
        parsed = parse_expires(expand(exp.value, r), kind == MODIFIED)
        if isinstance(parsed, str):
            return
        kind, seconds = parsed
        if kind == OFF:
            return
        conf_seconds = exp.seconds
    hs = resp.headers
    lm = resp.last_modified
    if lm is None:
        i = _find(hs, "last-modified")
        if i >= 0:
            lm = parse_http_time(hs[i][1])
    value, cc = expires_values(kind, seconds, now, lm, conf_seconds)
    i = _find(hs, "expires")
    if i >= 0:
        hs[i] = (hs[i][0], value)
    else:
        added.append(("Expires", value))
    first = _find(hs, "cache-control")
    if first >= 0:
        hs[first] = (hs[first][0], cc)
        hs[first + 1:] = [h for h in hs[first + 1:] if h[0].lower() != "cache-control"]
    else:
        added.append(("Cache-Control", cc))
