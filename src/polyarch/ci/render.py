"""``CiSpec`` → the provider's workflow files (``WorkflowFile``: path in the repository and YAML text).

Every job runs in a privileged ``python:3.12-bookworm`` container as root (README: "CI containers"): RUN steps
need runc's namespaces and mounts, and ``polyarch binfmt --install all`` registers QEMU in the host kernel.

- GitHub, Gitea and Forgejo Actions read one file shape (``.github``/``.gitea``/``.forgejo/workflows/``); secrets
  ``REGISTRY_USER`` and ``REGISTRY_PASSWORD``; the artifact actions carry digest files to the merge job (``@v3``
  on Gitea and Forgejo).
- Woodpecker substitutes ``${…}`` in the file itself, so every ``$`` of a command is written ``$$``; secrets
  ``registry_user`` and ``registry_password``; with ``--matrix`` one workflow per platform (agents labelled
  ``platform=…``), and as workflows share no files, each pushes a temporary tag that the merge workflow merges.
- GitLab CI: masked CI/CD variables ``REGISTRY_USER`` and ``REGISTRY_PASSWORD``; jobs on runners tagged
  ``linux-amd64``, ``linux-arm64``, … with ``--matrix``; digests passed as artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from polyarch.platform import Platform

from .scripts import Step, build_step, merge_step, platform_step, setup_steps, slug
from .spec import CiSpec, repository

IMAGE = "python:3.12-bookworm"
ON_TAGS = "v*"


@dataclass(frozen=True)
class WorkflowFile:
    """One file to write: its path relative to the repository root and its text."""

    path: str
    text: str


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, keys in the order given."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def _yaml(header: str, doc: dict[str, Any]) -> str:
    return header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000, default_flow_style=False)


def _header(spec: CiSpec, path: str) -> str:
    flags = " --matrix" if spec.matrix else ""
    return (f"# {path}: written by `polyarch ci init --provider {spec.provider}{flags}`.\n"
            f"# Runs on every pushed tag v* and publishes the image(s) with their SBOM and provenance.\n")


# --- GitHub, Gitea, Forgejo Actions ---------------------------------------------------------------------------

_ACTIONS_DIR = {"github": ".github", "gitea": ".gitea", "forgejo": ".forgejo"}
_ACTIONS_RUNNER = {"github": "ubuntu-24.04", "gitea": "ubuntu-latest", "forgejo": "docker"}
_GITHUB_NATIVE = {"linux/amd64": "ubuntu-24.04", "linux/arm64": "ubuntu-24.04-arm"}
_SECRETS = {"REGISTRY_USER": "${{ secrets.REGISTRY_USER }}", "REGISTRY_PASSWORD": "${{ secrets.REGISTRY_PASSWORD }}"}


def _actions_steps(steps: list[Step]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in steps:
        entry: dict[str, Any] = {"name": s.name}
        if s.name == "Log in":
            entry["env"] = dict(_SECRETS)
        entry["run"] = s.script + "\n"
        out.append(entry)
    return out


def _actions_runner(spec: CiSpec, p: Platform) -> str | list[str]:
    if spec.provider == "github":
        return _GITHUB_NATIVE.get(str(p)) or ["self-hosted", "linux", slug(p)]
    return slug(p)


def _actions_job(runs_on: str | list[str], steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"runs-on": runs_on, "container": {"image": IMAGE, "options": "--privileged"},
            "env": {"VERSION": "${{ github.ref_name }}"}, "defaults": {"run": {"shell": "bash"}},
            "steps": [{"uses": "actions/checkout@v4"}, *steps]}


def _actions(spec: CiSpec) -> list[WorkflowFile]:
    path = f"{_ACTIONS_DIR[spec.provider]}/workflows/polyarch.yml"
    v = "v4" if spec.provider == "github" else "v3"
    jobs: dict[str, Any] = {}
    if not spec.matrix:
        jobs["publish"] = _actions_job(_ACTIONS_RUNNER[spec.provider],
                                       _actions_steps([*setup_steps(spec, emulate=True), build_step(spec)]))
    else:
        for p in spec.platforms:
            upload = {"uses": f"actions/upload-artifact@{v}",
                      "with": {"name": f"digest-{slug(p)}" if v == "v4" else "digests",
                               "path": f"digest-{slug(p)}.txt"}}
            jobs[f"build-{slug(p)}"] = _actions_job(
                _actions_runner(spec, p),
                [*_actions_steps([*setup_steps(spec, emulate=False), platform_step(spec, p)]), upload])
        download = {"uses": f"actions/download-artifact@{v}",
                    "with": {"pattern": "digest-*", "merge-multiple": True} if v == "v4" else {"name": "digests"}}
        merge = _actions_job(_ACTIONS_RUNNER[spec.provider],
                             _actions_steps([*setup_steps(spec, emulate=False), merge_step(spec)]))
        merge["steps"] = [download, *merge["steps"][1:]]  # no checkout: only the digests are needed
        jobs["merge"] = {"needs": [f"build-{slug(p)}" for p in spec.platforms], **merge}
    doc = {"name": "polyarch", "on": {"push": {"tags": [ON_TAGS]}}, "jobs": jobs}
    return [WorkflowFile(path, _yaml(_header(spec, path), doc))]


# --- Woodpecker -------------------------------------------------------------------------------------------------

_WOODPECKER_SECRETS = {"REGISTRY_USER": {"from_secret": "registry_user"},
                       "REGISTRY_PASSWORD": {"from_secret": "registry_password"}}


def _woodpecker_commands(steps: list[Step]) -> list[str]:
    # woodpecker substitutes ${…} in the file before running anything: $$ is a literal $
    return ['export VERSION="$CI_COMMIT_TAG"'.replace("$", "$$")] + [s.script.replace("$", "$$") for s in steps]


def _woodpecker_doc(steps: list[Step], **extra: Any) -> dict[str, Any]:
    return {"when": [{"event": "tag", "ref": f"refs/tags/{ON_TAGS}"}], **extra,
            "steps": [{"name": "publish", "image": IMAGE, "privileged": True,
                       "environment": dict(_WOODPECKER_SECRETS), "commands": _woodpecker_commands(steps)}]}


def _woodpecker(spec: CiSpec) -> list[WorkflowFile]:
    if not spec.matrix:
        path = ".woodpecker/polyarch.yaml"
        doc = _woodpecker_doc([*setup_steps(spec, emulate=True), build_step(spec)])
        return [WorkflowFile(path, _yaml(_header(spec, path), doc))]
    repo = repository(spec.tags[0])
    files, names, temps = [], [], []
    for p in spec.platforms:
        temp = f"{repo}:ci-${{CI_PIPELINE_NUMBER}}-{slug(p)}"
        names.append(f"build-{slug(p)}")
        temps.append(temp)
        path = f".woodpecker/build-{slug(p)}.yaml"
        doc = _woodpecker_doc([*setup_steps(spec, emulate=False), platform_step(spec, p, name=temp)],
                              labels={"platform": str(p)})
        files.append(WorkflowFile(path, _yaml(_header(spec, path), doc)))
    path = ".woodpecker/merge.yaml"
    doc = _woodpecker_doc([*setup_steps(spec, emulate=False), merge_step(spec, temps)], depends_on=names)
    files.append(WorkflowFile(path, _yaml(_header(spec, path), doc)))
    return files


# --- GitLab CI --------------------------------------------------------------------------------------------------


def _gitlab_job(steps: list[Step], **extra: Any) -> dict[str, Any]:
    return {"image": IMAGE, **extra, "script": [s.script for s in steps]}


def _gitlab(spec: CiSpec) -> list[WorkflowFile]:
    path = ".gitlab-ci.yml"
    doc: dict[str, Any] = {"workflow": {"rules": [{"if": "$CI_COMMIT_TAG =~ /^v/"}]},
                           "variables": {"VERSION": "$CI_COMMIT_TAG"}}
    if not spec.matrix:
        doc["publish"] = _gitlab_job([*setup_steps(spec, emulate=True), build_step(spec)])
    else:
        doc["stages"] = ["build", "merge"]
        for p in spec.platforms:
            doc[f"build-{slug(p)}"] = _gitlab_job(
                [*setup_steps(spec, emulate=False), platform_step(spec, p)], stage="build", tags=[slug(p)],
                artifacts={"paths": [f"digest-{slug(p)}.txt"]})
        doc["merge"] = _gitlab_job([*setup_steps(spec, emulate=False), merge_step(spec)], stage="merge",
                                   needs=[f"build-{slug(p)}" for p in spec.platforms])
    return [WorkflowFile(path, _yaml(_header(spec, path), doc))]


def render(spec: CiSpec) -> list[WorkflowFile]:
    """The workflow files of ``spec.provider`` (validate ``spec`` with ``spec_error`` first)."""
    if spec.provider == "woodpecker":
        return _woodpecker(spec)
    if spec.provider == "gitlab":
        return _gitlab(spec)
    return _actions(spec)
