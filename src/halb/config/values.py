"""Value syntaxes shared by nginx.conf and keepalived.conf: times, sizes, flags (PURE).

Times follow nginx's ngx_parse_time ("1h30m", "500ms", "90"; units in descending order, a bare
number is seconds). Sizes follow ngx_parse_size / ngx_parse_offset ("8k", "1m", "2g").
"""

from __future__ import annotations

import re

_TIME_UNITS = {"y": 365 * 86400, "M": 30 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600,
               "m": 60, "s": 1, "ms": 0.001}
_TIME_ORDER = ["y", "M", "w", "d", "h", "m", "s", "ms"]
_TIME_PART = re.compile(r"(\d+)(ms|[yMwdhms])?")


def parse_time(text: str, allow_ms: bool = True) -> float | None:
    """Seconds for an nginx time value, or None when it is invalid."""
    if not text:
        return None
    pos, total, last = 0, 0.0, -1
    while pos < len(text):
        m = _TIME_PART.match(text, pos)
        if not m or m.end() == pos:
            return None
        unit = m.group(2) or "s"
        if m.group(2) is None and m.end() != len(text):
            return None
        if unit == "ms" and not allow_ms:
            return None
        rank = _TIME_ORDER.index(unit)
        if rank <= last:
            return None
        last = rank
        total += int(m.group(1)) * _TIME_UNITS[unit]
        pos = m.end()
        if pos < len(text) and text[pos] == " ":
            pos += 1
    return total


_SIZE = re.compile(r"(\d+)([kKmMgG]?)")
_SIZE_SCALE = {"": 1, "k": 1024, "m": 1024 * 1024, "g": 1024 ** 3}


def parse_size(text: str, allow_g: bool = False) -> int | None:
    """Bytes for an nginx size ("8k", "1m"); "g" only where nginx takes an offset."""
    m = _SIZE.fullmatch(text)
    if not m:
        return None
    unit = m.group(2).lower()
    if unit == "g" and not allow_g:
        return None
    return int(m.group(1)) * _SIZE_SCALE[unit]


def parse_flag(text: str) -> bool | None:
    low = text.lower()
    if low == "on":
        return True
    if low == "off":
        return False
    return None


def parse_int(text: str) -> int | None:
    return int(text) if text.isdigit() else None
