"""`expires` computed as ngx_http_set_expires does, with a fixed clock (l7/filters/expires.py),
and the HTTP dates it reads and writes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from halb.config.nginx_filters import ACCESS, DAILY, EPOCH, MAX, MODIFIED
from halb.l7.filters.expires import expires_values, http_date, next_time, parse_http_time

NOW = 1_700_000_000  # Tue, 14 Nov 2023 22:13:20 GMT
LM = NOW - 86400


@pytest.fixture
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.mark.parametrize(("kind", "secs", "lm", "want"), [
    (EPOCH, 0, None, ("Thu, 01 Jan 1970 00:00:01 GMT", "no-cache")),
    (MAX, 0, None, ("Thu, 31 Dec 2037 23:55:55 GMT", "max-age=315360000")),
    (ACCESS, 0, None, ("Tue, 14 Nov 2023 22:13:20 GMT", "max-age=0")),
    (ACCESS, 3600, None, ("Tue, 14 Nov 2023 23:13:20 GMT", "max-age=3600")),
    (ACCESS, 3600, LM, ("Tue, 14 Nov 2023 23:13:20 GMT", "max-age=3600")),
    (ACCESS, -1, None, ("Tue, 14 Nov 2023 22:13:19 GMT", "no-cache")),
    (MODIFIED, 3600, LM, ("Mon, 13 Nov 2023 23:13:20 GMT", "no-cache")),  # already past
    (MODIFIED, 2 * 86400, LM, ("Wed, 15 Nov 2023 22:13:20 GMT", "max-age=86400")),
    (MODIFIED, 3600, None, ("Tue, 14 Nov 2023 23:13:20 GMT", "max-age=3600")),  # no LM: access
    (MODIFIED, 0, LM, ("Tue, 14 Nov 2023 22:13:20 GMT", "max-age=0")),
])
def test_expires_values(kind: str, secs: int, lm: int | None, want: tuple[str, str]) -> None:
    assert expires_values(kind, secs, NOW, lm) == want


def test_daily(utc: None) -> None:
    # 22:13:20 now: 23:00 is today, 15:30 tomorrow, midnight tomorrow
    assert expires_values(DAILY, 23 * 3600, NOW, None) == \
        ("Tue, 14 Nov 2023 23:00:00 GMT", "max-age=2800")
    assert expires_values(DAILY, 15 * 3600 + 1800, NOW, None) == \
        ("Wed, 15 Nov 2023 15:30:00 GMT", "max-age=62200")
    assert next_time(0, NOW) == NOW - (22 * 3600 + 13 * 60 + 20) + 86400
    assert next_time(22 * 3600 + 13 * 60 + 20, NOW) == NOW + 86400  # not now: tomorrow


def test_variable_value_tests_the_configured_sign() -> None:
    # `expires $x` with x = "-1h": the configured time (0) is not negative, max-age is
    assert expires_values(ACCESS, -3600, NOW, None, conf_seconds=0)[1] == "no-cache"
    assert expires_values(MODIFIED, -3600, NOW, NOW + 7200, conf_seconds=0)[1] == \
        "max-age=3600"
    assert expires_values(MODIFIED, -3600, NOW, NOW + 7200)[1] == "no-cache"


@pytest.mark.parametrize(("text", "ts"), [
    ("Tue, 14 Nov 2023 22:13:20 GMT", NOW),
    ("Tuesday, 14-Nov-23 22:13:20 GMT", NOW),
    ("Tue Nov 14 22:13:20 2023", NOW),
    ("Thu, 01 Jan 1970 00:00:01 GMT", 1),
    ("yesterday", None), ("Tue, 14 Foo 2023 22:13:20 GMT", None),
    ("Tue, 14 Nov 2023 25:13:20 GMT", None), ("", None),
])
def test_parse_http_time(text: str, ts: int | None) -> None:
    assert parse_http_time(text) == ts


def test_http_date_is_english_and_round_trips() -> None:
    assert http_date(NOW) == "Tue, 14 Nov 2023 22:13:20 GMT"
    for t in (0, 1, 951782400, 2147483647):  # 2000-02-29, 2038-01-19
        assert parse_http_time(http_date(t)) == t
