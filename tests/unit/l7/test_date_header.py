"""The Date header is the time the header is sent, also after an idle spell (nginx refreshes its
cached time on every event-loop wake-up; halb's cache was refreshed only after a response)."""

from __future__ import annotations

import email.utils
import time

from halb.l7.response import DATES, Response, render_headers


def _date(head: bytes) -> float:
    line = next(x for x in head.split(b"\r\n") if x.startswith(b"Date: "))
    parsed = email.utils.parsedate_to_datetime(line[6:].decode())
    return parsed.timestamp()


def test_date_is_fresh_after_idle() -> None:
    DATES.update(time.time() - 30)  # the last response was 30 s ago
    head = render_headers(Response(200, body=b"x"), server_tokens="on", keepalive=True)
    assert abs(_date(head) - time.time()) <= 2
