"""The string work of nginx's rewrite scripts (PURE): ngx_escape_uri(NGX_ESCAPE_ARGS) for
captures, ngx_unescape_uri(NGX_UNESCAPE_REDIRECT) for a redirect's URL, and the parser's
quoted_uri / plus_in_uri flags that decide whether captures are escaped.
"""

from __future__ import annotations

from halb.l7.uri import ESCAPE_ARGS, escape

_HEX = b"0123456789abcdefABCDEF"


def escape_args(value: str) -> str:
    """ngx_escape_uri(NGX_ESCAPE_ARGS), upper-case hex."""
    return escape(value, ESCAPE_ARGS)


def unescape_redirect(value: str) -> str:
    """ngx_unescape_uri(NGX_UNESCAPE_REDIRECT): "%XX" becomes the character when it is
    printable ASCII above "%" (an escaped "?" ends the work, as a plain "?" does: the rest is
    copied as it is); an invalid escape loses its "%" (and a bad second digit the whole)."""
    if "%" not in value:
        return value
    src = value.encode("utf-8", "surrogateescape")
    out = bytearray()
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        i += 1
        if ch == 0x3F:  # "?"
            out.append(ch)
            out += src[i:]
            break
        if ch != 0x25:  # "%"
            out.append(ch)
            continue
        if i >= n:
            break
        first = src[i]
        i += 1
        if first not in _HEX:
            out.append(first)  # the invalid quoted character: "%" dropped
            continue
        if i >= n:
            break
        second = src[i]
        i += 1
        if second not in _HEX:
            continue  # both dropped
        decoded = int(bytes((first, second)), 16)
        if decoded == 0x3F and second not in b"0123456789":
            out.append(decoded)
            out += src[i:]
            break
        if 0x25 < decoded < 0x7F:
            out.append(decoded)
        else:
            out += bytes((0x25, first, second))
    return out.decode("utf-8", "surrogateescape")


def _path_start(target: str) -> int:
    if target.startswith("/"):
        return 0
    i = target.find("://")
    if i < 0:
        return 0
    j = target.find("/", i + 3)
    return j if j >= 0 else len(target)


def uri_flags(target: str) -> tuple[bool, bool]:
    """(quoted_uri, plus_in_uri) as nginx's parser sets them: any "%" in the path (the simple
    states of ngx_http_parse_request_line and ngx_http_parse_complex_uri both mark it), and a
    "+" only while the request-line parser is still in its simple states, which it leaves at
    "/.", "//", "%", "?" or "#"."""
    if "%" not in target and "+" not in target:
        return False, False
    start = _path_start(target)
    end = len(target)
    for stop in "?#":
        i = target.find(stop, start)
        if 0 <= i < end:
            end = i
    path = target[start:end]
    quoted = "%" in path
    plus = False
    after_slash = True
    for ch in path[1:]:
        if ch == "+":
            plus = True
        elif ch == "%":
            break
        elif after_slash:
            if ch in "./":
                break
            after_slash = False
        elif ch == "/":
            after_slash = True
    return quoted, plus
