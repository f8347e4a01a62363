"""``parse_location``: the one parser of image location strings. Any string gives a ``Location`` or one
``UsageError`` (never another exception), and ``str()`` gives back text that parses to the same value."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyarch.digest import Digest
from polyarch.errors import UsageError
from polyarch.sources.location import Location, Scheme, parse_location

DIGEST = "sha256:" + "ab" * 32

_schemes = st.sampled_from(["", "local:", "oci-layout://", "oci-archive://", "docker-archive://", "docker-image://",
                            "http://", "x://"])
_tails = st.sampled_from(["", "@" + DIGEST, "@sha256:abc", "@md5:00", ":tag", ":a:b", "@"])
_texts = st.one_of(st.text(max_size=60), st.builds(lambda s, b, t: s + b + t, _schemes, st.text(max_size=30), _tails))


@settings(max_examples=400, deadline=None)
@given(_texts)
def test_any_text_is_a_location_or_one_usage_error_and_round_trips(text: str) -> None:
    try:
        loc = parse_location(text)
    except UsageError as exc:
        assert exc.message
        return
    assert isinstance(loc, Location)
    assert parse_location(str(loc)) == loc


_path = st.text(st.characters(blacklist_characters="\x00@", blacklist_categories=("Cs",)), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([Scheme.LAYOUT, Scheme.OCI_ARCHIVE, Scheme.DOCKER_ARCHIVE]), _path,
       st.one_of(st.none(), st.just(Digest.parse(DIGEST))))
def test_path_locations_keep_their_parts(scheme: Scheme, path: str, digest: Digest | None) -> None:
    loc = Location(scheme, path, digest)
    assert parse_location(str(loc)) == loc


@pytest.mark.parametrize(("text", "expected"), [
    ("local:app:1", Location(Scheme.LOCAL, "app:1")),
    ("oci-layout:///srv/out:app:1", Location(Scheme.LAYOUT, "/srv/out:app:1")),
    (f"oci-layout://out@{DIGEST}", Location(Scheme.LAYOUT, "out", Digest.parse(DIGEST))),
    ("oci-layout://dir@home", Location(Scheme.LAYOUT, "dir@home")),  # an @ not followed by ALG:HEX is the path's
    ("oci-archive://img.tar", Location(Scheme.OCI_ARCHIVE, "img.tar")),
    ("docker-archive://img.tar:app:1", Location(Scheme.DOCKER_ARCHIVE, "img.tar:app:1")),
    ("docker-image://busybox", Location(Scheme.IMAGE, "busybox")),
    ("registry.lan:5000/app:1", Location(Scheme.BARE, "registry.lan:5000/app:1")),
    ("out/layout:tag", Location(Scheme.BARE, "out/layout:tag")),
])
def test_meaning(text: str, expected: Location) -> None:
    assert parse_location(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(("text", "needle"), [
    ("", "empty image location"),
    ("local:", "empty NAME"),
    ("oci-layout://", "empty PATH"),
    (f"oci-layout://@{DIGEST}", "empty PATH"),
    ("oci-layout://x@sha256:abc", "sha256 needs 64"),
    ("docker-image://", "empty REF"),
    ("ftp://host/x", "unknown location scheme 'ftp'"),
    ("a\x00b", "NUL"),
])
def test_bad_locations(text: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        parse_location(text)
