"""``verify_image``: check every platform of an image or index, streaming its layers.

For each platform: the manifest and config are read (digest-checked); the config's os/architecture/variant are
compared with the index descriptor's; each layer blob is streamed through a size check, decompression (with
the bomb limit) and a diff_id check into a ``MergedView``; then every ELF file of the merged filesystem is
matched against the platform. Platforms run on a small thread pool (decompression and hashing release the GIL).
Nothing is unpacked to disk; memory stays bounded (bench/bench_verify.py: ~30 MiB for 500 MB of layers).

``polyarch build --verify`` and bake call this on their result before publishing::

    report = verify_image(images, index_descriptor, require=platforms)
    if not report.ok: raise BuildError(...)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from polyarch.content.compression import DEFAULT_DECOMPRESS_LIMIT, decompressed
from polyarch.content.images import MAX_CONFIG, MAX_MANIFEST, ImageStore
from polyarch.content.store import ContentStore
from polyarch.digest import Digest, Hasher, VerifyingReader
from polyarch.errors import (
    DigestMismatch,
    InvalidLayer,
    InvalidManifest,
    LimitExceeded,
    NotFound,
    RegistryError,
)
from polyarch.oci.spec import Descriptor, Index, Manifest, is_index, is_layer, parse_config, parse_document
from polyarch.platform import Platform
from polyarch.sources.protocol import ContentSource
from polyarch.sources.store import StoreSource

from .checks import (
    DEFAULT_IGNORE,
    check_config,
    check_elf,
    check_index_entries,
    expectation,
    ignored,
    platform_key,
)
from .fs import MergedView
from .report import Issue, PlatformResult, VerifyReport

__all__ = ["verify_image"]

MAX_NESTING = 4


def _codec_errors() -> tuple[type[Exception], ...]:
    """isal's IsalError escapes content.compression's gzip reader (it is not an OSError): caught here."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover
        return ()
    return (isal_zlib.error,)


_CODEC_ERRORS = _codec_errors()
_Outcome = tuple[PlatformResult, list[Issue], Platform | None]


class _Hashing:
    """Hashes what passes through ``read`` (the uncompressed layer, for its diff_id)."""

    def __init__(self, inner: IO[bytes], algorithm: str) -> None:
        self._inner = inner
        self.hasher = Hasher(algorithm)

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self.hasher.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _as_source(source: ImageStore | ContentStore | ContentSource) -> ContentSource:
    return StoreSource(source) if isinstance(source, ImageStore | ContentStore) else source


def verify_image(source: ImageStore | ContentStore | ContentSource, descriptor: Descriptor, *,
                 platforms: Sequence[Platform] = (), require: Sequence[Platform] = (),
                 ignore: Sequence[str] = DEFAULT_IGNORE, subject: str = "", jobs: int | None = None,
                 decompress_limit: int = DEFAULT_DECOMPRESS_LIMIT) -> VerifyReport:
    """Verify the image or index ``descriptor`` names; problems are issues of the report, not exceptions.

    :param platforms: verify only these platforms (default: all of the index).
    :param require: platforms that must be in the index.
    :param ignore: ``fnmatch`` patterns of absolute paths whose ELF files are not checked.
    :raises NotFound, DigestMismatch, InvalidManifest: when ``descriptor`` itself cannot be read.
    """
    src = _as_source(source)
    raw = src.read(descriptor, limit=MAX_MANIFEST)
    doc = parse_document(raw, descriptor.media_type)
    issues: list[Issue] = []
    if isinstance(doc, Index):
        entries = _flatten(src, doc, issues, depth=1)
        images, index_issues = check_index_entries(entries, selected=platforms, required=require)
        issues += index_issues
        work: list[tuple[Descriptor, bytes | None]] = [(e, None) for e in images]
    else:
        work = [(descriptor, raw)]
    workers = max(1, min(len(work), jobs or min(4, os.cpu_count() or 1)))

    def one(item: tuple[Descriptor, bytes | None]) -> _Outcome:
        return _verify_platform(src, item[0], item[1], ignore, decompress_limit)

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
            results = list(pool.map(one, work))
    else:
        results = [one(item) for item in work]
    if isinstance(doc, Manifest):
        issues += _single_selection(results[0][2], platforms, require)
    for _result, platform_issues, _platform in results:
        issues += platform_issues
    return VerifyReport(subject or str(descriptor.digest), str(descriptor.digest), descriptor.media_type,
                        tuple(r for r, _, _ in results), tuple(issues))


def _single_selection(platform: Platform | None, platforms: Sequence[Platform],
                      require: Sequence[Platform]) -> list[Issue]:
    """For a single-platform image: the selected or required platforms it is not."""
    out: list[Issue] = []
    for p in (*require, *platforms):
        if platform is not None and platform_key(p) == platform_key(platform):
            continue
        what = "required platform" if p in require else "platform"
        issue = Issue(str(p.normalized()), "missing-platform",
                      f"{what} is not in the image (a single-platform image of {platform or 'unknown platform'})",
                      expected=str(p.normalized()))
        if all(i.platform != issue.platform for i in out):
            out.append(issue)
    return out


def _flatten(src: ContentSource, index: Index, issues: list[Issue], depth: int) -> list[Descriptor]:
    """Index entries, with nested indexes replaced by their own entries."""
    out: list[Descriptor] = []
    for entry in index.manifests:
        if not is_index(entry.media_type):
            out.append(entry)
            continue
        if depth >= MAX_NESTING:
            issues.append(Issue("index", "invalid-image", f"indexes nested deeper than {MAX_NESTING} levels",
                                digest=str(entry.digest)))
            continue
        try:
            nested = parse_document(src.read(entry, limit=MAX_MANIFEST), entry.media_type)
        except (NotFound, DigestMismatch, InvalidManifest, LimitExceeded) as exc:
            issues.append(_blob_issue("index", exc, entry.digest))
            continue
        if isinstance(nested, Index):
            out += _flatten(src, nested, issues, depth + 1)
    return out


