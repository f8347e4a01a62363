"""Garbage collection of the content store: delete blobs no root reaches.

Roots are the names in ``index.json`` plus any extra roots a caller passes (the embedded registry's tags and
manifests). Unreferenced blobs younger than ``grace`` seconds are kept, so a blob being pushed or built right
now (written, but not yet named) survives; abandoned ingest temp files older than ``grace`` are removed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from polyarch.digest import Digest
from polyarch.errors import PolyarchError
from polyarch.oci.spec import Descriptor

from .images import ImageStore

__all__ = ["PruneResult", "prune", "reachable"]


@dataclass(frozen=True, slots=True)
class PruneResult:
    blobs: int
    bytes: int
    temp_files: int
    digests: frozenset[Digest] = frozenset()  # the blobs deleted (or, in a dry run, that would be)


def reachable(images: ImageStore, roots: Iterable[Descriptor]) -> set[Digest]:
    keep: set[Digest] = set()
    for root in roots:
        try:
            for d in images.walk(root):
                keep.add(d.digest)
        except PolyarchError:
            keep.add(root.digest)  # unreadable root: keep what we can name, delete nothing below it blindly
    return keep


def prune(images: ImageStore, *, dry_run: bool = False, grace: float = 3600.0,
          extra_roots: Iterable[Descriptor] = (), extra_keep: Iterable[Digest] = ()) -> PruneResult:
    store = images.store
    keep = reachable(images, [*(d for _, d in images.names()), *images.entries(), *extra_roots])
    keep.update(extra_keep)
    cutoff = time.time() - grace
    count = size = 0
    doomed: set[Digest] = set()
    for digest, blob_size in list(store.list()):
        if digest in keep:
            continue
        try:
            if store.blob_path(digest).stat().st_mtime > cutoff:
                continue
        except FileNotFoundError:
            continue
        count += 1
        size += blob_size
        doomed.add(digest)
        if not dry_run:
            store.delete(digest)
    temps = 0 if dry_run else store.clean_ingest(grace)
    return PruneResult(count, size, temps, frozenset(doomed))
