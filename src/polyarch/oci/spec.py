"""OCI (and Docker v2 schema 2) image models as frozen values, with strict parsing and canonical JSON.

Bytes read from a store or registry are never re-serialized: callers keep the raw bytes they parsed, so a
digest never changes. ``to_json()`` is only for documents polyarch creates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from polyarch.digest import Digest
from polyarch.errors import InvalidDigest, InvalidManifest, InvalidPlatform
from polyarch.oci.jsonutil import canonical_json
from polyarch.oci.jsonutil import load_object as _load_object
from polyarch.oci.jsonutil import strmap as _strmap
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
# buildx's attestation manifests sit in the index beside the images (platform unknown/unknown), annotated with
# their kind and the digest of the image manifest they describe.
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
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


# Image config models live in polyarch.oci.config; re-exported here for callers that import them from spec.
from polyarch.oci.config import (  # noqa: E402
    ContainerConfig,
    History,
    ImageConfig,
    parse_config,
)
