"""Crafting hostile input: tar layers entry by entry, images that stack them on the busybox base, and an OCI
archive that ``polyarch load`` takes.

``Entry`` is one tar member (kinds: file, dir, symlink, link, chr, blk, fifo, sparse); ``layer_tar`` writes a
sequence of them with ``tarfile`` (PAX headers override names as written, so ``path=../x`` over a benign ustar
name is possible), raw GNU sparse members by hand. ``oci_archive`` writes an OCI layout tar holding one image:
the base's layers (read straight from a store's blobs) plus the given layers, with the diff_ids the layers
really have unless a test asks for a lie.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.worker.conftest import E, add_member

__all__ = ["BASE_PLATFORM", "Entry", "HostileImage", "base_image", "gz", "layer_tar", "oci_archive", "sha256"]

BASE_PLATFORM = {"architecture": "amd64", "os": "linux"}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"

@dataclass(frozen=True)
class Entry(E):
    """One tar member (the fields of ``tests.worker.conftest.E``). ``name``/``link`` may carry surrogate escapes
    (non-UTF-8 bytes); ``pax`` adds PAX records (``path``, ``linkpath``, ``SCHILY.xattr.*``); kind ``sparse`` is
    a GNU sparse file of ``size`` bytes holding ``data`` at offset 0 and a hole after it."""

    size: int = 0


def File(name: str, data: bytes = b"pwn\n", **kw: object) -> Entry:
    return Entry(name, "file", data=data, **kw)  # type: ignore[arg-type]


def Dir(name: str, **kw: object) -> Entry:
    return Entry(name, "dir", **kw)  # type: ignore[arg-type]


def Sym(name: str, link: str, **kw: object) -> Entry:
    return Entry(name, "symlink", link=link, **kw)  # type: ignore[arg-type]


def Link(name: str, link: str, **kw: object) -> Entry:
    return Entry(name, "link", link=link, **kw)  # type: ignore[arg-type]


def _octal(n: int, width: int) -> bytes:
    return ("%0*o" % (width - 1, n)).encode() + b"\0"


def _gnu_sparse_member(e: Entry) -> bytes:
    """A GNU 'S' member: ``e.data`` at offset 0 of a ``e.size``-byte file (one map entry, no extension)."""
    h = bytearray(512)
    name = e.name.encode("utf-8", "surrogateescape")[:100]
    h[0:len(name)] = name
    h[100:108] = _octal(e.mode if e.mode is not None else 0o644, 8)
    h[108:116] = _octal(e.uid, 8)
    h[116:124] = _octal(e.gid, 8)
    h[124:136] = _octal(len(e.data), 12)          # bytes stored in the archive
    h[136:148] = _octal(e.mtime, 12)
    h[156:157] = b"S"
    h[257:265] = b"ustar  \0"                       # GNU magic
    h[386:398] = _octal(0, 12)                      # sparse[0].offset
    h[398:410] = _octal(len(e.data), 12)            # sparse[0].numbytes
    h[482:483] = b"\0"                              # isextended
    h[483:495] = _octal(e.size, 12)                 # realsize
    h[148:156] = b" " * 8
    h[148:156] = ("%06o\0 " % sum(h)).encode()
    pad = (-len(e.data)) % 512
    return bytes(h) + e.data + b"\0" * pad


def layer_tar(entries: Iterable[Entry], *, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """The uncompressed tar of ``entries``, in order (duplicates and all)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as tf:
        for e in entries:
            if e.kind == "sparse":
                raw = _gnu_sparse_member(e)
                buf.write(raw)
                tf.offset += len(raw)
                continue
            add_member(tf, e)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256(self.data)

    def descriptor(self, **extra: object) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


@dataclass(frozen=True)
class BaseImage:
    """The busybox base for one platform, as blobs read from a store: its config and its layer blobs."""

    config: dict[str, object]
    layers: tuple[Blob, ...]


def _blob(store: Path, digest: str) -> bytes:
    algo, hexd = digest.split(":", 1)
    return (store / "blobs" / algo / hexd).read_bytes()


