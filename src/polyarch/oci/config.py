"""OCI / Docker image configuration (``application/vnd.oci.image.config.v1+json``) as frozen values.

``parse_config`` is strict where it matters (platform fields, ``rootfs.diff_ids``) and keeps unknown top-level
fields in ``extra``, so a config polyarch rewrites (a build on top of a base) loses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from polyarch.digest import Digest
from polyarch.errors import InvalidDigest, InvalidManifest
from polyarch.oci.jsonutil import canonical_json as _canonical_json
from polyarch.oci.jsonutil import load_object as _load_object
from polyarch.oci.jsonutil import strmap as _strmap
from polyarch.platform import Platform

__all__ = ["ContainerConfig", "History", "ImageConfig", "parse_config"]


@dataclass(frozen=True, slots=True)
class History:
    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.created:
            out["created"] = self.created
        if self.created_by:
            out["created_by"] = self.created_by
        if self.author:
            out["author"] = self.author
        if self.comment:
            out["comment"] = self.comment
        if self.empty_layer:
            out["empty_layer"] = True
        return out

    @classmethod
    def from_dict(cls, d: Any) -> History:
        if not isinstance(d, dict):
            raise InvalidManifest("history entry must be an object")
        return cls(str(d.get("created") or ""), str(d.get("created_by") or ""), str(d.get("author") or ""),
                   str(d.get("comment") or ""), bool(d.get("empty_layer", False)))


# Docker / OCI names of the run-time configuration fields, in the order they are written.
_CC_FIELDS = {
    "user": "User", "exposed_ports": "ExposedPorts", "env": "Env", "entrypoint": "Entrypoint", "cmd": "Cmd",
    "volumes": "Volumes", "working_dir": "WorkingDir", "labels": "Labels", "stop_signal": "StopSignal",
    "args_escaped": "ArgsEscaped", "healthcheck": "Healthcheck", "on_build": "OnBuild", "shell": "Shell",
}


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    args_escaped: bool = False
    healthcheck: Mapping[str, Any] | None = None
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] = ()

    def __hash__(self) -> int:
        return hash((self.user, self.env, self.entrypoint, self.cmd, self.working_dir))

    def env_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.env:
            k, _, v = item.partition("=")
            out[k] = v
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.volumes:
            out["Volumes"] = {v: {} for v in self.volumes}
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.args_escaped:
            out["ArgsEscaped"] = True
        if self.healthcheck is not None:
            out["Healthcheck"] = dict(self.healthcheck)
        if self.on_build:
            out["OnBuild"] = list(self.on_build)
        if self.shell:
            out["Shell"] = list(self.shell)
        return out

    @classmethod
    def from_dict(cls, d: Any) -> ContainerConfig:
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise InvalidManifest("image config 'config' must be an object")

        def strlist(key: str) -> tuple[str, ...] | None:
            v = d.get(key)
            if v is None:
                return None
            if isinstance(v, str):
                return (v,)
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise InvalidManifest(f"image config {key} must be a list of strings")
            return tuple(v)

        def keys(key: str) -> tuple[str, ...]:
            v = d.get(key) or {}
            if not isinstance(v, dict):
                raise InvalidManifest(f"image config {key} must be an object")
            return tuple(v)

        hc = d.get("Healthcheck")
        return cls(
            user=str(d.get("User") or ""),
            exposed_ports=keys("ExposedPorts"),
            env=strlist("Env") or (),
            entrypoint=strlist("Entrypoint"),
            cmd=strlist("Cmd"),
            volumes=keys("Volumes"),
            working_dir=str(d.get("WorkingDir") or ""),
            labels=_strmap(d.get("Labels"), "image config Labels"),
            stop_signal=str(d.get("StopSignal") or ""),
            args_escaped=bool(d.get("ArgsEscaped", False)),
            healthcheck=dict(hc) if isinstance(hc, dict) else None,
            on_build=strlist("OnBuild") or (),
            shell=strlist("Shell") or (),
        )


@dataclass(frozen=True, slots=True)
class ImageConfig:
    architecture: str
    os: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    created: str = ""
    author: str = ""
    config: ContainerConfig = field(default_factory=ContainerConfig)
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[History, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.architecture, self.os, self.variant, self.diff_ids))

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant, self.os_version, self.os_features)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out["architecture"] = self.architecture
        out["os"] = self.os
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.created:
            out["created"] = self.created
        if self.author:
            out["author"] = self.author
        out["config"] = self.config.to_dict()
        out["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in self.diff_ids]}
        if self.history:
            out["history"] = [h.to_dict() for h in self.history]
        return out

    def to_json(self) -> bytes:
        return _canonical_json(self.to_dict())


_CONFIG_KEYS = {"architecture", "os", "variant", "os.version", "os.features", "created", "author", "config",
                "rootfs", "history"}


def parse_config(raw: bytes) -> ImageConfig:
    """Parse an image config, strictly where it matters (platform fields, rootfs diff_ids).

    :raises InvalidManifest: on invalid JSON or fields.
    """
    doc = _load_object(raw, "image config")
    arch, os_name = doc.get("architecture"), doc.get("os")
    if not isinstance(arch, str) or not isinstance(os_name, str) or not arch or not os_name:
        raise InvalidManifest("image config lacks architecture or os")
    rootfs = doc.get("rootfs") or {"type": "layers", "diff_ids": []}
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise InvalidManifest("image config rootfs.type must be 'layers'")
    raw_ids = rootfs.get("diff_ids") or []
    if not isinstance(raw_ids, list):
        raise InvalidManifest("image config rootfs.diff_ids must be a list")
    try:
        diff_ids = tuple(Digest.parse(d) for d in raw_ids)
    except InvalidDigest as exc:
        raise InvalidManifest(f"image config diff_ids: {exc}") from None
    history = doc.get("history") or []
    if not isinstance(history, list):
        raise InvalidManifest("image config history must be a list")
    feats = doc.get("os.features") or ()
    return ImageConfig(
        architecture=arch,
        os=os_name,
        variant=str(doc.get("variant") or ""),
        os_version=str(doc.get("os.version") or ""),
        os_features=tuple(feats) if isinstance(feats, list) else (),
        created=str(doc.get("created") or ""),
        author=str(doc.get("author") or ""),
        config=ContainerConfig.from_dict(doc.get("config")),
        diff_ids=diff_ids,
        history=tuple(History.from_dict(h) for h in history),
        extra={k: v for k, v in doc.items() if k not in _CONFIG_KEYS},
    )
