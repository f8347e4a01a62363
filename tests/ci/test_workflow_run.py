"""``polyarch ci init``'s workflows run for real: the ``run:`` steps (Actions), ``commands`` (Woodpecker) and
``script`` (GitLab) of every job are taken from the generated file, the CI's secrets and variables substituted as
the CI would, and run with bash against ``polyarch registry serve`` (htpasswd auth): pip installs polyarch, binfmt
registers QEMU, login, build with registry cache, ``--verify`` and attestations, push. ``--matrix``: each platform
job in its own checkout and store, its digest file handed to the merge job as the artifact actions would."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import run_cli

pytestmark = [pytest.mark.root, pytest.mark.binfmt, pytest.mark.skopeo, pytest.mark.slow]

PLATFORMS = ("linux/amd64", "linux/arm64")
SECRETS = {"REGISTRY_USER": "ci", "REGISTRY_PASSWORD": "s3cret"}
RELEASE = "v1.2.3"

Scripts = list[tuple[str, dict[str, str]]]


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "Dockerfile").write_text('FROM base/busybox:1\nARG TARGETPLATFORM\n'
                                        'RUN echo "built for $TARGETPLATFORM on $(uname -m)" > /built\n'
                                        'CMD ["cat", "/built"]\n')
    return project


def _init(project: Path, provider: str, registry: str, pip_tree: Path, *more: str) -> list[Path]:
    before = set(project.rglob("*"))
    run_cli("ci", "init", str(project), "--provider", provider, "--platform", ",".join(PLATFORMS),
            "-t", f"{registry}/app:${{VERSION}}", "-t", f"{registry}/app:latest", "--pip-spec", str(pip_tree), *more)
    return sorted(p for p in set(project.rglob("*")) - before if p.is_file())


def _actions_jobs(doc: dict[str, Any]) -> dict[str, Scripts]:
    """Each job's ``run:`` steps with job and step ``env``, ``${{ … }}`` substituted as the runner would."""
    values = {"secrets.REGISTRY_USER": SECRETS["REGISTRY_USER"],
              "secrets.REGISTRY_PASSWORD": SECRETS["REGISTRY_PASSWORD"], "github.ref_name": RELEASE}

    def sub(text: str) -> str:
        out = re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: values[m.group(1)], text)
        assert "${{" not in out
        return out

    jobs = {}
    for name, job in doc["jobs"].items():
        assert job["container"]["options"] == "--privileged" and job["defaults"]["run"]["shell"] == "bash"
        job_env = {k: sub(v) for k, v in job.get("env", {}).items()}
        jobs[name] = [(sub(s["run"]), {**job_env, **{k: sub(v) for k, v in s.get("env", {}).items()}})
                      for s in job["steps"] if "run" in s]
    return jobs


def _gitlab_jobs(doc: dict[str, Any]) -> dict[str, Scripts]:
    """Each job's ``script`` lines as one bash script; ``variables`` expanded as GitLab does."""
    ci_env = {"CI_COMMIT_TAG": RELEASE, **SECRETS}
    variables = {k: v.replace("$CI_COMMIT_TAG", RELEASE) for k, v in doc["variables"].items()}
    return {name: [("\n".join(job["script"]), {**ci_env, **variables})]
            for name, job in doc.items() if isinstance(job, dict) and "script" in job}


def _woodpecker_job(doc: dict[str, Any]) -> Scripts:
    """The steps' commands, ``$$`` unescaped as Woodpecker's substitution does, secrets from ``from_secret``."""
    secrets = {"registry_user": SECRETS["REGISTRY_USER"], "registry_password": SECRETS["REGISTRY_PASSWORD"]}
    out = []
    for step in doc["steps"]:
        assert step["privileged"] is True
        script = "\n".join(step["commands"])
        assert not re.search(r"(?<!\$)\$\{", script), "an unescaped ${ would be substituted by Woodpecker"
        env = {k: secrets[v["from_secret"]] for k, v in step["environment"].items()}
        out.append((script.replace("$$", "$"), {"CI_COMMIT_TAG": RELEASE, "CI_PIPELINE_NUMBER": "7", **env}))
    return out


def _skopeo(ref: str) -> dict[str, Any]:
    out = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", "ci:s3cret",
                          f"docker://{ref}"], capture_output=True, check=True, timeout=60).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def _check_published(registry: str, tmp_path: Path) -> None:
    """Both tags hold one index of both platforms; the registry cache and each platform's image work."""
    index = _skopeo(f"{registry}/app:{RELEASE}")
    platforms = [f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]
                 if m["platform"]["os"] != "unknown"]
    assert platforms == list(PLATFORMS)
    assert _skopeo(f"{registry}/app:latest") == index
    env = {"DOCKER_CONFIG": str(tmp_path / "check-docker")}
    run_cli("login", registry, "-u", "ci", "-p", "s3cret", env=env)
    for platform in PLATFORMS:
        out = run_cli("run", "--platform", platform, f"{registry}/app:{RELEASE}",
                      root=tmp_path / f"check-{platform.replace('/', '-')}", env=env).stdout
        assert f"built for {platform} on " in out
        # the SBOM and the provenance went along (OCI 1.1 referrers of the platform manifest)
        listed = run_cli("attestations", "ls", f"{registry}/app:{RELEASE}", "--platform", platform,
                         root=tmp_path / "check-att", env=env).stdout
        assert "spdx" in listed.lower() and "provenance" in listed.lower()


def test_github_workflow_runs(auth_registry: str, pip_tree: Path, run_job: Any, tmp_path: Path) -> None:
    project = _project(tmp_path)
    [path] = _init(project, "github", auth_registry, pip_tree)
    jobs = _actions_jobs(yaml.safe_load(path.read_text()))
    assert list(jobs) == ["publish"]
    run_job("publish", jobs["publish"], {}, project)
    _check_published(auth_registry, tmp_path)
    tags = subprocess.run(["skopeo", "list-tags", "--tls-verify=false", "--creds", "ci:s3cret",
                           f"docker://{auth_registry}/app"], capture_output=True, check=True, text=True).stdout
    assert "buildcache" in json.loads(tags)["Tags"]  # --cache-to type=registry


def test_gitlab_matrix_runs(auth_registry: str, pip_tree: Path, run_job: Any, tmp_path: Path) -> None:
    project = _project(tmp_path)
    [path] = _init(project, "gitlab", auth_registry, pip_tree, "--matrix")
    doc = yaml.safe_load(path.read_text())
    jobs = _gitlab_jobs(doc)
    assert list(jobs) == ["build-linux-amd64", "build-linux-arm64", "merge"]
    artifacts = []
    for name in ("build-linux-amd64", "build-linux-arm64"):
        checkout = run_job(name, jobs[name], {}, project)
        artifacts += [checkout / p for p in doc[name]["artifacts"]["paths"]]
    # pushed by digest only: no release tag before the merge job
    tags = subprocess.run(["skopeo", "list-tags", "--tls-verify=false", "--creds", "ci:s3cret",
                           f"docker://{auth_registry}/app"], capture_output=True, check=True, text=True).stdout
    assert RELEASE not in json.loads(tags)["Tags"]
    run_job("merge", jobs["merge"], {}, project, tuple(artifacts))
    _check_published(auth_registry, tmp_path)


def test_woodpecker_workflow_runs(auth_registry: str, pip_tree: Path, run_job: Any, tmp_path: Path) -> None:
    project = _project(tmp_path)
    [path] = _init(project, "woodpecker", auth_registry, pip_tree)
    run_job("publish", _woodpecker_job(yaml.safe_load(path.read_text())), {}, project)
    _check_published(auth_registry, tmp_path)
