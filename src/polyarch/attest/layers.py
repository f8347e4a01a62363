"""The packages in an image's final filesystem, read from its layers as streams (nothing unpacked, nothing on disk).

API::

    scan_layer(stream) -> LayerFiles                     # one uncompressed tar stream
    merge(layers: [(diff_id, LayerFiles)]) -> Found      # bottom-up, with whiteouts
    image_packages(source, manifest, config) -> list[Package]   # scan (each layer once per process) + merge + scanners

Each layer is read once through ``worker.tarmembers`` (the one tar reader) and only the files the scanners read
are kept: ``/etc/os-release`` (or ``/usr/lib/os-release``), ``/var/lib/dpkg/status`` and ``status.d/*``,
``/lib/apk/db/installed``, the rpm database (``rpmdb.sqlite``, ``Packages`` or ``Packages.db`` under
``/var/lib/rpm`` or ``/usr/lib/sysimage/rpm``), ``*.dist-info/METADATA``, ``*.egg-info/PKG-INFO`` and
``node_modules/[@scope/]NAME/package.json``, each at most ``MAX_DB`` bytes, and the Go build info or
cargo-auditable data of executable ELF files (``binaries.read_binary``, one streamed pass). Whiteouts
(``.wh.NAME``, ``.wh..wh..opq``) delete what lower layers put there, as containerd applies them. Names with
``..`` components are skipped. A package's ``layer`` is the diff_id of the lowest layer from which on its file
listed it, so a dpkg package installed by a build step names that step's layer, not the base's.

Layer results are kept per diff_id for the life of the process (``LayerCache``), so a re-attested result (after
recompression, say) reads no layer twice; ``prescan`` fills it for all platforms at once on a few threads.

Given the store's path indexes (``indexes``: the build cache, from the CLI), a layer is not read at all when its
blob's index holds the files captured for the scanners (``content.pkgfiles``: a pull or load captured them while
the blob streamed in, or an earlier SBOM did); otherwise the blob is read once through ``pathindex.IndexBuilder``
(which captures them) and its index kept for the next build. A layer the capture leaves out (odd tar headers, a
cargo-auditable binary, see ``pkgfiles``) or a stored capture that does not check out is read by ``scan_layer``.
The file names read are ``pkgfiles.wanted``'s: the two readers keep the same files by construction.
"""

from __future__ import annotations

import tarfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import IO

from polyarch.content.compression import decompressed
from polyarch.content.pathindex import IndexBuilder, LayerIndexes, decode, record
from polyarch.content.pkgfiles import MAX_DB, MAX_GO_BINARY, GoBlob, PackageFiles, name_of, wanted, whiteout
from polyarch.digest import Digest
from polyarch.errors import InvalidLayer, PolyarchError
from polyarch.oci.spec import Descriptor, Manifest
from polyarch.sources.protocol import ContentSource
from polyarch.worker.tarmembers import open_members

from .binaries import read_binary
from .cargo import AuditData
from .goinfo import BuildInfo, parse_buildinfo
from .scanners import (
    Distro,
    Package,
    apk_installed,
    cargo_binary,
    dpkg_status,
    go_binary,
    npm_package,
    os_release,
    python_metadata,
    rpm_database,
)

__all__ = ["MAX_DB", "Found", "LayerCache", "LayerFiles", "image_packages", "merge", "prescan", "scan_layer"]

_CHUNK = 1 << 20
_OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
_DPKG = "var/lib/dpkg/status"
_DPKG_D = "var/lib/dpkg/status.d/"
_APK = "lib/apk/db/installed"
_RPM = tuple(f"{d}/{f}" for d in ("var/lib/rpm", "usr/lib/sysimage/rpm")
             for f in ("rpmdb.sqlite", "Packages", "Packages.db"))


