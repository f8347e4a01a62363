"""``polyarch ci init``: every provider's file (one runner or ``--matrix``) validates against the provider's schema
as vendored by check-jsonschema (GitHub workflows for GitHub, Gitea and Forgejo, which read the same shape;
Woodpecker; GitLab CI), what it contains, where it reads platforms and tags, bad input, and ``ci/`` stays pure."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.conftest import REPO, run_cli

SCHEMA = {"github": "vendor.github-workflows", "gitea": "vendor.github-workflows",
          "forgejo": "vendor.github-workflows", "woodpecker": "vendor.woodpecker-ci", "gitlab": "vendor.gitlab-ci"}
TAGS = ("-t", "reg.example.com/app:${VERSION}", "-t", "reg.example.com/app:latest")
PLATFORMS = ("--platform", "linux/amd64,linux/arm64,linux/arm/v7")


def _validate(schema: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema,
                           *map(str, files)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("matrix", [False, True], ids=["qemu", "matrix"])
@pytest.mark.parametrize("provider", list(SCHEMA))
def test_file_validates_against_the_provider_schema(provider: str, matrix: bool, tmp_path: Path) -> None:
    run_cli("ci", "init", str(tmp_path), "--provider", provider, *PLATFORMS, *TAGS, *(["--matrix"] if matrix else []))
    files = sorted(p for p in tmp_path.rglob("*.y*ml"))
    assert files
    proc = _validate(SCHEMA[provider], files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = "\n".join(f.read_text() for f in files)
    assert "--sbom=true --provenance=mode=max" in text and "--verify" in text
    if matrix:
        assert "push-by-digest=true" in text or provider == "woodpecker"
        assert "polyarch imagetools create" in text and "binfmt" not in text
    else:
        assert "polyarch binfmt --install all" in text and "--push" in text
        assert "--cache-from type=registry,ref=reg.example.com/app:buildcache" in text


def test_schema_check_fails_on_a_broken_file(tmp_path: Path) -> None:
    """The validation above can fail: a workflow without ``jobs`` is refused."""
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\non: push\n")
    assert _validate("vendor.github-workflows", [bad]).returncode != 0


def test_dry_run_prints_and_writes_nothing(tmp_path: Path) -> None:
    out = run_cli("ci", "init", str(tmp_path), "--provider", "gitea", "--dry-run", *PLATFORMS, *TAGS).stdout
    assert list(tmp_path.iterdir()) == []
    doc = yaml.safe_load(out)
    assert doc["on"] == {"push": {"tags": ["v*"]}}
    assert out.startswith("# .gitea/workflows/polyarch.yml")


def test_matrix_runs_each_platform_on_its_runner(tmp_path: Path) -> None:
    out = run_cli("ci", "init", str(tmp_path), "--provider", "github", "--matrix", "--dry-run", *PLATFORMS,
                  *TAGS).stdout
    jobs = yaml.safe_load(out)["jobs"]
    assert jobs["build-linux-amd64"]["runs-on"] == "ubuntu-24.04"
    assert jobs["build-linux-arm64"]["runs-on"] == "ubuntu-24.04-arm"
    assert jobs["build-linux-arm-v7"]["runs-on"] == ["self-hosted", "linux", "linux-arm-v7"]
    assert jobs["merge"]["needs"] == ["build-linux-amd64", "build-linux-arm64", "build-linux-arm-v7"]


def test_platforms_and_tags_from_the_bake_file(tmp_path: Path) -> None:
    (tmp_path / "docker-bake.hcl").write_text(
        'target "app" {\n  context = "app"\n  platforms = ["linux/amd64", "linux/riscv64"]\n'
        '  tags = ["reg.example.com/team/app:1"]\n}\ngroup "default" { targets = ["app"] }\n')
    out = run_cli("ci", "init", str(tmp_path), "--provider", "gitlab", "--dry-run").stdout
    assert 'polyarch build "app" --platform linux/amd64,linux/riscv64 -t "reg.example.com/team/app:1"' in out
    out = run_cli("ci", "init", str(tmp_path), "--provider", "woodpecker", "--dry-run", "--bake").stdout
    assert "polyarch bake --push" in out and "--set app.cache-from=type=registry,ref=reg.example.com/team/app" in out
    assert "polyarch login reg.example.com " in out


@pytest.mark.parametrize(("args", "message"), [
    (("--provider", "github", *PLATFORMS), "no tag to push"),
    (("--provider", "github", *TAGS), "no platform"),
    (("--provider", "github", *PLATFORMS, "-t", "reg.example.com/app:$(id)"), "only ${VERSION} may be substituted"),
    (("--provider", "github", *PLATFORMS, "-t", "Reg/App"), "tag 'Reg/App'"),
    (("--provider", "github", "--platform", "linux/nope", *TAGS), "linux/nope"),
    (("--provider", "github", "--bake"), "--bake: no bake or compose file"),
    (("--provider", "github", "--matrix", *PLATFORMS, "-t", "a.example/x:1", "-t", "b.example/y:1"),
     "one repository"),
    (("--provider", "circleci", *PLATFORMS, *TAGS), "circleci"),
])
def test_bad_input_is_one_error_line(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    proc = run_cli("ci", "init", str(tmp_path), *args, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert message in proc.stderr and proc.stderr.lstrip().lower().startswith(("error", "usage"))
    assert list(tmp_path.iterdir()) == []


def test_existing_file_needs_force(tmp_path: Path) -> None:
    run_cli("ci", "init", str(tmp_path), "--provider", "forgejo", *PLATFORMS, *TAGS)
    proc = run_cli("ci", "init", str(tmp_path), "--provider", "forgejo", *PLATFORMS, *TAGS, check=False)
    assert proc.returncode != 0 and "error: .forgejo/workflows/polyarch.yml exists" in proc.stderr
    run_cli("ci", "init", str(tmp_path), "--provider", "forgejo", *PLATFORMS, *TAGS, "--force")


def test_ci_package_does_no_io() -> None:
    """``polyarch.ci`` only turns values into text: no os, files, subprocesses or environment."""
    banned = {"os", "sys", "io", "pathlib", "shutil", "subprocess", "tempfile", "socket"}
    wrong = []
    for path in sorted((REPO / "src" / "polyarch" / "ci").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            wrong += [f"{path.name}: import {n}" for n in names if n.split(".")[0] in banned]
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
                wrong.append(f"{path.name}:{node.lineno}: open()")
    assert wrong == []


def test_readme_example_runs(tmp_path: Path) -> None:
    """README's ``polyarch ci init`` line, as written (with --dry-run), gives a Gitea workflow."""
    import shlex

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## CI that publishes on every tag", 1)[1].split("\n## ", 1)[0]
    [line] = [ln for ln in section.splitlines() if ln.startswith("polyarch ci init ")]
    out = run_cli(*shlex.split(line)[1:], "--dry-run", cwd=tmp_path).stdout
    assert out.startswith("# .gitea/workflows/polyarch.yml") and '-t "registry.example.com/app:${VERSION}"' in out
