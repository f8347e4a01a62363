"""Write images as archives: an OCI image layout in a tar, or a docker-archive that ``docker load`` reads.

OCI archive: ``oci-layout``, ``index.json`` (one entry named ``org.opencontainers.image.ref.name``), and every
reachable blob under ``blobs/<alg>/<hex>``. Docker archive (single platform): ``manifest.json`` with Config,
RepoTags and Layers paths pointing at the same blob files, plus the layout files, as Docker 25 writes it; Docker
20.10 reads it too (it only needs manifest.json). Archives are written to a temp file and renamed, so a failed
save never leaves a half-written file under the target name; entries are sorted and timestamps fixed.
``OciExporter`` (``type=oci``, ``tar=false`` for a layout directory) and ``DockerExporter`` (``type=docker``)
write a build result this way; ``polyarch save`` calls the writers directly.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar

from polyarch.content.images import REF_NAME, Image, ImageStore
from polyarch.content.store import LAYOUT_VERSION
from polyarch.digest import Digest
from polyarch.errors import NotFound, StoreError, UsageError
from polyarch.fsutil import atomic_file
from polyarch.oci import reference
from polyarch.oci.spec import Descriptor, Index, MediaType, canonical_json, is_index
from polyarch.platform import Platform

from .exporter import ExportContext, ExportReport
from .spec import OutputSpec, output_names

if TYPE_CHECKING:
    from polyarch.exporters.assemble import BuildResult

__all__ = ["DockerExporter", "OciExporter", "docker_repo_tag", "write_docker_archive", "write_docker_archive_entries",
           "write_oci_archive", "write_oci_archive_entries", "write_oci_dir"]

_MTIME = 0


@contextmanager
def _atomic_output(dest: Path | str) -> Iterator[IO[bytes]]:
    """A binary file that appears at ``dest`` only when the block succeeds; ``-`` means stdout."""
    if str(dest) == "-":
        import sys

        yield sys.stdout.buffer
        return
    try:
        with atomic_file(Path(dest)) as f:
            yield f
    except OSError as exc:
        raise StoreError(f"cannot write {dest}: {exc.strerror or exc}") from exc


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), _MTIME, 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mtime, info.mode = tarfile.DIRTYPE, _MTIME, 0o755
    tar.addfile(info)


def _add_blob(tar: tarfile.TarFile, images: ImageStore, digest: Digest) -> None:
    path = images.store.blob_path(digest)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise NotFound(f"blob {digest} is missing from the store; pull the image again") from None
    info = tarfile.TarInfo(f"blobs/{digest.algorithm}/{digest.hex}")
    info.size, info.mtime, info.mode = st.st_size, _MTIME, 0o644
    with open(path, "rb") as f:
        tar.addfile(info, f)


def _select(images: ImageStore, desc: Descriptor, platforms: Sequence[Platform]) -> tuple[Descriptor, Index | None]:
    """With platforms: a new index holding only the best match for each (or the single image itself). A new index
    is made in memory (and returned) and goes into the archive only, never into the store."""
    if not platforms:
        return desc, None
    chosen = images.images(desc, platforms)
    if len(chosen) == 1 and not is_index(desc.media_type):
        return desc, None
    doc = images.read_document(desc).document
    oci = not isinstance(doc, Index) or doc.media_type.startswith("application/vnd.oci")
    index = Index(tuple(i.descriptor for i in chosen), MediaType.OCI_INDEX if oci else MediaType.DOCKER_MANIFEST_LIST,
                  {})
    raw = index.to_json()
    return Descriptor(index.media_type, Digest.of(raw), len(raw)), index


def _blobs(images: ImageStore, root: Descriptor) -> list[Digest]:
    seen: dict[Digest, None] = {}
    for d in images.walk(root):
        seen.setdefault(d.digest, None)
    return sorted(seen)


def write_oci_archive(images: ImageStore, desc: Descriptor, name: str | None, dest: Path | str, *,
                      platforms: Sequence[Platform] = ()) -> Descriptor:
    """Write an OCI layout tar of ``desc`` (optionally narrowed to ``platforms``); returns the root written."""
    return write_oci_archive_entries(images, [(desc, name)], dest, platforms=platforms)[0]


def write_oci_archive_entries(images: ImageStore, entries: Sequence[tuple[Descriptor, str | None]],
                              dest: Path | str, *, platforms: Sequence[Platform] = ()) -> list[Descriptor]:
    """Write an OCI layout tar holding every ``(desc, name)`` entry, each optionally narrowed to ``platforms``
    (``polyarch save A B``); each blob once. Returns the roots written."""
    selected = [_select(images, desc, platforms) for desc, _ in entries]
    made = {root.digest: index for root, index in selected if index is not None}  # narrowed indexes, in memory
    entries = [(root, name) for (root, _), (_, name) in zip(selected, entries, strict=True)]
    from polyarch.content.referrers import referrers_under

    tops = [child for root, _ in entries for child in
            (made[root.digest].manifests if root.digest in made else (root,))]  # what the store holds
    refs = list({r.digest: r for top in tops for r in referrers_under(images, top)}.values())  # attestations
    index = canonical_json({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": [root.with_annotations({REF_NAME: name} if name else {}).to_dict()
                                          for root, name in entries] + [r.to_dict() for r in refs]})
    blobs = sorted({d for root in [*tops, *refs] for d in _blobs(images, root)} | set(made))
    with _atomic_output(dest) as out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, "blobs")
        for alg in sorted({d.algorithm for d in blobs}):
            _add_dir(tar, f"blobs/{alg}")
        for digest in blobs:
            if digest in made:
                _add_bytes(tar, f"blobs/{digest.algorithm}/{digest.hex}", made[digest].to_json())
            else:
                _add_blob(tar, images, digest)
        _add_bytes(tar, "index.json", index)
        _add_bytes(tar, "oci-layout", LAYOUT_VERSION)
    return [root for root, _ in entries]


def write_oci_dir(images: ImageStore, desc: Descriptor, name: str | None, dest: Path) -> None:
    """Write (or add to) an OCI layout directory at ``dest`` (``type=oci,tar=false``)."""
    from polyarch.content.store import ContentStore

    target = ImageStore(ContentStore(dest))
    for digest in _blobs(images, desc):
        if not target.store.has(digest):
            with images.store.open(digest) as f:
                target.store.ingest(f, expected=digest)
    if name:
        target.set_name(name, desc)
    else:
        target.update(lambda entries: [*entries, desc])
    from polyarch.content.referrers import SUBJECT_ANNOTATION, add_store_referrers, referrers_under

    kept = referrers_under(images, desc)  # attestations: unnamed entries of the layout's index.json too
    for ref in kept:
        for digest in _blobs(images, ref):
            if not target.store.has(digest):
                with images.store.open(digest) as f:
                    target.store.ingest(f, expected=digest)
    add_store_referrers(target, [(r, Digest.parse(r.annotations[SUBJECT_ANNOTATION])) for r in kept])


def docker_repo_tag(name: str) -> str:
    """``docker.io/library/app`` → ``app:latest``, as ``docker load`` expects in RepoTags."""
    ref = reference.parse(name).defaulted()
    familiar = ref.familiar
    return familiar.split("@", 1)[0]


def write_docker_archive(images: ImageStore, image: Image, names: Sequence[str], dest: Path | str) -> None:
    """Write one platform's image as a docker-archive (``docker load -i``)."""
    write_docker_archive_entries(images, [(image, names)], dest)


