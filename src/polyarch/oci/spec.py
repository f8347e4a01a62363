"""OCI (and Docker v2 schema 2) image models as frozen values, with strict parsing and canonical JSON.

Bytes read from a store or registry are never re-serialized: callers keep the raw bytes they parsed, so a
digest never changes. ``to_json()`` is only for documents polyarch creates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from polyarch.digest import Digest
from polyarch.errors import InvalidDigest, InvalidManifest, InvalidPlatform
from polyarch.platform import Platform

__all__ = [
    "ContainerConfig",
    "Descriptor",
    "History",
    "ImageConfig",
    "Index",
    "Manifest",
    "MediaType",
    "canonical_json",
    "is_index",
    "is_layer",
    "is_manifest",
    "layer_compression",
    "parse_config",
    "parse_document",
    "parse_index",
    "parse_manifest",
]


class MediaType(StrEnum):
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
    OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    OCI_EMPTY = "application/vnd.oci.empty.v1+json"
    DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


INDEX_TYPES = frozenset({MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({MediaType.OCI_CONFIG, MediaType.DOCKER_CONFIG})
_LAYER_COMPRESSION = {
    MediaType.OCI_LAYER: "none", MediaType.OCI_LAYER_ND: "none", MediaType.DOCKER_LAYER: "none",
    MediaType.OCI_LAYER_GZIP: "gzip", MediaType.OCI_LAYER_ND_GZIP: "gzip", MediaType.DOCKER_LAYER_GZIP: "gzip",
    MediaType.DOCKER_LAYER_FOREIGN: "gzip",
    MediaType.OCI_LAYER_ZSTD: "zstd", MediaType.OCI_LAYER_ND_ZSTD: "zstd",
}
# Accept header for manifest fetches: every type we can read.
MANIFEST_ACCEPT = ", ".join([MediaType.OCI_INDEX, MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST_LIST,
                             MediaType.DOCKER_MANIFEST])
_MEDIA_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFEST_TYPES


def is_layer(media_type: str) -> bool:
    return media_type in _LAYER_COMPRESSION


def layer_compression(media_type: str) -> str:
    """``gzip``, ``zstd`` or ``none`` for a layer media type.

    :raises InvalidManifest: for a media type that is not a known layer type.
    """
    try:
        return _LAYER_COMPRESSION[media_type]  # type: ignore[index]
    except KeyError:
        raise InvalidManifest(f"unsupported layer media type {media_type!r}") from None


def layer_media_type(compression: str, *, oci: bool = True) -> str:
    if oci:
        return {"gzip": MediaType.OCI_LAYER_GZIP, "zstd": MediaType.OCI_LAYER_ZSTD,
                "none": MediaType.OCI_LAYER}[compression]
    if compression == "zstd":
        raise InvalidManifest("zstd layers need OCI media types (oci-mediatypes=true)")
    return {"gzip": MediaType.DOCKER_LAYER_GZIP, "none": MediaType.DOCKER_LAYER}[compression]


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: the same value always gives the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _strmap(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidManifest(f"{what} must be an object of strings")
    return dict(value)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    artifact_type: str = ""
    data: bytes | None = None

    def __hash__(self) -> int:
        return hash((self.media_type, self.digest, self.size, self.platform))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.platform is not None:
            out["platform"] = self.platform.to_oci()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.urls:
            out["urls"] = list(self.urls)
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.data is not None:
            import base64

            out["data"] = base64.b64encode(self.data).decode()
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "descriptor") -> Descriptor:
        if not isinstance(data, dict):
            raise InvalidManifest(f"{where} must be an object")
        mt = data.get("mediaType")
        if not isinstance(mt, str) or not _MEDIA_TYPE_RE.match(mt):
            raise InvalidManifest(f"{where}: invalid mediaType {mt!r}")
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidManifest(f"{where}: invalid size {size!r}")
        try:
            digest = Digest.parse(data.get("digest"))  # type: ignore[arg-type]
        except InvalidDigest as exc:
            raise InvalidManifest(f"{where}: {exc}") from None
        platform = None
        if data.get("platform") is not None:
            try:
                platform = Platform.from_oci(data["platform"])
            except InvalidPlatform as exc:
                raise InvalidManifest(f"{where}: {exc}") from None
        urls = data.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise InvalidManifest(f"{where}: urls must be a list of strings")
        artifact_type = data.get("artifactType") or ""
        if not isinstance(artifact_type, str):
            raise InvalidManifest(f"{where}: invalid artifactType")
        blob = None
        if data.get("data") is not None:
            import base64
            import binascii

            try:
                blob = base64.b64decode(data["data"], validate=True)
            except (binascii.Error, TypeError, ValueError) as exc:
                raise InvalidManifest(f"{where}: data is not base64") from exc
        return cls(mt, digest, size, platform, _strmap(data.get("annotations"), f"{where} annotations"),
                   tuple(urls), artifact_type, blob)

    def with_platform(self, platform: Platform | None) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, platform, self.annotations, self.urls,
                          self.artifact_type, self.data)

    def with_annotations(self, annotations: Mapping[str, str]) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, self.platform, dict(annotations), self.urls,
                          self.artifact_type, self.data)


@dataclass(frozen=True, slots=True)
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = MediaType.OCI_MANIFEST
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str = ""

    def __hash__(self) -> int:
        return hash((self.config, self.layers, self.media_type))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.to_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.subject is not None:
            out["subject"] = self.subject.to_dict()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())


@dataclass(frozen=True, slots=True)
class Index:
    manifests: tuple[Descriptor, ...]
    media_type: str = MediaType.OCI_INDEX
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str = ""

    def __hash__(self) -> int:
        return hash((self.manifests, self.media_type))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [m.to_dict() for m in self.manifests],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.subject is not None:
            out["subject"] = self.subject.to_dict()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())


def _load_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidManifest(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidManifest(f"{what} must be a JSON object")
    return doc


def parse_document(raw: bytes, content_type: str | None = None) -> Manifest | Index:
    """Parse a manifest or an index, strictly.

    The ``mediaType`` field, when present, must equal ``content_type`` when that is given; a document with both
    ``layers`` and ``manifests`` is ambiguous and rejected (CVE-2021-41190).

    :raises InvalidManifest: on any violation.
    """
    doc = _load_object(raw, "manifest")
    if doc.get("schemaVersion") != 2:
        raise InvalidManifest(f"unsupported schemaVersion {doc.get('schemaVersion')!r}")
    mt = doc.get("mediaType")
    if mt is not None and not isinstance(mt, str):
        raise InvalidManifest("mediaType must be a string")
    if content_type and mt and mt != content_type:
        raise InvalidManifest(f"mediaType {mt!r} does not match Content-Type {content_type!r}")
    has_layers, has_manifests = "layers" in doc, "manifests" in doc
    if has_layers and has_manifests:
        raise InvalidManifest("ambiguous document: has both layers and manifests")
    kind = mt or content_type or ""
    if has_manifests or is_index(kind):
        if has_layers or "config" in doc:
            raise InvalidManifest("ambiguous document: an index with config or layers")
        return _index_from(doc, mt or content_type or MediaType.OCI_INDEX)
    if has_layers or "config" in doc or is_manifest(kind):
        return _manifest_from(doc, mt or content_type or MediaType.OCI_MANIFEST)
    raise InvalidManifest("document is neither an image manifest nor an index")


def parse_manifest(raw: bytes, content_type: str | None = None) -> Manifest:
    doc = parse_document(raw, content_type)
    if not isinstance(doc, Manifest):
        raise InvalidManifest("expected an image manifest, got an index")
    return doc


def parse_index(raw: bytes, content_type: str | None = None) -> Index:
    doc = parse_document(raw, content_type)
    if not isinstance(doc, Index):
        raise InvalidManifest("expected an index, got an image manifest")
    return doc


def _subject(doc: dict[str, Any]) -> Descriptor | None:
    return Descriptor.from_dict(doc["subject"], "subject") if doc.get("subject") is not None else None


def _manifest_from(doc: dict[str, Any], media_type: str) -> Manifest:
    if not is_manifest(media_type):
        raise InvalidManifest(f"unsupported manifest mediaType {media_type!r}")
    if "config" not in doc:
        raise InvalidManifest("image manifest has no config")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise InvalidManifest("image manifest layers must be a list")
    artifact_type = doc.get("artifactType") or ""
    if not isinstance(artifact_type, str):
        raise InvalidManifest("artifactType must be a string")
    return Manifest(
        config=Descriptor.from_dict(doc["config"], "config"),
        layers=tuple(Descriptor.from_dict(x, f"layers[{i}]") for i, x in enumerate(layers)),
        media_type=media_type,
        annotations=_strmap(doc.get("annotations"), "annotations"),
        subject=_subject(doc),
        artifact_type=artifact_type,
    )


def _index_from(doc: dict[str, Any], media_type: str) -> Index:
    if not is_index(media_type):
        raise InvalidManifest(f"unsupported index mediaType {media_type!r}")
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise InvalidManifest("index manifests must be a list")
    artifact_type = doc.get("artifactType") or ""
    if not isinstance(artifact_type, str):
        raise InvalidManifest("artifactType must be a string")
    return Index(
        manifests=tuple(Descriptor.from_dict(x, f"manifests[{i}]") for i, x in enumerate(manifests)),
        media_type=media_type,
        annotations=_strmap(doc.get("annotations"), "annotations"),
        subject=_subject(doc),
        artifact_type=artifact_type,
    )


# --- image config -------------------------------------------------------------------------------------------

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
        return canonical_json(self.to_dict())


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
