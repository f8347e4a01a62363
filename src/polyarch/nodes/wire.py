"""A ``BuildRequest`` as a protocol message, and back (the node rebuilds the value with its own context paths).

Local context directories travel by content (``filesync``): the message names them (``context`` and every
``--build-context`` that is a directory) and the node substitutes its temporary copies. ``docker-image://``
contexts stay strings (the node pulls them itself). Secret values travel base64-encoded in this one message and
are only ever held in memory on the node. ``--cache-from``/``--cache-to`` of ``type=registry`` travel as they
are (each node imports and exports for its own platforms); ``type=local`` names a directory of the client's disk,
so ``check_forwardable`` refuses it before any work. ``--ssh`` travels as its ids alone: the node makes one socket
per id and relays its connections to the client's agent (``agentrelay``). ``RegistryAccess`` is the client's
docker-config credentials of the registries the node pushes to or exchanges cache with, for one build only.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyarch import ops
from polyarch.errors import UsageError
from polyarch.exporters.cache import CacheSpec
from polyarch.pipeline.run import BuildRequest
from polyarch.platform import Platform, parse

from .protocol import ProtocolError

__all__ = ["RegistryAccess", "check_forwardable", "local_contexts", "registry_hosts", "request_from_json",
           "request_to_json", "ssh_ids"]


@dataclass(frozen=True, slots=True)
class RegistryAccess:
    """What a node needs to reach the registries of one build: ``auths`` (docker config key of the host →
    (user name, secret), forwarded from the client's docker config, held in memory only) and the hosts the
    client reaches over plain http or without TLS verification (``insecure``)."""

    auths: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    insecure: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"auths": {h: {"username": u, "secret": s} for h, (u, s) in self.auths.items()},
                "insecure": list(self.insecure)}

    @classmethod
    def from_json(cls, doc: Any) -> RegistryAccess:
        """:raises ProtocolError: not the shape ``to_json`` writes."""
        if doc is None:
            return cls()
        try:
            auths = {str(h): (str(v["username"]), str(v["secret"])) for h, v in dict(doc.get("auths", {})).items()}
            return cls(auths, tuple(str(h) for h in doc.get("insecure", ())))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(f"bad registry access: {exc!r}") from None


def check_forwardable(req: BuildRequest, node: str) -> None:
    """:raises UsageError: the request uses something remote nodes cannot do."""
    for spec in (*req.cache_from, *req.cache_to):
        if spec.type != "registry":
            raise UsageError(f"--cache-from/--cache-to {spec.describe()} is a directory of this machine, which "
                             f"builder node {node} cannot read or write",
                             hint="use type=registry,ref=NAME with builder nodes")


def registry_hosts(req: BuildRequest) -> set[str]:
    """The registry hosts of the request's cache import and export (what the node must be able to reach)."""
    from polyarch.oci import reference

    return {reference.parse(spec.ref).domain for spec in (*req.cache_from, *req.cache_to) if spec.ref}


def _specs_json(specs: tuple[CacheSpec, ...]) -> list[dict[str, Any]]:
    return [{"type": s.type, "ref": s.ref, "attrs": dict(s.attrs)} for s in specs]


def _specs_from_json(raw: Any) -> tuple[CacheSpec, ...]:
    out = []
    for doc in raw or ():
        spec = CacheSpec(str(doc["type"]), ref=str(doc.get("ref", "")),
                         attrs={str(k): str(v) for k, v in dict(doc.get("attrs", {})).items()})
        if spec.type != "registry" or not spec.ref:
            raise ValueError(f"cache location {spec.describe()} is not a registry reference")
        out.append(spec)
    return tuple(out)


def ssh_ids(doc: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``--ssh`` ids of a request message. :raises ProtocolError: not a list of plain names."""
    raw = doc.get("ssh", [])
    if not isinstance(raw, list) or not all(isinstance(x, str) and x and x.replace("-", "").replace("_", "")
                                            .replace(".", "").isalnum() for x in raw):
        raise ProtocolError("bad build request: ssh ids must be a list of names")
    return tuple(raw)


def local_contexts(req: BuildRequest) -> dict[str, Path]:
    """Context name → local directory whose content must go to the node."""
    out = {"context": req.context}
    for name, value in req.build_contexts.items():
        if not value.startswith("docker-image://"):
            out[name] = Path(value)
    return out


def request_to_json(req: BuildRequest, platforms: tuple[Platform, ...]) -> dict[str, Any]:
    return {
        "dockerfile": req.dockerfile, "filename": req.filename, "platforms": [str(p) for p in platforms],
        "target": req.target, "build_args": dict(req.build_args), "labels": dict(req.labels),
        "excludes": list(req.excludes),
        "image_contexts": {k: v for k, v in req.build_contexts.items() if v.startswith("docker-image://")},
        "no_cache": req.no_cache, "epoch": req.epoch, "pull": req.pull, "annotations": list(req.annotations),
        "network": req.network, "allow": sorted(req.allow),
        "run_options": {"extra_hosts": [list(h) for h in req.run_options.extra_hosts],
                        "ulimits": [list(u) for u in req.run_options.ulimits],
                        "shm_size": req.run_options.shm_size, "cgroup_parent": req.run_options.cgroup_parent},
        "no_cache_filter": list(req.no_cache_filter),
        "secrets": {k: base64.b64encode(v).decode() for k, v in req.secrets.items()},
        "cache_from": _specs_json(req.cache_from), "cache_to": _specs_json(req.cache_to),
        "ssh": sorted(req.ssh),  # the ids: the node makes its own sockets, relayed to the client's agent
        "build_platform": str(req.build_platform) if req.build_platform else None,
    }


def _run_options(doc: Mapping[str, Any]) -> ops.RunOptions:
    """The build's RUN options, checked again as the CLI checks them (the client is not trusted)."""
    from polyarch.pipeline import runflags

    shm_size = int(doc.get("shm_size", 0))
    if shm_size < 0:
        raise ValueError(f"negative shm_size {shm_size}")
    try:
        return ops.RunOptions(
            extra_hosts=runflags.parse_add_hosts(f"{h}={ip}" for h, ip in doc.get("extra_hosts", ())),
            ulimits=runflags.parse_ulimits(f"{n}={int(s)}:{int(h)}" for n, s, h in doc.get("ulimits", ())),
            shm_size=shm_size,
            cgroup_parent=runflags.parse_cgroup_parent(str(doc.get("cgroup_parent", ""))))
    except UsageError as exc:
        raise ValueError(exc.message) from None


def request_from_json(doc: Mapping[str, Any], contexts: Mapping[str, Path],
                      ssh: Mapping[str, str] | None = None) -> BuildRequest:
    """The request with the node's context copies and ``ssh`` (id → the node's relay socket).

    :raises ProtocolError: a field of the wrong type, a cache location other than a registry."""
    try:
        named = {k: str(v) for k, v in dict(doc.get("image_contexts", {})).items()}
        named.update({k: str(v) for k, v in contexts.items() if k != "context"})
        epoch = doc.get("epoch")
        return BuildRequest(
            dockerfile=str(doc["dockerfile"]), filename=str(doc.get("filename", "Dockerfile")),
            context=contexts["context"], platforms=tuple(parse(str(p)) for p in doc["platforms"]),
            target=str(doc.get("target", "")),
            build_args={str(k): str(v) for k, v in dict(doc.get("build_args", {})).items()},
            labels={str(k): str(v) for k, v in dict(doc.get("labels", {})).items()},
            excludes=tuple(str(x) for x in doc.get("excludes", ())), build_contexts=named,
            no_cache=bool(doc.get("no_cache")), epoch=None if epoch is None else int(epoch),
            secrets={str(k): base64.b64decode(str(v)) for k, v in dict(doc.get("secrets", {})).items()},
            pull=bool(doc.get("pull")), annotations=tuple(str(x) for x in doc.get("annotations", ())),
            network=str(doc.get("network", "default")), allow=frozenset(str(x) for x in doc.get("allow", ())),
            run_options=_run_options(dict(doc.get("run_options", {}))),
            no_cache_filter=tuple(str(x) for x in doc.get("no_cache_filter", ())),
            cache_from=_specs_from_json(doc.get("cache_from")), cache_to=_specs_from_json(doc.get("cache_to")),
            ssh=dict(ssh or {}),
            build_platform=parse(str(doc["build_platform"])) if doc.get("build_platform") else None)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"bad build request: {exc!r}") from None
