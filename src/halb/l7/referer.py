"""$invalid_referer: the referer module's check of the Referer header against `valid_referers`
(ngx_http_referer_variable) (PURE).

"" when the referer is valid, "1" when it is not. A missing header is valid with `none`; a
header that does not start with "http://" or "https://" (case-insensitive, at least as long as
"http://i.ru") is valid with `blocked`. Otherwise the host (up to ":" or "/", lower-cased, at
most 255 characters) is looked up: exact names, then the longest "*.name" / ".name", then the
longest "name.*"; a name found with a URI part needs the referer's path to start with it. Then
the server names' regexes are matched against the host, and the "~" regexes against everything
after the scheme. With no valid_referers at all, every referer is valid.
"""

from __future__ import annotations

from halb.config.rewrite_model import Referers

_MIN_LEN = len("http://i.ru")


def invalid_referer(refs: Referers | None, referer: str | None) -> str:
    """The value of $invalid_referer ("" or "1")."""
    if refs is None or refs.empty:
        return ""
    if referer is None:
        return "" if refs.none else "1"
    low = referer[:8].lower()
    if len(referer) >= _MIN_LEN and low.startswith("http://"):
        rest = referer[7:]
    elif len(referer) >= _MIN_LEN and low.startswith("https://"):
        rest = referer[8:]
    else:
        return "" if refs.blocked else "1"
    end = len(rest)
    for i, ch in enumerate(rest):
        if ch in "/:":
            end = i
            break
    if end >= 256:
        return "1"
    host = rest[:end].lower()
    uri = _lookup(refs, host)
    if uri is not None:
        if not uri:
            return ""
        slash = rest.find("/", end)
        path = rest[slash:] if slash >= 0 else ""
        return "" if path.startswith(uri) else "1"
    for rx in refs.host_regexes:
        if rx.search(host):
            return ""
    for rx in refs.regexes:
        if rx.search(rest):
            return ""
    return "1"


def _lookup(refs: Referers, host: str) -> str | None:
    """ngx_hash_find_combined: the URI part of the name that matches, None when none does."""
    if refs.exact:
        uri = refs.exact.get(host)
        if uri is not None:
            return uri
    for suffix, uri in refs.heads:  # longest first
        if host.endswith(suffix) and len(host) > len(suffix):
            return uri
    for prefix, uri in refs.tails:
        if host.startswith(prefix) and len(host) > len(prefix):
            return uri
    return None