@dataclass(slots=True)
class LayerFiles:
    """What one layer holds of interest: file path → bytes (databases), ``BuildInfo`` (Go binaries) or
    ``AuditData`` (cargo-auditable Rust binaries), the paths its whiteouts delete and the directories it makes
    opaque."""

    files: dict[str, bytes | BuildInfo | AuditData] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    opaque: list[str] = field(default_factory=list)


def _read_upto(f: IO[bytes], limit: int) -> bytes | None:
    data = f.read(limit + 1)
    return None if len(data) > limit else data


def scan_layer(stream: IO[bytes]) -> LayerFiles:
    """The files of interest in one uncompressed layer tar stream (read to its end).

    :raises InvalidLayer: the tar stream is malformed (bounded headers, see ``worker.tarmembers``).
    """
    out = LayerFiles()
    tar = open_members(stream, stream=True)
    for member in tar:
        name = name_of(member.name)
        if name is None:
            continue
        if (wh := whiteout(name)) is not None:
            (out.opaque if wh[1] else out.deleted).append(wh[0])
            continue
        out.files.pop(name, None)  # a later entry of the same path replaces it
        if not member.isreg():
            continue
        if wanted(name):
            f = tar.extractfile(member)
            data = _read_upto(f, MAX_DB) if f is not None else None
            if data is not None:
                out.files[name] = data
        elif member.size >= 64 and member.size <= MAX_GO_BINARY and member.mode & 0o111:
            f = tar.extractfile(member)
            info = read_binary(f, member.size) if f is not None else None
            if info is not None:
                out.files[name] = info
    return out


@dataclass(frozen=True, slots=True)
class Found:
    """The merged view: path → (bytes, BuildInfo or AuditData, the diff_ids of the layers that held that path, lowest
    first, each with the content it had there)."""

    files: dict[str, list[tuple[str, bytes | BuildInfo | AuditData]]]


def _under(path: str, top: str) -> bool:
    return top == "" or top == "." or path == top or path.startswith(top + "/")


def merge(layers: Sequence[tuple[str, LayerFiles]]) -> Found:
    """Apply the layers bottom-up: whiteouts and opaque directories drop lower layers' files."""
    files: dict[str, list[tuple[str, bytes | BuildInfo | AuditData]]] = {}
    for diff_id, lf in layers:
        gone = [*lf.deleted, *lf.opaque]
        if gone:
            for path in [p for p in files if any(_under(p, g) for g in gone)]:
                del files[path]
        for path, content in lf.files.items():
            files.setdefault(path, []).append((diff_id, content))
    return Found(files)


def _packages_of(path: str, content: bytes | BuildInfo | AuditData, distro: Distro) -> list[Package]:
    abspath = "/" + path
    if isinstance(content, BuildInfo):
        return go_binary(content, path=abspath)
    if isinstance(content, AuditData):
        return cargo_binary(content, path=abspath)
    if path == _DPKG or path.startswith(_DPKG_D):
        return dpkg_status(content, path=abspath, distro=distro)
    if path == _APK:
        return apk_installed(content, path=abspath, distro=distro)
    if path in _RPM:
        return rpm_database(content, path=abspath, distro=distro)
    if path in _OS_RELEASE:
        return []
    if path.endswith("/package.json"):
        return npm_package(content, path=abspath)
    return python_metadata(content, path=abspath)


def packages(found: Found) -> list[Package]:
    """Every package of the merged view, each with the layer that added it (see the module docstring)."""
    distro = Distro()
    for rel in _OS_RELEASE:
        history = found.files.get(rel)
        if history and isinstance(history[-1][1], bytes):
            distro = os_release(history[-1][1])
            break
    out: list[Package] = []
    for path in sorted(found.files):
        history = found.files[path]
        final = _packages_of(path, history[-1][1], distro)
        if not final:
            continue
        # the lowest layer from which on every version of this file lists the package (same name and version)
        seen: list[set[tuple[str, str]]] = [
            {(p.name, p.version) for p in _packages_of(path, content, distro)} if i < len(history) - 1 else set()
            for i, (_diff, content) in enumerate(history)] if len(history) > 1 else []
        for pkg in final:
            layer_at = len(history) - 1
            key = (pkg.name, pkg.version)
            while layer_at > 0 and key in seen[layer_at - 1]:
                layer_at -= 1
            out.append(replace(pkg, layer=history[layer_at][0]))
    return out