def write_docker_archive_entries(images: ImageStore, entries: Sequence[tuple[Image, Sequence[str]]],
                                 dest: Path | str) -> None:
    """Write a docker-archive of several one-platform images, one ``manifest.json`` entry each with its names."""
    manifest: list[dict[str, object]] = []
    digests: set[Digest] = set()
    index_entries = []
    for image, names in entries:
        for layer in image.manifest.layers:
            if layer.media_type.endswith("zstd"):
                raise UsageError("docker-archive cannot hold zstd layers (docker load would fail)",
                                 hint="save with --format oci, or rebuild with compression=gzip")
        config_digest = image.manifest.config.digest
        manifest.append({
            "Config": f"blobs/{config_digest.algorithm}/{config_digest.hex}",
            "RepoTags": [docker_repo_tag(n) for n in names],
            "Layers": [f"blobs/{d.digest.algorithm}/{d.digest.hex}" for d in image.manifest.layers],
        })
        digests |= {config_digest, image.descriptor.digest, *(d.digest for d in image.manifest.layers)}
        index_entries += [image.descriptor.with_annotations({REF_NAME: n} if n else {}).to_dict()
                          for n in (names or [""])]
    index = canonical_json({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": index_entries})
    with _atomic_output(dest) as out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for digest in sorted(digests):
            _add_blob(tar, images, digest)
        _add_bytes(tar, "index.json", index)
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        _add_bytes(tar, "oci-layout", LAYOUT_VERSION)


class OciExporter:
    """``type=oci``: an OCI archive at ``dest`` (a layout directory with ``tar=false``), named by the first name."""

    type: ClassVar[str] = "oci"

    def export(self, result: BuildResult, spec: OutputSpec, ctx: ExportContext) -> ExportReport:
        names = output_names(spec, ctx.tags)
        name = names[0] if names else None
        if spec.flag("tar", True):
            write_oci_archive(ctx.images, result.index, name, spec.dest)
        else:
            write_oci_dir(ctx.images, result.index, name, Path(spec.dest))
        return ExportReport()


class DockerExporter:
    """``type=docker``: a docker-archive of the one platform built, tagged with every name."""

    type: ClassVar[str] = "docker"

    def export(self, result: BuildResult, spec: OutputSpec, ctx: ExportContext) -> ExportReport:
        if len(result.images) != 1:
            raise UsageError(f"type=docker holds one platform; this build has {len(result.images)}",
                             hint="use type=oci, or build with one --platform")
        image = ctx.images.image(result.images[0].descriptor)
        write_docker_archive(ctx.images, image, output_names(spec, ctx.tags), spec.dest)
        return ExportReport()
