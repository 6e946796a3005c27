"""Comparing answers that went through gzip, add_header and expires (test_filters_*.py).

A gzip body is compared DECOMPRESSED (zlib's bytes may differ with the flush points), and must
be one complete gzip stream. Expires and Cache-Control depend on the clock: when the two
servers answered in different seconds the case is asked again (a few times) before it counts
as a difference.
"""

from __future__ import annotations

import dataclasses
import zlib

from harness import Case, Exchange, Pair, canonical, check_expect, req


def g(name: str, path: str, *hdrs: tuple[str, str] | str, method: str = "GET",
      version: str = "HTTP/1.1", **expect: object) -> Case:
    """A case; `header__content_encoding="gzip"` expects Content-Encoding: gzip (`__` for
    ":", `_` for "-" in expect keys that start with header)."""
    return Case(name, req(path, method=method, version=version, headers=hdrs),
                expect={k.replace("__", ":").replace("_", "-") if k.startswith("header")
                        else k: v for k, v in expect.items()})


def gunzip(body: bytes) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(body) + d.flush()
    assert d.eof and not d.unused_data, "not one complete gzip stream"
    return out


def decoded(ex: Exchange) -> Exchange:
    """The exchange with gzip bodies decompressed (marked so that a body that is gzip on one
    side only still differs)."""
    out = []
    for r in ex.responses:
        if (r.header("content-encoding") or "").lower() == "gzip" and r.body:
            r = dataclasses.replace(r, body=b"[gunzipped]" + gunzip(r.body))
        out.append(r)
    return dataclasses.replace(ex, responses=out)


def compare_filtered(pair: Pair, case: Case, retries: int = 3) -> dict[str, Exchange]:
    got = pair.results.pop(case.name, None) or pair.run(case)
    for attempt in range(retries + 1):
        n, h = canonical(decoded(got["nginx"])), canonical(decoded(got["halb"]))
        if n == h:
            break
        if attempt < retries:
            got = pair.run(case)
    else:
        raise AssertionError(f"{case.name}: halb differs from nginx\n"
                             f"request: {case.payload[:600]!r}\n=== nginx\n{n}\n=== halb\n{h}")
    check_expect(case, got["nginx"], pair.ports[case.port_index])
    return got