class LayerCache:
    """``scan_layer`` results per diff_id, shared by the threads of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[str, LayerFiles] = {}

    def get(self, diff_id: str) -> LayerFiles | None:
        with self._lock:
            return self._done.get(diff_id)

    def put(self, diff_id: str, files: LayerFiles) -> None:
        with self._lock:
            self._done[diff_id] = files


def from_captured(captured: PackageFiles) -> LayerFiles:
    """``scan_layer``'s result from the files ``pkgfiles.Capture`` kept (Go build info parsed here)."""
    out = LayerFiles(deleted=list(captured.deleted), opaque=list(captured.opaque))
    for path, content in captured.files.items():
        if isinstance(content, GoBlob):
            info = parse_buildinfo(content.data)
            if info is not None:
                out.files[path] = info
        else:
            out.files[path] = content
    return out


def image_packages(source: ContentSource, manifest: Manifest, diff_ids: Sequence[Digest],
                   cache: LayerCache | None = None, indexes: LayerIndexes | None = None) -> list[Package]:
    """The packages of one image (its layers streamed from ``source``, or their stored captures in
    ``indexes``).

    :raises InvalidLayer, DigestMismatch, NotFound, LimitExceeded: a layer cannot be read.
    """
    scanned: list[tuple[str, LayerFiles]] = []
    for i, layer in enumerate(manifest.layers):
        key = str(diff_ids[i]) if i < len(diff_ids) else str(layer.digest)
        lf = cache.get(key) if cache is not None else None
        if lf is None:
            lf = _scan_blob(source, layer, indexes)
            if cache is not None:
                cache.put(key, lf)
        scanned.append((key, lf))
    return packages(merge(scanned))


def prescan(source: ContentSource, layers: Sequence[tuple[str, Descriptor]], cache: LayerCache,
            workers: int = 4, indexes: LayerIndexes | None = None) -> None:
    """Scan the layers (diff_id, descriptor) ``cache`` lacks, several at once (decompression releases the GIL):
    the layers of every platform of a build in one go."""
    todo = {key: desc for key, desc in layers if cache.get(key) is None}
    if not todo:
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo)))) as pool:
        done = dict(zip(todo, pool.map(lambda d: _scan_blob(source, d, indexes), todo.values()), strict=True))
    for key, files in done.items():
        cache.put(key, files)


def _stored(indexes: LayerIndexes, layer: Descriptor) -> LayerFiles | None:
    try:
        data = indexes.layer_index(str(layer.digest))
    except PolyarchError:
        return None  # a hint only: the layer is read instead
    index = decode(data) if data is not None else None
    return from_captured(index.packages) if index is not None and index.packages is not None else None


def _scan_blob(source: ContentSource, layer: Descriptor, indexes: LayerIndexes | None = None) -> LayerFiles:
    if indexes is not None:
        found = _stored(indexes, layer)
        if found is not None:
            return found
        builder = IndexBuilder()
        with source.open_blob(layer) as blob:  # read to the end: the source verifies the digest there
            while chunk := blob.read(_CHUNK):
                builder.feed(chunk)
        index = builder.result()
        if index is not None and index.packages is not None:
            record(indexes, layer.digest, builder)
            return from_captured(index.packages)
    with source.open_blob(layer) as blob:
        plain = decompressed(blob)  # type: ignore[arg-type]
        try:
            return scan_layer(plain)
        except tarfile.TarError as exc:
            raise InvalidLayer(f"layer {layer.digest}: {exc}") from exc
