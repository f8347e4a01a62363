"""SLSA provenance predicates (v1, and v0.2 as buildx writes by default) of one platform image.

API::

    BuildFacts(...)                    # the build as a whole: made by the CLI (args, target, Dockerfile, context…)
    Material(uri, digest)              # a resolved dependency: base image, git context, Dockerfile
    platform_materials(pp, resolve) -> (materials, steps)   # from one platform's plan; resolve: FROM ref → digest
    predicate_v1(facts, platform, materials, steps) -> dict
    predicate_v02(facts, platform, materials, steps) -> dict

The shapes follow BuildKit's (``buildType`` ``https://mobyproject.org/buildkit@v1``, ``build-arg:NAME`` keys in
the request, secrets and ssh listed by id only, never their values). ``mode=max`` adds the steps
(``buildConfig``: every vertex of the platform's graph with its kind, description and inputs). With
``SOURCE_DATE_EPOCH`` the start and finish times are that time and the invocation id derives from the
subject, so two builds of the same inputs write the same bytes.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from polyarch import ops
from polyarch.digest import Digest
from polyarch.frontend.convert.plan import PlatformPlan
from polyarch.platform import Platform

__all__ = ["BUILD_TYPE", "BuildFacts", "Material", "platform_materials", "predicate_v02", "predicate_v1"]

BUILD_TYPE = "https://mobyproject.org/buildkit@v1"


@dataclass(frozen=True, slots=True)
class Material:
    uri: str
    digest: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "digest": dict(self.digest)}


@dataclass(frozen=True, slots=True)
class BuildFacts:
    """What the CLI knows of the build (nothing secret: secrets and ssh by id only)."""

    builder_id: str
    builder_version: str
    builder_platform: str
    dockerfile_name: str
    dockerfile_digest: Digest
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str = ""
    platforms: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    ssh: tuple[str, ...] = ()
    context_uri: str = ""  # the git remote (or URL) of the context, "" for a plain directory
    context_commit: str = ""  # its commit (sha1), "" when not a git checkout
    started: str = ""
    finished: str = ""
    invocation_id: str = ""
    reproducible: bool = False  # SOURCE_DATE_EPOCH was set
    mode: str = "min"


def _purl_docker(ref: str, platform: Platform) -> str:
    name, _, tag = ref.partition("@")[0].rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    name = name or ref
    out = "pkg:docker/" + urllib.parse.quote(name.partition("@")[0], safe="/.-_")
    if tag:
        out += "@" + urllib.parse.quote(tag, safe=".-_")
    return out + "?platform=" + urllib.parse.quote(str(platform), safe="")


def platform_materials(pp: PlatformPlan, resolve: Callable[[str, Platform], Digest | None]
                       ) -> tuple[list[Material], list[dict[str, Any]]]:
    """The base images (``FROM``, ``COPY --from=IMAGE``) of one platform's graph, by digest, and its steps."""
    materials: list[Material] = []
    steps: list[dict[str, Any]] = []
    seen: set[str] = set()
    for v in ops.walk([pp.result]):
        steps.append({"id": v.digest, "kind": v.kind, "description": getattr(v, "description", "") or "",
                      "inputs": [i.digest for i in v.inputs]})
        if isinstance(v, ops.ImageSource):
            digest = resolve(v.ref, v.platform)
            uri = _purl_docker(v.ref, v.platform)
            if uri in seen:
                continue
            seen.add(uri)
            materials.append(Material(uri, {digest.algorithm: digest.hex} if digest is not None else {}))
    return materials, steps


def _all_materials(facts: BuildFacts, materials: list[Material]) -> list[dict[str, Any]]:
    out = [m.to_dict() for m in materials]
    if facts.context_uri and facts.context_commit:
        out.append({"uri": facts.context_uri, "digest": {"sha1": facts.context_commit}})
    out.append({"uri": f"dockerfile:{facts.dockerfile_name}",
                "digest": {facts.dockerfile_digest.algorithm: facts.dockerfile_digest.hex}})
    return out


def _config_source(facts: BuildFacts, path_key: str) -> dict[str, Any]:
    src: dict[str, Any] = {path_key: facts.dockerfile_name}
    if facts.context_uri:
        src["uri"] = facts.context_uri
    if facts.context_commit:
        src["digest"] = {"sha1": facts.context_commit}
    return src


def _args(facts: BuildFacts) -> dict[str, str]:
    args = {f"build-arg:{k}": v for k, v in sorted(facts.build_args.items())}
    if facts.target:
        args["target"] = facts.target
    if facts.platforms:
        args["platform"] = ",".join(facts.platforms)
    return args


def _request(facts: BuildFacts) -> dict[str, Any]:
    req: dict[str, Any] = {"frontend": "dockerfile.v0", "args": _args(facts)}
    if facts.secrets:
        req["secrets"] = [{"id": s} for s in facts.secrets]
    if facts.ssh:
        req["ssh"] = [{"id": s} for s in facts.ssh]
    return req


def predicate_v1(facts: BuildFacts, platform: Platform, materials: list[Material],
                 steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``https://slsa.dev/provenance/v1`` predicate of one platform image."""
    internal: dict[str, Any] = {"builderPlatform": facts.builder_platform, "platform": str(platform)}
    if facts.mode == "max":
        internal["buildConfig"] = {"steps": steps}
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {"configSource": _config_source(facts, "path"), "request": _request(facts)},
            "internalParameters": internal,
            "resolvedDependencies": _all_materials(facts, materials),
        },
        "runDetails": {
            "builder": {"id": facts.builder_id, "version": {"polyarch": facts.builder_version}},
            "metadata": {"invocationID": facts.invocation_id, "startedOn": facts.started,
                         "finishedOn": facts.finished,
                         "buildkit_completeness": {"request": True, "resolvedDependencies": True},
                         "buildkit_hermetic": False, "buildkit_reproducible": facts.reproducible},
        },
    }


def predicate_v02(facts: BuildFacts, platform: Platform, materials: list[Material],
                  steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``https://slsa.dev/provenance/v0.2`` predicate of one platform image (buildx's default version)."""
    pred: dict[str, Any] = {
        "builder": {"id": facts.builder_id},
        "buildType": BUILD_TYPE,
        "materials": _all_materials(facts, materials),
        "invocation": {"configSource": _config_source(facts, "entryPoint"),
                       "parameters": {**_request(facts), "locals": [{"name": "context"}, {"name": "dockerfile"}]},
                       "environment": {"platform": facts.builder_platform}},
        "metadata": {"buildInvocationID": facts.invocation_id, "buildStartedOn": facts.started,
                     "buildFinishedOn": facts.finished, "reproducible": facts.reproducible,
                     "completeness": {"parameters": True, "environment": True, "materials": True},
                     BUILD_TYPE + "#metadata": {"polyarch": {"version": facts.builder_version,
                                                             "platform": str(platform)}}},
    }
    if facts.mode == "max":
        pred["buildConfig"] = {"steps": steps}
    return pred
