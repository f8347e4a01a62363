"""CycloneDX 1.5 SBOMs: valid against the official JSON schema (vendored in tests/attest/data/cyclonedx, Apache-2.0),
deterministic, licenses as expressions or names; ``format=cyclonedx`` selects them (and nothing else does)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from polyarch.attest.cyclonedx import cyclonedx_document
from polyarch.attest.options import AttestOptions, parse_attest
from polyarch.attest.scanners import Package, purl
from polyarch.attest.statement import PREDICATE_CYCLONEDX, Subject, encode, kind_of, statement
from polyarch.digest import Digest
from polyarch.errors import UsageError

SCHEMAS = Path(__file__).parent / "data" / "cyclonedx"
DIGEST = Digest.parse("sha256:" + "ab" * 32)


def _validator() -> jsonschema.Draft7Validator:
    docs = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json")}
    registry = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc, default_specification=DRAFT7))
        for doc in docs.values())
    schema = docs["bom-1.5.schema.json"]
    return jsonschema.Draft7Validator(schema, registry=registry, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


VALIDATOR = _validator()

PACKAGES = [
    Package("deb", "libc6", "2.36-9", purl("deb", "libc6", "2.36-9", namespace="debian"), "/var/lib/dpkg/status",
            "", "arm64", "sha256:" + "11" * 32),
    Package("rpm", "bash", "1:5.2-1", purl("rpm", "bash", "5.2-1", namespace="fedora"), "/var/lib/rpm/rpmdb.sqlite",
            "GPL-3.0-or-later", "x86_64", "sha256:" + "22" * 32),
    Package("npm", "@babel/core", "7.24.0", purl("npm", "core", "7.24.0", namespace="@babel"),
            "/app/node_modules/@babel/core/package.json", "MIT AND (Apache-2.0 OR BSD-3-Clause)"),
    Package("pypi", "weird", "1", purl("pypi", "weird", "1"), "/m", "BSD License, see LICENSE.txt"),
    Package("cargo", "serde", "1.0.197", purl("cargo", "serde", "1.0.197"), "/usr/bin/app", "MIT OR Apache-2.0"),
]


def _doc(packages: list[Package]) -> dict:  # type: ignore[type-arg]
    return cyclonedx_document(packages, image_name="app:1", manifest_digest=DIGEST, platform="linux/arm64",
                              created="2024-01-01T00:00:00Z", tool="polyarch-0.1.0")


def test_document_is_valid_cyclonedx_1_5() -> None:
    doc = _doc(PACKAGES + PACKAGES[:1])  # a duplicate is listed once
    VALIDATOR.validate(doc)
    assert doc["specVersion"] == "1.5" and doc["metadata"]["component"]["type"] == "container"
    by_name = {c["name"]: c for c in doc["components"]}
    assert len(doc["components"]) == 5
    assert by_name["@babel/core"]["purl"] == "pkg:npm/%40babel/core@7.24.0"
    assert by_name["@babel/core"]["licenses"] == [{"expression": "MIT AND (Apache-2.0 OR BSD-3-Clause)"}]
    assert by_name["weird"]["licenses"] == [{"license": {"name": "BSD License, see LICENSE.txt"}}]
    assert "licenses" not in by_name["libc6"]
    assert {"name": "polyarch:layerID", "value": "sha256:" + "11" * 32} in by_name["libc6"]["properties"]
    assert doc["dependencies"] == [{"ref": doc["metadata"]["component"]["bom-ref"],
                                    "dependsOn": [c["bom-ref"] for c in doc["components"]]}]
    assert encode(_doc(list(reversed(PACKAGES)))) == encode(_doc(PACKAGES))  # same inputs, same bytes
    wrapped = statement(PREDICATE_CYCLONEDX, doc, [Subject("_", DIGEST)])
    assert wrapped["predicateType"] == "https://cyclonedx.org/bom" and kind_of(wrapped["predicateType"]) == "sbom"


def test_schema_check_is_not_vacuous() -> None:
    bad = _doc(PACKAGES)
    bad["components"][0]["type"] = "gadget"
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(bad)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["deb", "rpm", "npm", "pypi", "cargo", "golang", "apk"]),
                          st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=20),
                          st.text(max_size=40)), max_size=15))
def test_any_packages_give_a_valid_document(rows: list[tuple[str, str, str, str]]) -> None:
    pkgs = [Package(k, n, v, purl(k, n, v), "/p/" + n, lic) for k, n, v, lic in rows]
    VALIDATOR.validate(_doc(pkgs))


def test_format_option() -> None:
    assert parse_attest("format=cyclonedx") == AttestOptions(sbom=True, sbom_format="cyclonedx")
    assert parse_attest(attest=("type=sbom,format=SPDX",)) == AttestOptions(sbom=True)
    with pytest.raises(UsageError) as exc:
        parse_attest(attest=("type=sbom,format=swid",))
    assert "format must be spdx or cyclonedx" in exc.value.message
    with pytest.raises(UsageError):
        parse_attest(attest=("type=provenance,format=cyclonedx",))  # an SBOM key only