def base_image(store: Path, name: str, platform: dict[str, str] = BASE_PLATFORM) -> BaseImage:
    """Read ``name`` for ``platform`` from the OCI layout at ``store`` (no polyarch code involved)."""
    top = json.loads((store / "index.json").read_text())
    desc = next(m for m in top["manifests"] if m.get("annotations", {}).get(REF_NAME) == name)
    doc = json.loads(_blob(store, desc["digest"]))
    if "manifests" in doc:
        desc = next(m for m in doc["manifests"]
                    if all(m.get("platform", {}).get(k) == v for k, v in platform.items()))
        doc = json.loads(_blob(store, desc["digest"]))
    config = json.loads(_blob(store, doc["config"]["digest"]))
    layers = tuple(Blob(layer["mediaType"], _blob(store, layer["digest"])) for layer in doc["layers"])
    return BaseImage(config, layers)


@dataclass(frozen=True)
class HostileImage:
    """An image: ``base`` (or nothing) plus ``layers`` (uncompressed tars; gzip-compressed when stored) and
    ``gzipped`` layers streamed elsewhere (too big to hold uncompressed).

    Lies on request: ``diff_ids`` replaces the config's diff_ids; ``index_platform`` is the platform the index
    claims while the config keeps the base's; ``config_bytes`` replaces the config document."""

    layers: Sequence[bytes]
    base: BaseImage | None = None
    compress: bool = True
    diff_ids: Sequence[str] | None = None
    index_platform: dict[str, str] | None = None
    config_bytes: bytes | None = None
    extra_config: dict[str, object] = field(default_factory=dict)
    gzipped: Sequence[tuple[bytes, str]] = ()  # (gzip bytes, diff_id) layers made elsewhere, after ``layers``

    def blobs(self) -> tuple[Blob, Blob, Blob, list[Blob]]:
        """(index, manifest, config, layers)."""
        base_layers = list(self.base.layers) if self.base else []
        new = [Blob(LAYER_GZIP, gz(t)) if self.compress else Blob(LAYER_TAR, t) for t in self.layers]
        new += [Blob(LAYER_GZIP, g) for g, _ in self.gzipped]
        cfg: dict[str, object] = dict(self.base.config) if self.base else {
            **BASE_PLATFORM, "config": {"Env": ["PATH=/bin"]}}
        base_diffs = list(cfg.get("rootfs", {}).get("diff_ids", [])) if self.base else []  # type: ignore[union-attr]
        diffs = list(self.diff_ids) if self.diff_ids is not None else [*base_diffs, *(sha256(t) for t in self.layers),
                                                                          *(d for _, d in self.gzipped)]
        cfg = {**cfg, **self.extra_config, "rootfs": {"type": "layers", "diff_ids": diffs}}
        cfg.pop("history", None)
        config = Blob(OCI_CONFIG, self.config_bytes if self.config_bytes is not None else
                      json.dumps(cfg, sort_keys=True).encode())
        layers = [*base_layers, *new]
        manifest = Blob(OCI_MANIFEST, json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
            "layers": [b.descriptor() for b in layers]}).encode())
        platform = self.index_platform or {"architecture": str(cfg.get("architecture")), "os": str(cfg.get("os"))}
        index = Blob(OCI_INDEX, json.dumps({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [manifest.descriptor(platform=platform)]}).encode())
        return index, manifest, config, layers


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    tar.addfile(ti, io.BytesIO(data))


def oci_archive(image: HostileImage, name: str, path: Path) -> Path:
    """Write ``image`` as an OCI archive naming it ``name``; returns ``path``."""
    index, manifest, config, layers = image.blobs()
    top = {"schemaVersion": 2, "mediaType": OCI_INDEX,
           "manifests": [index.descriptor(annotations={REF_NAME: name})]}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tar, "index.json", json.dumps(top).encode())
        seen: set[str] = set()
        for blob in (index, manifest, config, *layers):
            if blob.digest not in seen:
                seen.add(blob.digest)
                _add(tar, "blobs/sha256/" + blob.digest.split(":", 1)[1], blob.data)
    return path
