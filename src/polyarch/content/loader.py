"""Load an OCI archive or a docker-archive into the local store.

The archive is opened for random access; member names are used only to find entries, never as paths to write.
OCI archives: every blob reachable from ``index.json`` is ingested with its digest verified, and each entry's
``org.opencontainers.image.ref.name`` becomes a name. Docker archives (``manifest.json``): the config and layer
files are ingested as blobs (an uncompressed layer's digest is its diff_id), a manifest is written for each entry,
and each of its RepoTags becomes a name; an entry without a name is kept unnamed, found by its image ID
(``ImageStore.lookup``). Nothing is named until every blob of an image is in the store. An OCI archive's
referrers (attestations, signatures: unnamed entries annotated with their subject, or unnamed manifests with a
``subject``) are kept as store referrers (``content.referrers``), not as images, and not reported.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from polyarch.content.compression import sniff
from polyarch.content.pathindex import IndexBuilder, LayerIndexes, record
from polyarch.digest import Digest
from polyarch.errors import InvalidLayer, InvalidManifest, LimitExceeded, NotFound
from polyarch.oci.spec import Descriptor, Manifest, MediaType, parse_config, parse_document

from .images import MAX_CONFIG, MAX_MANIFEST, REF_NAME, ImageStore, check_config_size
from .referrers import SUBJECT_ANNOTATION, add_store_referrers, is_referrer, plain_referrer, referrer_entry

__all__ = ["ArchiveReader", "Loaded", "load_archive"]

MAX_JSON = 16 << 20  # the archive's own index.json / manifest.json


class ArchiveReader:
    """A tar archive opened for random access (``polyarch load``, and ``sources.archive`` reading one in place)."""

    def __init__(self, path: Path) -> None:
        try:
            self.tar = tarfile.open(path, "r:*")
        except FileNotFoundError:
            raise NotFound(f"{path}: no such file") from None
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidLayer(f"{path}: not a tar archive ({exc})") from None
        self.path = path
        try:
            self.members = {m.name.lstrip("./") if m.name.startswith("./") else m.name: m
                            for m in self.tar.getmembers()}
        except (tarfile.TarError, EOFError) as exc:
            raise InvalidLayer(f"{path}: truncated or corrupt tar archive ({exc})") from None

    def open(self, name: str) -> IO[bytes]:
        member = self.members.get(name)
        if member is None or not member.isreg():
            raise NotFound(f"{self.path}: archive has no file {name!r}")
        f = self.tar.extractfile(member)
        assert f is not None
        return f

    def read_capped(self, name: str, limit: int) -> bytes:
        """The file ``name``, refused before more than ``limit`` bytes of it are read.

        :raises LimitExceeded: naming the file and the limit.
        """
        member = self.members.get(name)
        if member is not None and member.size > limit:
            raise LimitExceeded(f"{self.path}: {name} is larger than {limit} bytes")
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise LimitExceeded(f"{self.path}: {name} is larger than {limit} bytes")
        return data

    def read_json(self, name: str) -> Any:
        data = self.read_capped(name, MAX_JSON)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise InvalidManifest(f"{self.path}: {name} is not valid JSON") from exc

    def size(self, name: str) -> int:
        return self.members[name].size


@dataclass(frozen=True, slots=True)
class Loaded:
    """One image an archive brought: the name it got (``None`` for an untagged one) and its image ID."""

    name: str | None
    image_id: Digest


def load_archive(images: ImageStore, path: Path, *, on_progress: Callable[[str], None] | None = None,
                 indexes: LayerIndexes | None = None) -> list[Loaded]:
    """Load the archive at ``path``; returns what it brought, in archive order. With ``indexes`` (the build
    cache, given by the CLI) each layer's path index is made in the pass that hashes it.

    An entry without a name (a docker archive without RepoTags, an OCI archive entry without a ref name) is kept
    unnamed in ``index.json`` (once) and is usable through its image ID, as docker's ``Loaded image ID:``.
    """
    archive = ArchiveReader(path)
    with images.store.transaction():
        pending = _load(images, archive, indexes)
    loaded = []
    kept = [(plain_referrer(d), Digest.parse(d.annotations[SUBJECT_ANNOTATION])) for _, d in pending if is_referrer(d)]
    for name, desc in pending:  # only now that every blob is in: names never point at missing content
        if is_referrer(desc):
            continue
        if name:
            images.set_name(name, desc)
        else:
            images.update(lambda entries, d=desc: entries if any(e.digest == d.digest and not e.annotations.get(REF_NAME)
                                                                  for e in entries) else [*entries, d])
        loaded.append(Loaded(name, images.image_id(desc)))
    add_store_referrers(images, kept)
    return loaded


def _load(images: ImageStore, archive: ArchiveReader, indexes: LayerIndexes | None
          ) -> list[tuple[str | None, Descriptor]]:
    path = archive.path
    try:
        if "index.json" in archive.members and "oci-layout" in archive.members:
            return _load_oci(images, archive, indexes)
        if "manifest.json" in archive.members:
            return _load_docker(images, archive, indexes)
        raise InvalidLayer(f"{path}: neither an OCI archive (index.json) nor a docker archive (manifest.json)")
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidLayer(f"{path}: truncated or corrupt tar archive ({exc})") from None
    finally:
        archive.tar.close()


def _ingest_blob(images: ImageStore, archive: ArchiveReader, desc: Descriptor, limit: int | None = None,
                 indexes: LayerIndexes | None = None) -> None:
    name = f"blobs/{desc.digest.algorithm}/{desc.digest.hex}"
    if images.store.stat(desc.digest) == desc.size:
        return
    builder = IndexBuilder() if indexes is not None else None
    with archive.open(name) as f:
        images.store.ingest(f, expected=desc.digest, size=desc.size, limit=limit,  # type: ignore[arg-type]
                            tap=builder.feed if builder is not None else None)
    if indexes is not None and builder is not None:
        record(indexes, desc.digest, builder)


def _load_tree(images: ImageStore, archive: ArchiveReader, desc: Descriptor, limit: int | None = None,
               indexes: LayerIndexes | None = None, *, layer: bool = False) -> None:
    """Ingest children before parents, so a document is never in the store without what it references.
    Documents are read with ``MAX_MANIFEST``, configs ingested with ``MAX_CONFIG`` (declared and actual size)."""
    if desc.media_type in (MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST,
                           MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST):
        name = f"blobs/{desc.digest.algorithm}/{desc.digest.hex}"
        raw = archive.read_capped(name, MAX_MANIFEST)
        if Digest.of(raw, desc.digest.algorithm) != desc.digest:
            raise InvalidManifest(f"{archive.path}: {name} does not match its digest")
        doc = parse_document(raw, desc.media_type)
        if isinstance(doc, Manifest):
            check_config_size(doc.config)
            _load_tree(images, archive, doc.config, MAX_CONFIG)
            for blob in doc.layers:
                _load_tree(images, archive, blob, indexes=indexes, layer=True)
        else:
            for child in doc.manifests:
                if child.platform is not None and \
                        f"blobs/{child.digest.algorithm}/{child.digest.hex}" not in archive.members:
                    continue  # a platform the archive does not carry (e.g. narrowed by --platform)
                _load_tree(images, archive, child, indexes=indexes)
    _ingest_blob(images, archive, desc, limit, indexes if layer else None)


def _load_oci(images: ImageStore, archive: ArchiveReader, indexes: LayerIndexes | None
              ) -> list[tuple[str | None, Descriptor]]:
    doc = archive.read_json("index.json")
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        raise InvalidManifest(f"{archive.path}: index.json has no manifests list")
    pending: list[tuple[str | None, Descriptor]] = []
    for i, raw in enumerate(doc["manifests"]):
        desc = Descriptor.from_dict(raw, f"index.json manifests[{i}]")
        _load_tree(images, archive, desc, indexes=indexes)
        name = desc.annotations.get(REF_NAME) or desc.annotations.get("io.containerd.image.name")
        subject = desc.annotations.get(SUBJECT_ANNOTATION) or (None if name else _subject_of(archive, desc))
        if subject and Digest.is_valid(subject):
            pending.append((None, referrer_entry(desc, Digest.parse(subject))))  # its annotations kept
        else:
            pending.append((name, desc.with_annotations({})))
    return pending


def _subject_of(archive: ArchiveReader, desc: Descriptor) -> str | None:
    """The ``subject`` digest of an (already loaded and verified) image manifest entry, if it has one."""
    if desc.media_type != MediaType.OCI_MANIFEST:
        return None
    doc = parse_document(archive.read_capped(f"blobs/{desc.digest.algorithm}/{desc.digest.hex}", MAX_MANIFEST),
                         desc.media_type)
    return str(doc.subject.digest) if isinstance(doc, Manifest) and doc.subject is not None else None


def _load_docker(images: ImageStore, archive: ArchiveReader, indexes: LayerIndexes | None
                 ) -> list[tuple[str | None, Descriptor]]:
    entries = archive.read_json("manifest.json")
    if not isinstance(entries, list) or not entries:
        raise InvalidManifest(f"{archive.path}: manifest.json must be a non-empty list")
    pending: list[tuple[str | None, Descriptor]] = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) or \
                not isinstance(entry.get("Layers"), list):
            raise InvalidManifest(f"{archive.path}: manifest.json entry {n} lacks Config or Layers")
        raw_config = archive.read_capped(entry["Config"], MAX_CONFIG)
        config = parse_config(raw_config)
        if len(config.diff_ids) != len(entry["Layers"]):
            raise InvalidManifest(f"{archive.path}: entry {n} has {len(entry['Layers'])} layers but "
                                  f"{len(config.diff_ids)} diff_ids")
        layers = []
        for layer_name, diff_id in zip(entry["Layers"], config.diff_ids, strict=True):
            layers.append(_ingest_docker_layer(images, archive, str(layer_name), diff_id, indexes))
        cfg_digest, cfg_size = images.store.write(raw_config)
        manifest = Manifest(Descriptor(MediaType.DOCKER_CONFIG, cfg_digest, cfg_size), tuple(layers),
                            MediaType.DOCKER_MANIFEST)
        desc = images.put_document(manifest, config.platform)
        pending.extend((str(tag), desc) for tag in entry.get("RepoTags") or [])
        if not entry.get("RepoTags"):
            pending.append((None, desc))
    return pending


def _ingest_docker_layer(images: ImageStore, archive: ArchiveReader, name: str, diff_id: Digest,
                         indexes: LayerIndexes | None) -> Descriptor:
    with archive.open(name) as f:
        head = f.read(4)
    kind = sniff(head)
    builder = IndexBuilder() if indexes is not None else None
    with archive.open(name) as f:
        digest, size = images.store.ingest(f, tap=builder.feed if builder is not None else None)  # type: ignore[arg-type]
    if indexes is not None and builder is not None:
        record(indexes, digest, builder)
    if kind == "none":
        if digest != diff_id:
            raise InvalidLayer(f"{archive.path}: layer {name} hashes to {digest}, config says {diff_id}")
        return Descriptor(MediaType.DOCKER_LAYER, digest, size)
    if kind == "zstd":
        return Descriptor(MediaType.OCI_LAYER_ZSTD, digest, size)
    return Descriptor(MediaType.DOCKER_LAYER_GZIP, digest, size)