def _missing_remote(exc: RegistryError) -> Exception:
    """A registry's 404 for a blob or manifest is a missing blob; other registry errors stop the run."""
    if exc.status == 404:
        return NotFound(exc.message)
    raise exc


def _blob_issue(platform: str, exc: Exception, digest: Digest, path: str = "") -> Issue:
    kind = {NotFound: "missing-blob", DigestMismatch: "integrity", InvalidManifest: "invalid-image",
            LimitExceeded: "invalid-layer", InvalidLayer: "invalid-layer"}.get(type(exc), "invalid-layer")
    return Issue(platform, kind, str(exc), path=path, digest=str(digest))


def _verify_platform(src: ContentSource, entry: Descriptor, raw: bytes | None, ignore: Sequence[str],
                     limit: int) -> _Outcome:
    label = str(entry.platform.normalized()) if entry.platform is not None else "?"
    issues: list[Issue] = []
    try:
        if raw is None:
            raw = src.read(entry, limit=MAX_MANIFEST)
        manifest = parse_document(raw, entry.media_type)
        if not isinstance(manifest, Manifest):
            raise InvalidManifest(f"{entry.digest} is an index where an image manifest was expected")
        config = parse_config(src.read(manifest.config, limit=MAX_CONFIG))
    except (NotFound, DigestMismatch, InvalidManifest, LimitExceeded, RegistryError) as exc:
        err = _missing_remote(exc) if isinstance(exc, RegistryError) else exc
        return PlatformResult(label, str(entry.digest), issues=1), [_blob_issue(label, err, entry.digest)], \
            entry.platform
    platform = entry.platform if entry.platform is not None else config.platform
    label = str(platform.normalized())
    mismatch = check_config(entry, config.platform)
    if mismatch is not None:
        issues.append(mismatch)
    if len(manifest.layers) != len(config.diff_ids):
        issues.append(Issue(label, "invalid-image", f"{len(manifest.layers)} layers but "
                            f"{len(config.diff_ids)} diff_ids in the config", digest=str(entry.digest)))
    view = MergedView()
    totals = {"entries": 0, "files": 0}
    complete = True
    for i, layer in enumerate(manifest.layers):
        diff_id = config.diff_ids[i] if i < len(config.diff_ids) else None
        try:
            if not is_layer(layer.media_type):
                raise InvalidLayer(f"layer {i + 1} has media type {layer.media_type!r}, not a layer")
            with src.open_blob(layer) as blob:
                stats = _apply_layer(view, blob, layer, diff_id, i, limit)
        except (NotFound, DigestMismatch, InvalidLayer, LimitExceeded, RegistryError) as exc:
            err = _missing_remote(exc) if isinstance(exc, RegistryError) else exc
            issues.append(_blob_issue(label, err, layer.digest, path=f"layer {i + 1}"))
            complete = False
            break
        except _CODEC_ERRORS as exc:
            issues.append(Issue(label, "invalid-layer", f"corrupt compressed stream: {exc}", path=f"layer {i + 1}",
                                digest=str(layer.digest)))
            complete = False
            break
        totals["entries"] += stats.entries
        totals["files"] += stats.files
    elf_count = skipped = 0
    want = expectation(platform)
    if complete:
        for f in view.elf_files():
            elf_count += 1
            if ignored(f.path, ignore):
                skipped += 1
                continue
            if want is not None and (problem := check_elf(label, want, f)) is not None:
                issues.append(problem)
    return PlatformResult(label, str(entry.digest), len(manifest.layers), totals["entries"], totals["files"],
                          elf_count, skipped, len(issues)), issues, platform


class _Counting:
    """Counts the stored (compressed) bytes read, and fails as soon as there are more than the descriptor says."""

    def __init__(self, inner: IO[bytes], desc: Descriptor) -> None:
        self._inner = inner
        self._desc = desc
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self.size += len(data)
        if self.size > self._desc.size:
            raise DigestMismatch(f"blob {self._desc.digest} is larger than its descriptor's {self._desc.size} bytes")
        return data


def _apply_layer(view: MergedView, blob: IO[bytes], layer: Descriptor, diff_id: Digest | None, index: int,
                 limit: int) -> Any:
    """Stream one layer into ``view``. The uncompressed bytes are checked against the config's diff_id, which
    covers the layer's content; the compressed blob's digest is only recomputed when there is no diff_id (the
    content store checks it on ingest, the registry client on download, a layout or archive source as it is read),
    which saves a third of the time."""
    stored: IO[bytes] = VerifyingReader(blob, layer.digest, layer.size) if diff_id is None \
        else _Counting(blob, layer)  # type: ignore[assignment]
    plain = _Hashing(decompressed(stored, limit=limit), diff_id.algorithm if diff_id else "sha256")  # type: ignore[arg-type]
    stats = view.apply(plain, index)  # type: ignore[arg-type]
    plain.drain()
    while stored.read(1 << 20):
        pass
    if isinstance(stored, _Counting) and stored.size != layer.size:
        raise DigestMismatch(f"blob {layer.digest} has {stored.size} bytes, its descriptor says {layer.size}")
    got = plain.hasher.digest()
    if diff_id is not None and got != diff_id:
        raise DigestMismatch(f"uncompressed layer hashes to {got}, the config's diff_id is {diff_id}")
    return stats
