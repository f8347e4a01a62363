"""A ``BuildRequest`` as a protocol message, and back (the node rebuilds the value with its own context paths).

Local context directories travel by content (``filesync``): the message names them (``context`` and every
``--build-context`` that is a directory) and the node substitutes its temporary copies. ``docker-image://``
contexts stay strings (the node pulls them itself). Secret values travel base64-encoded in this one message and
are only ever held in memory on the node. ``--ssh`` agents and ``--cache-from``/``--cache-to`` are not forwarded
to nodes yet: ``check_forwardable`` refuses them before any work.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polyarch import ops
from polyarch.errors import UsageError
from polyarch.pipeline.run import BuildRequest
from polyarch.platform import Platform, parse

from .protocol import ProtocolError

__all__ = ["check_forwardable", "local_contexts", "request_from_json", "request_to_json"]


def check_forwardable(req: BuildRequest, node: str) -> None:
    """:raises UsageError: the request uses something remote nodes cannot do yet."""
    if req.ssh:
        raise UsageError(f"--ssh is not forwarded to builder nodes yet (node {node})",
                         hint="build the platforms that need an ssh agent on the local node")
    if req.cache_from or req.cache_to:
        raise UsageError(f"--cache-from/--cache-to are not supported with builder nodes yet (node {node})")


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


def request_from_json(doc: Mapping[str, Any], contexts: Mapping[str, Path]) -> BuildRequest:
    """:raises ProtocolError: a field of the wrong type."""
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
            no_cache_filter=tuple(str(x) for x in doc.get("no_cache_filter", ())))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"bad build request: {exc!r}") from None
