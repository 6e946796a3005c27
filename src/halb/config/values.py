"""Value syntaxes shared by nginx.conf and keepalived.conf: times, sizes, flags (PURE).

Times follow nginx's ngx_parse_time ("1h30m", "500ms", "90"; units in descending order, a bare
number is seconds). Sizes follow ngx_parse_size / ngx_parse_offset ("8k", "1m", "2g").
"""

from __future__ import annotations

import re

_MAX = 2 ** 63 - 1  # NGX_MAX_INT_T_VALUE, NGX_MAX_SIZE_T_VALUE, NGX_MAX_OFF_T_VALUE
# unit -> (step, seconds); the steps must go down, as in "1d 2h 30m"
_TIME_UNITS = {"y": (1, 365 * 86400), "M": (2, 30 * 86400), "w": (3, 7 * 86400),
               "d": (4, 86400), "h": (5, 3600), "m": (6, 60), "s": (7, 1)}
_MSEC, _LAST = 8, 9


def parse_time(text: str, allow_ms: bool = True) -> float | None:
    """Seconds for an nginx time value, or None when it is invalid (ngx_parse_time).

    allow_ms=True reads it as nginx's msec values do (most timeouts): "ms" is allowed but "y"
    and "M" are not; allow_ms=False as its sec values: "y" and "M" but no "ms". A bare number
    is seconds, also after units ("1h30"); a space after a number ends it like "s" does, and
    spaces after a unit are skipped ("1h 30m").
    """
    scale_ms = 1000 if allow_ms else 1  # nginx counts in ms or in s
    step = 2 if allow_ms else 0  # msec values start past "y" and "M"
    total = value = 0
    valid = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        i += 1
        if "0" <= ch <= "9":
            value = value * 10 + int(ch)
            if value > _MAX:
                return None
            valid = True
            continue
        if ch == "m" and i < n and text[i] == "s":
            if not allow_ms or step >= _MSEC:
                return None
            i += 1
            step, scale, limit = _MSEC, 1, _MAX
        elif ch in _TIME_UNITS:
            rank, seconds = _TIME_UNITS[ch]
            if step >= rank:
                return None
            step, scale, limit = rank, seconds * scale_ms, _MAX // (seconds * scale_ms)
        elif ch == " ":
            if step >= _TIME_UNITS["s"][0]:
                return None
            step, scale, limit = _LAST, scale_ms, _MAX // scale_ms
        else:
            return None
        if value > limit or total > _MAX - value * scale:
            return None
        total += value * scale
        value = 0
        while i < n and text[i] == " ":
            i += 1
    if not valid or value > _MAX // scale_ms or total > _MAX - value * scale_ms:
        return None
    total += value * scale_ms
    return total / scale_ms


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
    if int(m.group(1)) > _MAX // _SIZE_SCALE[unit]:  # ngx_parse_size's overflow check
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
