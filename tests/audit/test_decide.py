"""``audit.decide``: what one host would run of one image (pure)."""

from __future__ import annotations

import pytest

from polyarch import platform as plat
from polyarch.audit.decide import decide
from polyarch.audit.model import Verdict


@pytest.mark.parametrize(("available", "host", "want"), [
    (["linux/amd64", "linux/arm64"], "linux/arm64", Verdict("native", plat.parse("linux/arm64"))),
    (["linux/arm/v7", "linux/arm/v6"], "linux/arm64", Verdict("native", plat.parse("linux/arm/v7"))),
    (["linux/arm/v7"], "linux/arm/v6", "emulated linux/arm/v7"),
    (["linux/386"], "linux/amd64", Verdict("native", plat.parse("linux/386"))),
    (["linux/ppc64le", "linux/arm64", "linux/s390x"], "linux/amd64", "emulated linux/arm64"),
    (["linux/s390x", "linux/ppc64le"], "linux/arm64", "emulated linux/s390x"),
    (["windows/amd64"], "linux/amd64", "missing"),
    ([], "linux/amd64", "missing"),
    (None, "linux/amd64", "missing"),
])
def test_decide(available: list[str] | None, host: str, want: Verdict | str) -> None:
    got = decide([plat.parse(p) for p in available] if available is not None else None, plat.parse(host))
    if isinstance(want, Verdict):
        assert (got.status, got.platform) == (want.status, want.platform)
    else:
        assert got.text() == want


