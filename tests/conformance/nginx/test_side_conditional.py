"""Conditional requests (304, 412), byte ranges (206, 416, multipart, If-Range) and HEAD."""

from __future__ import annotations

import pytest
from harness import MTIME_HTTP, Case, compare, ids, req

pytestmark = pytest.mark.peer

CONFIG = r"""
    default_type application/octet-stream;
    types { text/plain txt; text/html html; }

    server {
        listen %ADDR%:%PORT%;
        server_name localhost;
        root %WWW%;
        location / { }
        location /etag-off/ { alias %WWW%/; etag off; }
        location /ims-before/ { alias %WWW%/; if_modified_since before; }
        location /ims-off/ { alias %WWW%/; if_modified_since off; }
        location /no-ranges/ { alias %WWW%/; max_ranges 0; }
        location /one-range/ { alias %WWW%/; max_ranges 1; }
        location /ep/ { error_page 404 /range.txt; }
        location /ep200/ { error_page 404 =200 /range.txt; }
    }
"""

ETAG = '"6553f100-25"'  # range.txt: mtime 0x6553f100, 37 bytes
BIG_ETAG = '"6553f100-16e360"'
EARLIER = "Tue, 14 Nov 2023 22:13:19 GMT"
LATER = "Wed, 15 Nov 2023 00:00:00 GMT"
R = "/range.txt"


def get(path: str = R, *headers: tuple[str, str], method: str = "GET") -> bytes:
    return req(path, method=method, headers=headers)


