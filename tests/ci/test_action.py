"""``action.yml`` at the repository root: it validates against the GitHub action schema vendored by
check-jsonschema, and its composite steps run for real as a runner would run them (``${{ inputs.* }}`` and
``github.action_path`` substituted, ``if:`` evaluated, ``$GITHUB_OUTPUT`` read back): pip installs polyarch from
the action's own checkout, QEMU, login, then build (or bake) and push to ``polyarch registry serve``; the
outputs ``digest`` and ``metadata`` are checked against what the registry holds."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import REPO

ACTION = REPO / "action.yml"


def _action() -> dict[str, Any]:
    return yaml.safe_load(ACTION.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_action_validates_against_the_schema() -> None:
    proc = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-actions",
                           str(ACTION)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_inputs_are_named_like_dockers_actions() -> None:
    inputs = set(_action()["inputs"])
    build_push = {"context", "file", "platforms", "tags", "push", "load", "build-args", "cache-from", "cache-to",
                  "sbom", "provenance"}
    bake = {"targets", "files", "set", "workdir"}
    assert build_push | bake <= inputs
    assert set(_action()["outputs"]) == {"digest", "metadata"}


def _steps(inputs: dict[str, str], action_path: Path) -> list[tuple[str, dict[str, str]]]:
    """The composite's shell steps that run with ``inputs`` (defaults filled in), substituted."""
    action = _action()
    values = {f"inputs.{k}": str(v.get("default", "")) for k, v in action["inputs"].items()}
    values.update({f"inputs.{k}": v for k, v in inputs.items()})
    values["github.action_path"] = str(action_path)

    def sub(text: str) -> str:
        out = re.sub(r"\$\{\{\s*([\w.-]+)\s*\}\}", lambda m: values[m.group(1)], text)
        assert "${{" not in out
        return out

    def runs(condition: str | None) -> bool:
        if condition is None:
            return True
        m = re.fullmatch(r"(inputs\.[\w-]+) (==|!=) '(.*)'", condition)
        assert m, f"condition the test cannot evaluate: {condition}"
        return (values[m.group(1)] == m.group(3)) == (m.group(2) == "==")

    out = []
    for step in action["runs"]["steps"]:
        if not runs(step.get("if")):
            continue
        if "uses" in step:
            assert step["uses"].startswith("actions/setup-python@")  # the runner's python3 stands for it
            continue
        assert step["shell"] == "bash"
        out.append((sub(step["run"]), {k: sub(str(v)) for k, v in step.get("env", {}).items()}))
    return out


def _outputs(path: Path) -> dict[str, str]:
    """``$GITHUB_OUTPUT`` as the runner reads it: ``k=v`` lines and ``k<<DELIM`` … ``DELIM`` blocks."""
    out, lines = {}, path.read_text().splitlines()
    i = 0
    while i < len(lines):
        key, sep, value = lines[i].partition("<<")
        if sep and "=" not in key:
            end = lines.index(value, i + 1)
            out[key] = "\n".join(lines[i + 1:end])
            i = end + 1
            continue
        key, _, value = lines[i].partition("=")
        out[key] = value
        i += 1
    return out


def _registry_digest(ref: str) -> str:
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", "ci:s3cret",
                          f"docker://{ref}"], capture_output=True, check=True, timeout=60).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "Dockerfile").write_text('FROM base/busybox:1\nARG TARGETPLATFORM\nARG GREETING\n'
                                        'RUN echo "$GREETING from $TARGETPLATFORM" > /built\nCMD ["cat", "/built"]\n')
    return project


@pytest.mark.root
@pytest.mark.binfmt
@pytest.mark.skopeo
@pytest.mark.slow
def test_build_steps_run_and_outputs_match_the_registry(auth_registry: str, pip_tree: Path, run_job: Any,
                                                         tmp_path: Path) -> None:
    inputs = {"platforms": "linux/amd64\nlinux/arm64", "tags": f"{auth_registry}/act:1, {auth_registry}/act:latest",
              "push": "true", "build-args": "GREETING=hello, world", "sbom": "true", "provenance": "mode=max",
              "cache-to": f"type=registry,ref={auth_registry}/act:cache,mode=max",
              "registry": auth_registry, "username": "ci", "password": "s3cret"}
    github_output = tmp_path / "github_output"
    github_output.touch()
    env = {"GITHUB_OUTPUT": str(github_output), "RUNNER_TEMP": str(tmp_path)}
    run_job("action", _steps(inputs, pip_tree), env, _project(tmp_path))
    outputs = _outputs(github_output)
    assert outputs["digest"] == _registry_digest(f"{auth_registry}/act:1") == _registry_digest(f"{auth_registry}/act:latest")
    assert json.loads(outputs["metadata"])["containerimage.digest"] == outputs["digest"]
    assert _registry_digest(f"{auth_registry}/act:cache")  # cache-to was passed through


@pytest.mark.root
@pytest.mark.binfmt
@pytest.mark.skopeo
@pytest.mark.slow
def test_bake_steps_run(auth_registry: str, pip_tree: Path, run_job: Any, tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "docker-bake.hcl").write_text(
        'target "app" {\n  platforms = ["linux/amd64", "linux/arm64"]\n'
        f'  tags = ["{auth_registry}/bake:1"]\n  args = {{ GREETING = "hi" }}\n}}\n')
    github_output = tmp_path / "github_output"
    github_output.touch()
    inputs = {"bake": "true", "targets": "app", "push": "true", "set": "app.args.GREETING=set from the action",
              "registry": auth_registry, "username": "ci", "password": "s3cret", "binfmt": "false"}
    run_job("bake", _steps(inputs, pip_tree), {"GITHUB_OUTPUT": str(github_output), "RUNNER_TEMP": str(tmp_path)},
            project)
    outputs = _outputs(github_output)
    assert outputs["digest"] == _registry_digest(f"{auth_registry}/bake:1")
    assert "app" in json.loads(outputs["metadata"])
