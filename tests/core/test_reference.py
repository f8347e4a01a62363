import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyarch.errors import InvalidReference
from polyarch.oci import reference


@pytest.mark.parametrize(("text", "full", "familiar"), [
    ("busybox", "docker.io/library/busybox", "busybox"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("base/busybox:1", "docker.io/base/busybox:1", "base/busybox:1"),
    ("localhost:5000/app:v1", "localhost:5000/app:v1", "localhost:5000/app:v1"),
    ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000/a/b/c", "127.0.0.1:5000/a/b/c"),
    ("ghcr.io/owner/app@sha256:" + "a" * 64, "ghcr.io/owner/app@sha256:" + "a" * 64,
     "ghcr.io/owner/app@sha256:" + "a" * 64),
    ("index.docker.io/library/alpine:3", "docker.io/library/alpine:3", "alpine:3"),
    ("localhost/app", "localhost/app", "localhost/app"),
])
def test_parse_and_normalize(text: str, full: str, familiar: str) -> None:
    ref = reference.parse(text)
    assert str(ref) == full
    assert ref.familiar == familiar


@pytest.mark.parametrize("text", [
    "Base/busybox:1", "base/BusyBox:1", "app:-bad", "app:.bad", "app:" + "a" * 129, "a/../b", "", " app",
    "app@sha256:short", "app:tag:more", "a//b", "app/", "UPPER",
    "x" * 300,
])
def test_rejects(text: str) -> None:
    with pytest.raises(InvalidReference):
        reference.parse(text)


def test_uppercase_hint() -> None:
    with pytest.raises(InvalidReference) as info:
        reference.parse("base/BusyBox:1")
    assert "lowercase" in info.value.message


def test_identifier_and_defaults() -> None:
    assert reference.parse("app").identifier == "latest"
    assert reference.parse("app").defaulted().tag == "latest"
    d = "sha256:" + "b" * 64
    assert reference.parse(f"app:1@{d}").identifier == d


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_parse_only_raises_invalid_reference(text: str) -> None:
    try:
        ref = reference.parse(text)
    except InvalidReference:
        return
    assert reference.parse(str(ref)) == ref
