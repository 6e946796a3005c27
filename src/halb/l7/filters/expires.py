"""The `expires` values of ngx_http_headers_filter_module's ngx_http_set_expires (PURE).

`now` (whole seconds, nginx's ngx_time()) and the response's Last-Modified time are passed in.
"""

from __future__ import annotations

import calendar
import time

from halb.config.nginx_filters import ACCESS, DAILY, EPOCH, MAX

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NO = {m.lower(): i + 1 for i, m in enumerate(_MONTHS)}


def http_date(ts: int) -> str:
    """ngx_http_time: "Sun, 06 Nov 1994 08:49:37 GMT" (English names whatever the locale)."""
    t = time.gmtime(ts)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def parse_http_time(value: str) -> int | None:
    """ngx_parse_http_time's three forms: "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday,
    06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"; None when it is none of them."""
    v = value.strip()
    try:
        if "," in v:
            rest = v.split(",", 1)[1].strip()
            if "-" in rest.split(" ", 1)[0]:  # RFC 850
                date, clock = rest.split()[:2]
                day, mon, year = date.split("-")
                y = int(year)
                y += 1900 if y >= 70 and y < 100 else (2000 if y < 70 else 0)
            else:
                day, mon, year, clock = rest.split()[:4]
                y = int(year)
        else:  # asctime
            _, mon, day, clock, year = v.split()[:5]
            y = int(year)
        hh, mm, ss = (int(x) for x in clock.split(":"))
        month = _MONTH_NO[mon.lower()]
        d = int(day)
    except (ValueError, KeyError):
        return None
    if not (1 <= d <= 31 and hh < 24 and mm < 60 and ss < 60 and y >= 1970):
        return None
    return calendar.timegm((y, month, d, hh, mm, ss, 0, 0, 0))

EPOCH_DATE = "Thu, 01 Jan 1970 00:00:01 GMT"
MAX_DATE = "Thu, 31 Dec 2037 23:55:55 GMT"


def next_time(when: int, now: int) -> int:
    """ngx_next_time: the next moment (local time) at `when` seconds after midnight."""
    tm = time.localtime(now)
    base = (tm.tm_year, tm.tm_mon, tm.tm_mday, when // 3600, when % 3600 // 60, when % 60,
            0, 0, -1)
    nxt = int(time.mktime(base))  # type: ignore[arg-type]
    if nxt - now > 0:
        return nxt
    base = (tm.tm_year, tm.tm_mon, tm.tm_mday + 1, *base[3:])
    return int(time.mktime(base))  # type: ignore[arg-type]


def expires_values(kind: str, seconds: int, now: int, last_modified: float | None,
                   conf_seconds: int | None = None) -> tuple[str, str]:
    """(Expires, Cache-Control) for an `expires` of this kind and time. conf_seconds: the
    configured time when `seconds` came from a variable (nginx tests the configured one for a
    negative value)."""
    if kind == EPOCH:
        return EPOCH_DATE, "no-cache"
    if kind == MAX:
        return MAX_DATE, "max-age=315360000"
    if seconds == 0 and kind != DAILY:
        return http_date(now), "max-age=0"
    if kind == DAILY:
        at = next_time(seconds, now)
        max_age = at - now
    elif kind == ACCESS or last_modified is None:
        max_age = seconds
        at = seconds + now
    else:
        at = seconds + int(last_modified)
        max_age = at - now
    negative = (seconds if conf_seconds is None else conf_seconds) < 0
    if negative or max_age < 0:
        return http_date(at), "no-cache"
    return http_date(at), f"max-age={max_age}"
