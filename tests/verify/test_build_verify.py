"""`polyarch build --verify`: a build whose arm images ship an amd64 binary fails before anything is exported."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli
from tests.verify.test_verify import BROKEN_DOCKERFILE, FIXED_DOCKERFILE, PLATFORMS


def test_build_verify_blocks_the_wrong_architecture(elves: dict[str, bytes], store_root: Path,
                                                    tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "app").write_bytes(elves["linux/amd64"])
    for p, arch in (("linux/amd64", "amd64"), ("linux/arm64", "arm64"), ("linux/arm/v7", "arm")):
        (ctx / f"app-{arch}").write_bytes(elves[p])
    out = tmp_path / "out.tar"
    (ctx / "Dockerfile").write_text(BROKEN_DOCKERFILE)
    proc = run_cli("build", str(ctx), "--verify", "--progress", "plain", "--platform", ",".join(PLATFORMS),
                   "-t", "app:broken", "--load", "-o", f"type=oci,dest={out}", root=store_root, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: verify failed, nothing was exported: "
                      "linux/arm64: /usr/bin/app: expected arm64 (aarch64), found x86-64 (and 1 more)"]
    assert "linux/arm/v7: /usr/bin/app: expected arm/v7 (armv7), found x86-64" in proc.stderr  # in the log
    names = [r["name"] for r in json.loads(run_cli("images", "--format", "json", root=store_root).stdout)]
    assert "app:broken" not in names and not out.exists()
    (ctx / "Dockerfile").write_text(FIXED_DOCKERFILE)
    run_cli("build", str(ctx), "--verify", "--platform", ",".join(PLATFORMS), "-t", "app:fixed", "--load",
            root=store_root)
    names = [r["name"] for r in json.loads(run_cli("images", "--format", "json", root=store_root).stdout)]
    assert "app:fixed" in names


def test_bake_verify_blocks_every_target(elves: dict[str, bytes], store_root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "app").write_bytes(elves["linux/amd64"])
    for p, arch in (("linux/amd64", "amd64"), ("linux/arm64", "arm64"), ("linux/arm/v7", "arm")):
        (ctx / f"app-{arch}").write_bytes(elves[p])
    (ctx / "broken.Dockerfile").write_text(BROKEN_DOCKERFILE)
    (ctx / "fixed.Dockerfile").write_text(FIXED_DOCKERFILE)
    (ctx / "docker-bake.hcl").write_text(
        'group "default" { targets = ["fixed", "broken"] }\n'
        'target "fixed" {\n  dockerfile = "fixed.Dockerfile"\n  tags = ["app:fixed"]\n'
        '  platforms = ["linux/amd64", "linux/arm64"]\n}\n'
        'target "broken" {\n  dockerfile = "broken.Dockerfile"\n  tags = ["app:broken"]\n'
        '  platforms = ["linux/amd64", "linux/arm64"]\n}\n')
    proc = run_cli("bake", "-f", str(ctx / "docker-bake.hcl"), "--verify", "--load", "--progress", "plain",
                   root=store_root, check=False, cwd=ctx)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: [broken] verify failed, nothing was exported: "
                      "linux/arm64: /usr/bin/app: expected arm64 (aarch64), found x86-64"]
    names = [r["name"] for r in json.loads(run_cli("images", "--format", "json", root=store_root).stdout)]
    assert "app:fixed" not in names and "app:broken" not in names  # all or nothing