CASES = [
    Case("plain", get(), {"status": 200, "header:etag": ETAG,
                          "header:last-modified": MTIME_HTTP}),
    # If-None-Match
    Case("inm-match", get(R, ("If-None-Match", ETAG)), {"status": 304}),
    Case("inm-mismatch", get(R, ("If-None-Match", '"other"')), {"status": 200}),
    Case("inm-star", get(R, ("If-None-Match", "*")), {"status": 304}),
    Case("inm-list", get(R, ("If-None-Match", f'"a", {ETAG}, "b"')), {"status": 304}),
    Case("inm-weak", get(R, ("If-None-Match", f"W/{ETAG}")), {"status": 304}),
    Case("inm-unquoted", get(R, ("If-None-Match", ETAG.strip('"'))), {"status": 200}),
    Case("inm-head", get(R, ("If-None-Match", ETAG), method="HEAD"), {"status": 304}),
    Case("inm-big", get("/big1m.bin", ("If-None-Match", BIG_ETAG)), {"status": 304}),
    # If-Modified-Since
    Case("ims-exact", get(R, ("If-Modified-Since", MTIME_HTTP)), {"status": 304}),
    Case("ims-later", get(R, ("If-Modified-Since", LATER)), {"status": 200}),
    Case("ims-earlier", get(R, ("If-Modified-Since", EARLIER)), {"status": 200}),
    Case("ims-invalid", get(R, ("If-Modified-Since", "yesterday")), {"status": 200}),
    Case("ims-rfc850", get(R, ("If-Modified-Since", "Tuesday, 14-Nov-23 22:13:20 GMT"))),
    Case("ims-asctime", get(R, ("If-Modified-Since", "Tue Nov 14 22:13:20 2023"))),
    Case("ims-and-inm-mismatch", get(R, ("If-Modified-Since", MTIME_HTTP),
                                     ("If-None-Match", '"x"')), {"status": 200}),
    Case("ims-and-inm-match", get(R, ("If-Modified-Since", MTIME_HTTP),
                                  ("If-None-Match", ETAG)), {"status": 304}),
    Case("ims-stale-inm-match", get(R, ("If-Modified-Since", EARLIER),
                                    ("If-None-Match", ETAG)), {"status": 200}),
    Case("ims-before-later", get("/ims-before/range.txt", ("If-Modified-Since", LATER)),
         {"status": 304}),
    Case("ims-before-earlier", get("/ims-before/range.txt", ("If-Modified-Since", EARLIER)),
         {"status": 200}),
    Case("ims-off", get("/ims-off/range.txt", ("If-Modified-Since", MTIME_HTTP)),
         {"status": 200}),
    Case("etag-off", get("/etag-off/range.txt"), {"header:etag": None}),
    Case("etag-off-inm", get("/etag-off/range.txt", ("If-None-Match", ETAG)), {"status": 200}),
    Case("etag-off-inm-star", get("/etag-off/range.txt", ("If-None-Match", "*")),
         {"status": 304}),
    # If-Match / If-Unmodified-Since
    Case("if-match", get(R, ("If-Match", ETAG)), {"status": 200}),
    # a 412 says "Connection: keep-alive", then nginx closes the connection
    Case("if-match-mismatch", get(R, ("If-Match", '"nope"')), {"status": 412, "closed": True}),
    Case("if-match-star", get(R, ("If-Match", "*")), {"status": 200}),
    Case("if-match-weak", get(R, ("If-Match", f"W/{ETAG}")), {"status": 412}),
    Case("if-match-list", get(R, ("If-Match", f'"x",{ETAG}')), {"status": 200}),
    Case("if-match-head", get(R, ("If-Match", '"nope"'), method="HEAD"), {"status": 412}),
    Case("if-match-etag-off", get("/etag-off/range.txt", ("If-Match", "*")),
         {"status": 200}),
    Case("if-match-etag-off-tag", get("/etag-off/range.txt", ("If-Match", ETAG)),
         {"status": 412}),
    Case("ius-equal", get(R, ("If-Unmodified-Since", MTIME_HTTP)), {"status": 200}),
    Case("ius-later", get(R, ("If-Unmodified-Since", LATER)), {"status": 200}),
    Case("ius-earlier", get(R, ("If-Unmodified-Since", EARLIER)), {"status": 412}),
    Case("ius-invalid", get(R, ("If-Unmodified-Since", "garbage")), {"status": 412}),
    Case("ius-beats-inm", get(R, ("If-Unmodified-Since", EARLIER), ("If-None-Match", ETAG)),
         {"status": 412}),
    Case("if-match-and-inm", get(R, ("If-Match", ETAG), ("If-None-Match", ETAG)),
         {"status": 304}),
    Case("precondition-on-404", get("/none.txt", ("If-Match", '"x"')), {"status": 404}),
    # Range
    Case("range-first", get(R, ("Range", "bytes=0-9")),
         {"status": 206, "header:content-range": "bytes 0-9/37", "body": b"0123456789"}),
    Case("range-open", get(R, ("Range", "bytes=30-")), {"header:content-range":
                                                        "bytes 30-36/37"}),
    Case("range-suffix", get(R, ("Range", "bytes=-5")), {"header:content-range":
                                                         "bytes 32-36/37"}),
    Case("range-suffix-too-long", get(R, ("Range", "bytes=-100")), {"status": 206}),
    Case("range-suffix-zero", get(R, ("Range", "bytes=-0")), {"status": 416}),
    Case("range-one-byte", get(R, ("Range", "bytes=0-0")), {"body": b"0"}),
    Case("range-last-byte", get(R, ("Range", "bytes=36-36")), {"body": b"\n"}),
    Case("range-end-past", get(R, ("Range", "bytes=30-1000")), {"status": 206}),
    Case("range-start-past", get(R, ("Range", "bytes=37-")), {"status": 416}),
    Case("range-far-past", get(R, ("Range", "bytes=100-200")),
         {"status": 416, "header:content-range": "bytes */37"}),
    Case("range-reversed", get(R, ("Range", "bytes=5-2")), {"status": 416}),
    Case("range-garbage", get(R, ("Range", "bytes=abc")), {"status": 416}),
    Case("range-empty-spec", get(R, ("Range", "bytes=")), {"status": 200}),
    Case("range-other-unit", get(R, ("Range", "items=0-1")), {"status": 200}),
    Case("range-spaces", get(R, ("Range", "bytes= 1 - 3 ")), {"status": 206}),
    Case("range-uppercase-unit", get(R, ("Range", "BYTES=0-1")), {"status": 206}),
    Case("range-multi", get(R, ("Range", "bytes=0-1,5-6")), {"status": 206}),
    Case("range-multi-suffix", get(R, ("Range", "bytes=0-0,-2")), {"status": 206}),
    Case("range-multi-one-valid", get(R, ("Range", "bytes=0-1,100-200")), {"status": 206}),
    Case("range-multi-overlap-too-big", get(R, ("Range", "bytes=0-30,0-30")), {"status": 200}),
    Case("range-multi-head", get(R, ("Range", "bytes=0-1,5-6"), method="HEAD")),
    Case("range-head", get(R, ("Range", "bytes=0-9"), method="HEAD"), {"status": 206}),
    Case("range-big-file", get("/big1m.bin", ("Range", "bytes=1000000-1099999")),
         {"status": 206}),
    Case("range-big-suffix", get("/big64k.bin", ("Range", "bytes=-70000")), {"status": 206}),
    Case("range-empty-file", get("/empty.txt", ("Range", "bytes=0-")), {"status": 200}),
    Case("range-empty-file-suffix", get("/empty.txt", ("Range", "bytes=-1")),
         {"status": 200}),
    Case("range-max-ranges-0", get("/no-ranges/range.txt", ("Range", "bytes=0-1")),
         {"status": 200, "header:accept-ranges": None}),
    Case("range-max-ranges-1", get("/one-range/range.txt", ("Range", "bytes=0-1,3-4")),
         {"status": 200}),
    Case("range-max-ranges-1-single", get("/one-range/range.txt", ("Range", "bytes=0-1")),
         {"status": 206}),
    Case("if-range-etag", get(R, ("Range", "bytes=0-1"), ("If-Range", ETAG)),
         {"status": 206}),
    Case("if-range-etag-stale", get(R, ("Range", "bytes=0-1"), ("If-Range", '"old"')),
         {"status": 200}),
    Case("if-range-date", get(R, ("Range", "bytes=0-1"), ("If-Range", MTIME_HTTP)),
         {"status": 206}),
    Case("if-range-date-stale", get(R, ("Range", "bytes=0-1"), ("If-Range", EARLIER)),
         {"status": 200}),
    Case("if-range-weak", get(R, ("Range", "bytes=0-1"), ("If-Range", f"W/{ETAG}")),
         {"status": 200}),
    Case("if-range-garbage", get(R, ("Range", "bytes=0-1"), ("If-Range", "zzz")),
         {"status": 200}),
    Case("range-and-inm", get(R, ("Range", "bytes=0-1"), ("If-None-Match", ETAG)),
         {"status": 304}),
    Case("range-and-if-match-fail", get(R, ("Range", "bytes=0-1"), ("If-Match", '"x"')),
         {"status": 412}),
    Case("range-on-error-page", get("/ep/missing", ("Range", "bytes=0-1")), {"status": 404}),
    Case("range-on-error-page-200", get("/ep200/missing", ("Range", "bytes=0-1")),
         {"status": 206}),
    Case("inm-on-error-page", get("/ep/missing", ("If-None-Match", ETAG)), {"status": 404}),
    Case("range-on-dir-redirect", get("/dir", ("Range", "bytes=0-1")), {"status": 301}),
]


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_conditional(pair, case: Case) -> None:  # type: ignore[no-untyped-def]
    compare(pair, case)
