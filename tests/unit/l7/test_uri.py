"""halb.l7.uri: request-target split and $uri normalization.

Every expected value in the tables was checked against nginx 1.22.1 ($uri and $args of a
`return 200 "$uri|$args"` location, with merge_slashes on and off); BadURI is nginx's 400.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halb.l7.uri import BadURI, normalize, split_target

BAD = BadURI

# (path, merge_slashes on, merge_slashes off)
NORMALIZE = [
    ("/", "/", "/"),
    ("/index.html", "/index.html", "/index.html"),
    ("/a/./b", "/a/b", "/a/b"),
    ("/a/../b", "/b", "/b"),
    ("/a/b/..", "/a/", "/a/"),
    ("/a/b/.", "/a/b/", "/a/b/"),
    ("/a/./", "/a/", "/a/"),
    ("/.", "/", "/"),
    ("/./", "/", "/"),
    ("/..", BAD, BAD),
    ("/./..", BAD, BAD),
    ("/a/b/../..", "/", "/"),
    ("/a/b/../../..", BAD, BAD),
    ("/a/b/c/./../../d", "/a/d", "/a/d"),
    ("//a//b", "/a/b", "//a//b"),
    ("//", "/", "//"),
    ("///", "/", "///"),
    ("//..", BAD, "/"),
    ("//./..", BAD, "/"),
    ("/a//..", "/", "/a/"),
    ("/a//../", "/", "/a/"),
    ("/a//b/../c", "/a/c", "/a//c"),
    ("/a//b/../../c", "/c", "/a/c"),
    ("/...", "/...", "/..."),
    ("/..a", "/..a", "/..a"),
    ("/a/...", "/a/...", "/a/..."),
    ("/.hidden/x", "/.hidden/x", "/.hidden/x"),
    # percent-decoding, and decoded "/" and "." taking part in the resolution
    ("/a%2F..%2Fb", "/b", "/b"),
    ("/a%2fb", "/a/b", "/a/b"),
    ("/%2F", "/", "//"),
    ("/%2F%2F", "/", "///"),
    ("/%2e%2e/", BAD, BAD),
    ("/.%2e", BAD, BAD),
    ("/%2E", "/", "/"),
    ("/%2e/", "/", "/"),
    ("/a/%2e%2e", "/", "/"),
    ("/a/%2E%2E/", "/", "/"),
    ("/a/%2e.", "/", "/"),
    ("/a/b/%2e%2e%2f..%2f", "/", "/"),
    ("/%25", "/%", "/%"),
    ("/%2541", "/%41", "/%41"),  # decoded once only
    ("/%23x", "/#x", "/#x"),
    ("/%3Fx", "/?x", "/?x"),
    ("/a/.%3F", "/a/.?", "/a/.?"),
    ("/a%0ab", "/a\nb", "/a\nb"),
    ("/a+b", "/a+b", "/a+b"),
    ("/%C3%A9", "/\u00e9", "/\u00e9"),
    ("/\u00e9/./x", "/\u00e9/x", "/\u00e9/x"),
    ("/%ff", "/\udcff", "/\udcff"),  # a byte that is not UTF-8 survives (surrogateescape)
    # errors
    ("/%zz", BAD, BAD),
    ("/%2", BAD, BAD),
    ("/%", BAD, BAD),
    ("/a%2", BAD, BAD),
    ("/%g0", BAD, BAD),
    ("/%0g", BAD, BAD),
    ("/a%00b", BAD, BAD),
    ("/a\x00b", BAD, BAD),
    ("", BAD, BAD),
    ("a/b", BAD, BAD),
    ("*", BAD, BAD),
    ("/\ud800", "/\ud800", "/\ud800"),  # simple path: returned as it is
    ("/\ud800/./", BAD, BAD),  # not encodable: cannot be resolved as bytes
]


@pytest.mark.parametrize(("path", "merged", "unmerged"), NORMALIZE)
def test_normalize(path: str, merged: str | type[BadURI], unmerged: str | type[BadURI]) -> None:
    for merge, expected in ((True, merged), (False, unmerged)):
        if expected is BAD:
            with pytest.raises(BadURI):
                normalize(path, merge)
        else:
            assert normalize(path, merge) == expected, (path, merge)


def test_normalize_default_merges_slashes() -> None:
    assert normalize("//a") == "/a"


def test_bad_uri_is_a_value_error() -> None:
    assert issubclass(BadURI, ValueError)


SPLIT = [
    ("/", ("/", None)),
    ("/a", ("/a", None)),
    ("/a?", ("/a", "")),
    ("/a?x=1", ("/a", "x=1")),
    ("/a?b?c", ("/a", "b?c")),
    ("/a%3F?c", ("/a%3F", "c")),
    ("/a?x=%20&y", ("/a", "x=%20&y")),
    # nginx ends the target at "#"
    ("/a#frag", ("/a", None)),
    ("/a#b?c", ("/a", None)),
    ("/a?b#c", ("/a", "b")),
    ("/a?#c", ("/a", "")),
]


@pytest.mark.parametrize(("target", "expected"), SPLIT)
def test_split_target(target: str, expected: tuple[str, str | None]) -> None:
    assert split_target(target) == expected


_URI_ALPHABET = st.sampled_from(["/", "/", "/", ".", ".", "..", "%2e", "%2E", "%2f", "%2F",
                                 "%25", "%", "a", "b", "%41", "%0", "%00", "z", "?", "\u00e9",
                                 "%ff", "%c3%a9"])
_PATHS = st.one_of(
    st.lists(_URI_ALPHABET, max_size=24).map(lambda parts: "/" + "".join(parts)),
    st.text(max_size=24).map(lambda s: "/" + s),
    st.text(max_size=12),
)


@settings(max_examples=600, deadline=None)
@given(path=_PATHS, merge=st.booleans())
def test_normalize_property(path: str, merge: bool) -> None:
    try:
        out = normalize(path, merge)
    except BadURI:
        return
    assert out.startswith("/")
    assert "/./" not in out and "/../" not in out
    assert not out.endswith("/..") and not out.endswith("/.")
    if merge:
        assert "//" not in out
    if "%" not in out:  # nothing left to decode: a normalized URI is a fixed point
        assert normalize(out, merge) == out
