"""The new SBOM sources and the CycloneDX format end to end through the CLI: a 2-platform image FROM busybox that
adds a real rpm database, node_modules packages and a cargo-auditable ELF, built with ``--sbom=format=cyclonedx
--load``: the statement read back is a schema-valid CycloneDX 1.5 document naming them with the layer that added
each; ``imagetools inspect '{{json .SBOM}}'`` shows it under ``CycloneDX``; the default stays SPDX."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from tests.attest.conftest import EPOCH, PLATFORMS
from tests.attest.test_cyclonedx import VALIDATOR
from tests.attest.test_more_scanners import AUDIT, _elf, make_rpm_db
from tests.conftest import run_cli


def _context(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "nm" / "@types" / "node").mkdir(parents=True)
    (app / "nm" / "left-pad").mkdir(parents=True)
    (app / "nm" / "left-pad" / "package.json").write_text(
        json.dumps({"name": "left-pad", "version": "1.3.0", "license": "WTFPL"}))
    (app / "nm" / "@types" / "node" / "package.json").write_text(
        json.dumps({"name": "@types/node", "version": "20.1.0", "license": "MIT"}))
    (app / "package.json").write_text(json.dumps({"name": "my-app", "version": "1.0.0"}))
    db = make_rpm_db(tmp_path / "rpm")
    (app / "rpmdb.sqlite").write_bytes((db / "rpmdb.sqlite").read_bytes())
    elf = _elf([(b".text", b"\x90" * 64), (b".dep-v0", zlib.compress(json.dumps(AUDIT).encode()))])
    (app / "myapp").write_bytes(elf)
    (app / "myapp").chmod(0o755)
    (app / "os-release").write_text('ID=fedora\nVERSION_ID="39"\n')
    (app / "Dockerfile").write_text(
        "FROM base/busybox:1\nCOPY os-release /etc/os-release\nCOPY rpmdb.sqlite /var/lib/rpm/rpmdb.sqlite\n"
        "COPY package.json /app/package.json\nCOPY nm /app/node_modules\nCOPY myapp /usr/local/bin/myapp\n")
    return app


def test_cyclonedx_sbom_of_rpm_npm_and_cargo(store_root: Path, tmp_path: Path) -> None:
    app = _context(tmp_path)
    run_cli("build", "--platform", PLATFORMS, "-t", "cdx:1", "--load", "--sbom=format=cyclonedx", str(app),
            root=store_root, env=EPOCH)
    out = run_cli("attestations", "get", "cdx:1", "--type", "sbom", "--platform", "linux/arm64", root=store_root)
    st = json.loads(out.stdout)
    assert st["predicateType"] == "https://cyclonedx.org/bom"
    doc = st["predicate"]
    VALIDATOR.validate(doc)
    comps = {c["name"]: c for c in doc["components"]}
    assert {"hello-poly", "libtwo", "left-pad", "@types/node", "myapp", "serde", "cc"} <= set(comps)
    assert "my-app" not in comps  # the application's own package.json is not a dependency
    assert comps["hello-poly"]["purl"].startswith("pkg:rpm/fedora/hello-poly@2.1.3-4.fc39?")
    assert comps["@types/node"]["purl"] == "pkg:npm/%40types/node@20.1.0"
    assert comps["serde"]["purl"] == "pkg:cargo/serde@1.0.197"
    layers = {c["name"]: dict((p["name"], p["value"]) for p in c["properties"])["polyarch:layerID"]
              for c in doc["components"]}
    assert layers["libtwo"] != layers["serde"]  # each from the layer that added it
    view = json.loads(run_cli("imagetools", "inspect", "local:cdx:1", "--format", "{{json .SBOM}}",
                              root=store_root).stdout)
    assert set(view) == {"linux/amd64", "linux/arm64"} and "left-pad" in {
        c["name"] for c in view["linux/amd64"]["CycloneDX"]["components"]}
    run_cli("build", "--platform", "linux/amd64", "-t", "cdx:2", "--load", "--sbom", str(app), root=store_root,
            env=EPOCH)
    lines = run_cli("attestations", "get", "cdx:2", "--type", "sbom", root=store_root).stdout.splitlines()
    # the same manifest (reproducible build) now has both SBOMs as referrers
    by_type = {st["predicateType"]: st["predicate"] for st in map(json.loads, lines)}
    assert set(by_type) == {"https://spdx.dev/Document", "https://cyclonedx.org/bom"}
    spdx = by_type["https://spdx.dev/Document"]
    assert spdx["spdxVersion"] == "SPDX-2.3" and "libtwo" in {p["name"] for p in spdx["packages"]}
