"""``--sbom``/``--provenance``/``--attest`` values as buildx spells them; bad ones are one UsageError naming them."""

from __future__ import annotations

import pytest

from polyarch.attest.options import AttestOptions, parse_attest
from polyarch.errors import UsageError


@pytest.mark.parametrize(("sbom", "provenance", "attest", "want"), [
    (None, None, (), AttestOptions()),
    ("true", None, (), AttestOptions(sbom=True)),
    ("generator=docker/scout-sbom-indexer:1", None, (), AttestOptions(sbom=True,
                                                                     generator="docker/scout-sbom-indexer:1")),
    (None, "mode=max", (), AttestOptions(provenance=True, provenance_mode="max")),
    (None, "false", ("type=provenance,mode=max",), AttestOptions()),  # the flag comes last and wins
    (None, None, ("type=provenance,mode=max,version=v0.2,builder-id=https://ci/1", "type=sbom,disabled=true"),
     AttestOptions(provenance=True, provenance_mode="max", provenance_version="v0.2", builder_id="https://ci/1")),
    (None, None, ("type=sbom", "type=sbom,disabled=true"), AttestOptions()),  # later entry of a type replaces
])
def test_values(sbom: str | None, provenance: str | None, attest: tuple[str, ...], want: AttestOptions) -> None:
    assert parse_attest(sbom, provenance, attest) == want


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sbom": "maybe"}, "invalid --sbom='maybe'"),
    ({"attest": ("type=sbom,novalue",)}, "expected key=value"),
    ({"attest": ("type=provenance,disabled=perhaps",)}, "is not true or false"),
    ({"mode": "cosign"}, "invalid --attest-mode"),
])
def test_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_attest(**kwargs)  # type: ignore[arg-type]
    assert message in exc.value.message
