"""Time, size and flag values as nginx reads them (ngx_parse_time, ngx_parse_size, on/off).

The expected results were checked against nginx 1.22 (`send_timeout` is an msec value,
the second argument of `keepalive_timeout` a sec value).
"""

from __future__ import annotations

import pytest

from halb.config.values import parse_flag, parse_int, parse_size, parse_time

MAX = 2 ** 63 - 1

# (text, seconds as an msec value (allow_ms=True), seconds as a sec value (allow_ms=False))
TIMES = [
    ("0", 0, 0),
    ("90", 90, 90),
    ("1s", 1, 1),
    ("1m", 60, 60),
    ("1h", 3600, 3600),
    ("1d", 86400, 86400),
    ("2w", 14 * 86400, 14 * 86400),
    ("1M", None, 30 * 86400),  # months and years: sec values only
    ("1y", None, 365 * 86400),
    ("1y1M", None, 395 * 86400),
    ("1ms", 0.001, None),  # milliseconds: msec values only
    ("500ms", 0.5, None),
    ("1s500ms", 1.5, None),
    ("1m1ms", 60.001, None),
    ("1h30m15s", 5415, 5415),
    ("1w2d", 9 * 86400, 9 * 86400),
    ("1d1h", 90000, 90000),
    ("1m1s", 61, 61),
    # a bare number is seconds, also after units
    ("1h30", 3630, 3630),
    # spaces: skipped after a unit; after a number they end it like "s"
    ("1h 30m", 5400, 5400),
    ("1h  30m", 5400, 5400),
    ("1h 30", 3630, 3630),
    ("1h30 ", 3630, 3630),
    ("30 ", 30, 30),
    (" 30", 30, 30),
    ("3 0", 3, 3),
    ("1 h", None, None),
    ("5 5 ", None, None),
    # units must come in descending order, each once
    ("500ms1s", None, None),
    ("1h1h", None, None),
    ("1h1d", None, None),
    ("1s1m", None, None),
    ("1ms1ms", None, None),
    # not times at all
    ("", None, None),
    ("  ", None, None),
    ("s", None, None),
    ("h1", 1, 1),  # a unit without a number counts 0 (nginx accepts it)
    ("1x", None, None),
    ("1S", None, None),
    ("1H", None, None),
    ("1D", None, None),
    ("-1", None, None),
    ("+1", None, None),
    ("1.5", None, None),
    ("1_000", None, None),
    ("1h-", None, None),
    # overflow: nginx counts in ms (msec values) or s (sec values) in a signed 64-bit integer
    (str(MAX), None, MAX),
    (str(MAX + 1), None, None),
    ("99999999999999999999", None, None),
    ("9223372036854775s", 9223372036854775, 9223372036854775),
    ("9223372036854776s", None, 9223372036854776),
    ("292471208677y", None, 292471208677 * 365 * 86400),
    ("292471208678y", None, None),
]


@pytest.mark.parametrize(("text", "msec", "sec"), TIMES)
def test_parse_time(text: str, msec: float | None, sec: float | None) -> None:
    assert parse_time(text) == (pytest.approx(msec) if msec is not None else None)
    assert parse_time(text, allow_ms=True) == parse_time(text)
    assert parse_time(text, allow_ms=False) == (pytest.approx(sec) if sec is not None else None)


def test_parse_time_returns_seconds_as_float() -> None:
    assert isinstance(parse_time("90"), float)
    assert parse_time("1s250ms") == 1.25


# (text, size, offset (allow_g=True))
SIZES = [
    ("0", 0, 0),
    ("1", 1, 1),
    ("512", 512, 512),
    ("8k", 8192, 8192),
    ("8K", 8192, 8192),
    ("1m", 1024 ** 2, 1024 ** 2),
    ("1M", 1024 ** 2, 1024 ** 2),
    ("2g", None, 2 * 1024 ** 3),  # "g" only where nginx takes an offset
    ("2G", None, 2 * 1024 ** 3),
    ("007k", 7 * 1024, 7 * 1024),
    ("", None, None),
    ("k", None, None),
    ("1kb", None, None),
    ("1 k", None, None),
    (" 1k", None, None),
    ("1.5k", None, None),
    ("-1", None, None),
    ("1t", None, None),
    ("1km", None, None),
    (str(MAX), MAX, MAX),
    (str(MAX + 1), None, None),
    (f"{MAX // 1024}k", MAX // 1024 * 1024, MAX // 1024 * 1024),
    (f"{MAX // 1024 + 1}k", None, None),
    (f"{MAX // 1024 ** 3 + 1}g", None, None),
]


@pytest.mark.parametrize(("text", "size", "offset"), SIZES)
def test_parse_size(text: str, size: int | None, offset: int | None) -> None:
    assert parse_size(text) == size
    assert parse_size(text, allow_g=True) == offset


@pytest.mark.parametrize(("text", "expected"), [
    ("on", True), ("off", False), ("ON", True), ("Off", False), ("oN", True),
    ("", None), ("yes", None), ("no", None), ("1", None), ("0", None), ("true", None),
    ("on ", None), (" off", None), ("onn", None),
])
def test_parse_flag(text: str, expected: bool | None) -> None:
    assert parse_flag(text) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("0", 0), ("42", 42), ("007", 7), ("", None), ("-1", None), ("+1", None), ("1.0", None),
    ("1k", None), (" 1", None),
])
def test_parse_int(text: str, expected: int | None) -> None:
    assert parse_int(text) == expected
