"""``ADD`` of local tar archives: which sources are unpacked, and their entries, unpacked safely into a work
directory, as COPY entries under the destination."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from polyarch import ops
from polyarch.worker.securepath import secure_join

from .copylayer import Chmod, Entry, plan_copy
from .rootview import RootView

__all__ = ["is_archive", "merge_entries", "unpack_entries", "unpacks"]


def unpacks(vertex: ops.Copy) -> bool:
    """ADD unpacks local archives unless ``--unpack=false``; a downloaded file only with ``--unpack=true``
    (Docker and BuildKit never extract remote archives by default)."""
    if not vertex.add:
        return False
    if isinstance(vertex.source, ops.HttpSource | ops.GitSource):
        return vertex.unpack is True
    return vertex.unpack is not False


def is_archive(tree: str, path: str) -> bool:
    """A local ADD source that is a tar archive (plain, gzip or zstd), by its magic bytes."""
    if any(c in path for c in "*?["):
        return False
    host = secure_join(tree, path.lstrip("/"))
    if not os.path.isfile(host):
        return False
    with open(host, "rb") as f:
        head = f.read(512)
    if head[:2] == b"\x1f\x8b" or head[:4] == b"\x28\xb5\x2f\xfd":
        return True
    return len(head) == 512 and head[257:262] == b"ustar"


def merge_entries(first: Sequence[Entry], second: Sequence[Entry]) -> list[Entry]:
    """Both entry lists, ``second`` winning on the same path, in byte order of the paths."""
    out = {e.rel: e for e in first}
    out.update({e.rel: e for e in second})
    return [out[k] for k in sorted(out, key=lambda p: p.encode("utf-8", "surrogateescape"))]


def unpack_entries(tree: str, archive: str, work_parent: Path, dest: str, view: RootView | None,
                   owner: tuple[int, int] | None, chmod: Chmod | None, stack: ExitStack) -> list[Entry]:
    """ADD of a local tar archive (plain, gzip, zstd): its entries, unpacked safely into a work directory under
    ``work_parent`` (removed when ``stack`` closes), into ``dest``."""
    from polyarch.worker.apply import apply_layer

    work = Path(tempfile.mkdtemp(prefix="unpack-", dir=work_parent))
    stack.callback(shutil.rmtree, work, True)
    with open(secure_join(tree, archive), "rb") as f:
        apply_layer(f, work)
    into = dest if dest.endswith("/") else dest + "/"
    return plan_copy(str(work), ["."], into, excluded=lambda _p: False, view=view, owner=owner, chmod=chmod,
                     what=f"archive {archive}")
