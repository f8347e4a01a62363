import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyarch import platform as plat
from polyarch.errors import InvalidPlatform
from polyarch.platform import Platform


@pytest.mark.parametrize(("text", "expected"), [
    ("linux/amd64", "linux/amd64"),
    ("linux/x86_64", "linux/amd64"),
    ("linux/aarch64", "linux/arm64"),
    ("linux/arm64/v8", "linux/arm64"),
    ("linux/arm64/8", "linux/arm64"),
    ("linux/armhf", "linux/arm/v7"),
    ("linux/armel", "linux/arm/v6"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/arm/7", "linux/arm/v7"),
    ("linux/arm/v6", "linux/arm/v6"),
    ("linux/amd64/v1", "linux/amd64"),
    ("linux/amd64/v3", "linux/amd64/v3"),
    ("linux/i386", "linux/386"),
    ("arm64", "linux/arm64"),
    ("Linux/AMD64", "linux/amd64"),
    ("linux/riscv64", "linux/riscv64"),
    ("linux/loongarch64", "linux/loong64"),
])
def test_parse_normalizes(text: str, expected: str) -> None:
    assert str(plat.parse(text)) == expected


@pytest.mark.parametrize("text", ["linux/arm65", "linux/", "/amd64", "linux/amd64/v2/x", "plan10/amd64", "", "arm65"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(InvalidPlatform):
        plat.parse(text)


def test_suggests_close_match() -> None:
    with pytest.raises(InvalidPlatform) as info:
        plat.parse("linux/arm65")
    assert info.value.hint == "did you mean linux/arm64?"


def test_compatible_order_arm() -> None:
    got = [str(p) for p in plat.compatible(plat.parse("linux/arm/v7"))]
    assert got == ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]


def test_compatible_amd64_levels() -> None:
    got = [str(p) for p in plat.compatible(plat.parse("linux/amd64/v3"))]
    assert got == ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"]


def test_arm64_runs_armv7_but_not_amd64() -> None:
    arm64 = plat.parse("linux/arm64")
    assert plat.rank(plat.parse("linux/arm/v7"), arm64) is not None
    assert plat.rank(plat.parse("linux/amd64"), arm64) is None
    assert plat.rank(Platform("linux", "aarch64", "v8"), arm64) == 0


def test_best_match_prefers_exact() -> None:
    cands = [plat.parse("linux/arm/v6"), plat.parse("linux/arm/v7"), plat.parse("linux/amd64")]
    assert str(plat.best_match(cands, plat.parse("linux/arm/v7"))) == "linux/arm/v7"
    assert str(plat.best_match(cands[:1], plat.parse("linux/arm/v7"))) == "linux/arm/v6"
    assert plat.best_match(cands[2:], plat.parse("linux/arm/v7")) is None


def test_host_is_normalized_and_native() -> None:
    h = plat.host()
    assert h.os == "linux" and h.architecture in plat.KNOWN_ARCHES
    assert plat.runs_natively(h)


def test_oci_round_trip() -> None:
    p = Platform("linux", "arm", "v7")
    assert Platform.from_oci(p.to_oci()) == p
    assert p.slug == "linux_arm_v7"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parse_only_raises_invalid_platform(text: str) -> None:
    try:
        p = plat.parse(text)
    except InvalidPlatform:
        return
    assert plat.parse(str(p)) == p  # parse(format(p)) is a fixed point
