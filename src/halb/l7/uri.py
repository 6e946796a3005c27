"""Request-URI processing as nginx does it (PURE).

Owns the split of a request-target into path and arguments and the normalization of the path
(ngx_http_parse_complex_uri): %XX decoding, "." and ".." segments, merging of "//". The result is
the $uri that location matching, $uri and the file mapping see. Also the way back,
ngx_escape_uri, with the tables its callers use (the proxy's URI, the rewrite module's args). Behaviour checked against
nginx 1.22.1 (tests/unit/l7/test_uri.py lists the cases).

nginx's state machine decodes a %XX and then feeds the decoded byte back into the state it came
from, except that a decoded "%", "#" or "?" is always literal. Decoding everything first and
then resolving segments over the decoded bytes (where only "/" and "." mean anything) is the
same function, and that is what `normalize` does.
"""

from __future__ import annotations

__all__ = ["ESCAPE_ARGS", "ESCAPE_URI", "BadURI", "escape", "normalize", "split_target"]


# ngx_escape_uri's tables: NGX_ESCAPE_URI (controls, space, "#", "%", "?", DEL, non-ASCII) and
# NGX_ESCAPE_ARGS (controls, space, "#", "%", "&", "+", ";", "?", DEL, non-ASCII)
_HIGH = frozenset(range(0x7F, 0x100))
ESCAPE_URI = frozenset(range(0x21)) | frozenset(b"#%?") | _HIGH
ESCAPE_ARGS = frozenset(range(0x20)) | frozenset(b" #%&+;?") | _HIGH


def escape(value: str, table: frozenset[int]) -> str:
    """ngx_escape_uri: the bytes of `table` as upper-case %XX (the value unchanged when none)."""
    raw = value.encode("utf-8", "surrogateescape")
    if not any(b in table for b in raw):
        return value
    return "".join(f"%{b:02X}" if b in table else chr(b) for b in raw)


class BadURI(ValueError):
    """The request-target cannot be normalized; nginx answers 400 Bad Request."""


# Every two-character hex pair (any case) → its byte. "00" is left out: a decoded NUL is an
# invalid request in nginx (sw_quoted_second).
_DIGITS = "0123456789abcdefABCDEF"
_HEX: dict[bytes, bytes] = {
    (a + b).encode(): bytes((int(a + b, 16),))
    for a in _DIGITS for b in _DIGITS if int(a + b, 16)
}


def split_target(target: str) -> tuple[str, str | None]:
    """Request-target → (path, args): split at the first "?"; args is None without a "?".

    As nginx, a "#" ends the target: "/a#x?y" is ("/a", None) and "/a?b#c" is ("/a", "b").
    """
    q = target.find("?")
    if "#" in target:
        h = target.find("#")
        if q < 0 or h < q:
            return target[:h], None
        return target[:q], target[q + 1:h]
    if q < 0:
        return target, None
    return target[:q], target[q + 1:]


def normalize(path: str, merge_slashes: bool = True) -> str:
    """The normalized $uri of a request path (no "?args"), or raise BadURI.

    %XX is decoded (to bytes, read back as UTF-8 with surrogateescape, so any byte survives);
    a decoded "%2F" is a real "/". "." segments are dropped, ".." removes the previous segment
    (BadURI above the root), and runs of "/" are merged when `merge_slashes`. Invalid escapes,
    a NUL byte and a path that does not start with "/" raise BadURI.
    """
    if not path.startswith("/"):
        raise BadURI("the URI does not start with /")
    if "%" not in path and "/." not in path and not (merge_slashes and "//" in path):
        # nginx's "simple" URI: nothing to decode or resolve
        if "\x00" in path:
            raise BadURI("NUL in the URI")
        return path
    try:
        raw = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise BadURI("the URI is not representable as bytes")
    if b"\x00" in raw:
        raise BadURI("NUL in the URI")
    if b"%" in raw:
        raw = _unquote(raw)
    return _resolve(raw, merge_slashes).decode("utf-8", "surrogateescape")


def _unquote(raw: bytes) -> bytes:
    parts = raw.split(b"%")
    out = [parts[0]]
    hexmap = _HEX
    for part in parts[1:]:
        byte = hexmap.get(part[:2])
        if byte is None:
            if part[:2] == b"00":
                raise BadURI("an encoded NUL in the URI")
            raise BadURI("an invalid %-escape in the URI")
        out.append(byte)
        out.append(part[2:])
    return b"".join(out)


def _resolve(raw: bytes, merge_slashes: bool) -> bytes:
    """Resolve "." and ".." and merge slashes over decoded bytes that start with "/"."""
    segments = raw.split(b"/")
    last = len(segments) - 1
    out: list[bytes] = []
    for i in range(1, last + 1):
        seg = segments[i]
        if seg == b"..":
            if not out:
                raise BadURI('".." above the root in the URI')
            out.pop()
            if i == last:
                out.append(b"")
        elif seg == b".":
            if i == last:
                out.append(b"")
        elif seg or i == last or not merge_slashes:
            out.append(seg)
    return b"/" + b"/".join(out)
