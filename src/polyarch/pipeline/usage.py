"""What the store's disk holds, as records (``polyarch du``), and the filters ``du`` and ``prune`` share.

API::

    usage = collect_usage(root, images, keep=registry_digests, busy=False, metadata=True)
    usage.records -> tuple[Record, ...]         # kind, id, size (du -sb bytes), last_used, in_use, description
    parse_filters(["until=24h", "type=exec.cachemount"]) -> RecordFilter;  filter.match(record, now)

Each file of the store belongs to exactly one record, so sizes add up: with ``metadata=True`` the last record
(``metadata``) is what no other record holds (``index.json``, ``buildcache.db``, directory entries, …) and the
total equals ``du -sb ROOT``.

| polyarch kind | what | buildx type |
|---|---|---|
| ``result`` | a build step's layer kept by the build cache: its cache entries, the layer blob, its path index (size 0: a step that added no layer, or whose blob is gone) | ``regular`` |
| ``snapshot`` | an extracted layer (``snapshots/<driver>/<chain id>``) | ``regular`` |
| ``cachemount`` | a ``RUN --mount=type=cache`` directory | ``exec.cachemount`` |
| ``blob`` | a store blob that is not a build cache layer: reached from a name (an image), or dangling | ``internal`` |
| ``leftover`` | what builders leave: snapshot temp and active dirs, runtime bundles, ingest temp files | ``internal`` |
| ``metadata`` | the rest (databases, ``index.json``, locks, directory entries) | ``internal`` |

buildx's ``source.local``, ``source.git.checkout`` and ``frontend`` types name nothing polyarch keeps (contexts
and git checkouts are read into temp dirs for one build): as filters they match no record.

In use (never pruned): a blob a name reaches (or ``keep``: the embedded registry's), a ``result`` whose blob is
such a blob, a snapshot in a named image's chain, a cache mount a step holds, a dangling blob younger than
``IN_FLIGHT`` seconds (a pull or an export may be about to name it), leftovers while a build runs (``busy``),
metadata.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from polyarch.content.gc import reachable
from polyarch.content.images import ImageStore
from polyarch.digest import Digest
from polyarch.errors import PolyarchError, UsageError
from polyarch.solver.cache import BuildCache, SnapshotUse
from polyarch.worker.diskuse import tree_size
from polyarch.worker.mounts import cache_mount_dirs
from polyarch.worker.snapshot import SnapshotDirs, chain_ids

from .gcpolicy import parse_duration

__all__ = ["BUILDX_TYPES", "IN_FLIGHT", "KINDS", "Record", "RecordFilter", "Usage", "cache_total", "collect_usage", "image_chains",
           "parse_filters"]

KINDS = ("result", "snapshot", "cachemount", "blob", "leftover", "metadata")
BUILDX_TYPES: dict[str, tuple[str, ...]] = {
    "regular": ("result", "snapshot"),
    "exec.cachemount": ("cachemount",),
    "source.local": (),
    "source.git.checkout": (),
    "frontend": (),
    "internal": ("blob", "leftover", "metadata"),
}
_TYPE_OF = {kind: t for t, kinds in BUILDX_TYPES.items() for kind in kinds}
IN_FLIGHT = 600.0
_FILTER_KEYS = ("until", "type", "id")


@dataclass(frozen=True, slots=True)
class Record:
    """One thing on disk ``du`` reports and ``prune`` may delete; ``ref`` is what the owner needs to delete it."""

    kind: str
    id: str
    size: int
    last_used: float
    in_use: bool
    description: str
    ref: object = field(default=None, compare=False, repr=False)
    parent: str = ""  # snapshots: the chain below ("" for a base layer or unknown)
    image: bool = False  # a blob (or a result's blob) a name reaches: an image's, not the build cache's

    @property
    def type(self) -> str:
        return _TYPE_OF[self.kind]

    @property
    def reclaimable(self) -> bool:
        return not self.in_use

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "kind": self.kind, "type": self.type, "size": self.size,
                "lastUsed": self.last_used, "inUse": self.in_use, "reclaimable": self.reclaimable,
                "image": self.image, "description": self.description,
                **({"parent": self.parent} if self.parent else {})}


@dataclass(frozen=True, slots=True)
class Usage:
    records: tuple[Record, ...]
    busy: bool  # a build held the build lock: its leftovers count as in use


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """``--filter`` values: different keys must all match; a key given twice matches either value."""

    kinds: frozenset[str] | None = None  # None: any kind
    ids: tuple[str, ...] = ()  # id prefixes
    until: float | None = None  # seconds: last used at least this long ago

    @property
    def empty(self) -> bool:
        return self.kinds is None and not self.ids and self.until is None

    def match(self, record: Record, now: float) -> bool:
        if self.kinds is not None and record.kind not in self.kinds:
            return False
        if self.ids and not any(record.id.startswith(i) for i in self.ids):
            return False
        return self.until is None or record.last_used <= now - self.until


def parse_filters(values: Iterable[str]) -> RecordFilter:
    """``KEY=VALUE`` strings (buildx's ``--filter``): ``until=DURATION``, ``type=TYPE`` (a buildx type or a
    polyarch kind), ``id=PREFIX``."""
    kinds: set[str] | None = None
    ids: list[str] = []
    until: float | None = None
    for raw in values:
        key, sep, value = raw.partition("=")
        key = key.strip().lower()
        if not sep or key not in _FILTER_KEYS or not value.strip():
            raise UsageError(f"invalid filter {raw!r}", hint="use until=DURATION, type=TYPE or id=ID")
        value = value.strip()
        if key == "until":
            if until is not None:
                raise UsageError(f"invalid filter {raw!r}: until given twice")
            until = parse_duration(value, what="until filter")
        elif key == "type":
            if value in BUILDX_TYPES:
                found = BUILDX_TYPES[value]
            elif value in KINDS:
                found = (value,)
            else:
                raise UsageError(f"invalid filter {raw!r}: unknown type {value!r}",
                                 hint="types: " + ", ".join([*BUILDX_TYPES, *KINDS]))
            kinds = (kinds or set()) | set(found)
        else:
            ids.append(value)
    return RecordFilter(None if kinds is None else frozenset(kinds), tuple(ids), until)


def _named(images: ImageStore, keep: Iterable[Digest]) -> dict[Digest, str]:
    """Blob → the first name that reaches it ("registry" for the embedded registry's roots)."""
    out: dict[Digest, str] = {}
    for name, desc in images.names():
        for d in reachable(images, [desc]):
            out.setdefault(d, name)
    for d in reachable(images, images.entries()):
        out.setdefault(d, "index.json")
    for d in keep:
        out.setdefault(d, "registry")
    return out


def image_chains(images: ImageStore) -> tuple[set[str], set[str]]:
    """(chain ids as hex, diff_ids) of every image a name reaches: snapshots and layers still in use."""
    chains: set[str] = set()
    diff_ids: set[str] = set()
    for _, desc in images.names():
        try:
            imgs = images.images(desc)
        except PolyarchError:
            continue
        for img in imgs:
            diff_ids.update(str(d) for d in img.config.diff_ids)
            chains.update(c.hex for c in chain_ids(list(img.config.diff_ids)))
    return chains, diff_ids


def _results(cache: BuildCache | None, sizes: dict[Digest, tuple[int, float]], named: dict[Digest, str],
             now: float) -> list[Record]:
    if cache is None:
        return []
    groups: dict[Digest, list[str]] = {}
    last: dict[Digest, float] = {}
    out: list[Record] = []
    for use in cache.result_uses():
        if use.blob is not None and use.blob in sizes:
            groups.setdefault(use.blob, []).append(use.key)
            last[use.blob] = max(last.get(use.blob, 0.0), use.last_used)
        else:
            what = "a step that added no layer" if not use.has_layer else "a layer whose blob is gone"
            out.append(Record("result", use.key[:32], 0, use.last_used, False, what, ref=((use.key,), None)))
    for blob, keys in groups.items():
        size, _ = sizes[blob]
        name = named.get(blob)
        desc = f"layer {blob.hex[:12]} of {len(keys)} cache entr{'y' if len(keys) == 1 else 'ies'}"
        out.append(Record("result", blob.hex, size, last[blob], name is not None,
                          desc + (f", in {name}" if name else ""), ref=(tuple(keys), blob), image=name is not None))
    return out


def _snapshots(dirs: SnapshotDirs, uses: dict[str, SnapshotUse], chains: set[str]) -> list[Record]:
    out: list[Record] = []
    for entry in dirs.committed():
        use = uses.get(entry.chain)
        used = max(entry.mtime, use.used if use else 0.0)
        layer = f"layer {use.diff_id[7:19]}" if use and use.diff_id else "layer"
        out.append(Record("snapshot", entry.chain, dirs.size(entry), used, entry.chain in chains,
                          f"{entry.driver} snapshot of {layer}", ref=entry, parent=use.parent if use else ""))
    return out


def _leftovers(root: Path, dirs: SnapshotDirs, ingest: Path, busy: bool, now: float) -> list[Record]:
    out = [Record("leftover", f"{left.area}/{left.path.name}", left.size, left.mtime, busy,
                  f"snapshot {left.area.split('/')[1]} dir", ref=left) for left in dirs.leftovers()]
    for area, what in ((root / "bundles", "runtime bundle"), (ingest, "ingest temp file")):
        for path in sorted(area.iterdir()) if area.is_dir() else []:
            try:
                mtime = path.lstat().st_mtime
            except OSError:
                continue
            in_use = busy or (area == ingest and mtime > now - IN_FLIGHT)
            out.append(Record("leftover", f"{area.name}/{path.name}", tree_size(path), mtime, in_use, what, ref=path))
    return out


def collect_usage(root: Path, images: ImageStore, *, keep: Iterable[Digest] = (), busy: bool = False,
                  metadata: bool = False, now: float | None = None) -> Usage:
    """Every record of the store at ``root`` (see the module doc); ``busy``: a build is running."""
    now = time.time() if now is None else now
    store = images.store
    sizes: dict[Digest, tuple[int, float]] = {}
    for digest, size in store.list():
        try:
            sizes[digest] = (size, store.blob_path(digest).stat().st_mtime)
        except FileNotFoundError:
            continue
    named = _named(images, keep)
    dirs = SnapshotDirs(root)
    cache = BuildCache.in_store(root) if BuildCache.exists_in(root) else None
    try:
        records = _results(cache, sizes, named, now)
        uses = cache.snapshot_uses() if cache is not None else {}
    finally:
        if cache is not None:
            cache.close()
    in_results = {r.ref[1] for r in records if r.kind == "result" and r.ref[1] is not None}  # type: ignore[index]
    records += _snapshots(dirs, uses, image_chains(images)[0])
    for mount in cache_mount_dirs(root):
        records.append(Record("cachemount", mount.key, mount.size, mount.last_used, mount.busy,
                              f"cache mount {mount.label}" if mount.label else "cache mount", ref=mount))
    for digest, (size, mtime) in sorted(sizes.items(), key=lambda kv: str(kv[0])):
        if digest in in_results:
            continue
        name = named.get(digest)
        records.append(Record("blob", digest.hex, size, mtime, name is not None or mtime > now - IN_FLIGHT,
                              f"blob of {name}" if name else "dangling blob", ref=digest, image=name is not None))
    records += _leftovers(root, dirs, store.ingest_dir, busy, now)
    if metadata:
        rest = tree_size(root) - sum(r.size for r in records)
        records.append(Record("metadata", "metadata", rest, _mtime(root), True,
                              "databases, index.json, locks and directory entries"))
    return Usage(tuple(records), busy)


def _mtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


def cache_total(records: Sequence[Record]) -> int:
    """Bytes the gc policy and ``--keep-storage`` count: everything but images' blobs and metadata."""
    return sum(r.size for r in records if r.kind != "metadata" and not r.image)
