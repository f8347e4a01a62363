"""A build context by content (BuildKit's file sync idea): the client lists it, the node asks only for the file
contents its store lacks, then lays the tree out in a private temporary directory.

``scan`` walks a directory into ``Entry`` values (relative ``/`` path, kind ``dir``/``file``/``symlink``, mode,
mtime in nanoseconds, size and sha256 digest of a file, target of a symlink); files the ``.dockerignore`` patterns
exclude are left out (directories are always listed, so ``!`` exceptions still work on the node, which applies the
same patterns again). Digests are remembered per (path, size, mtime, inode) in a ``DigestMemo`` for the life of
the process. On the node, file contents are blobs of its content store (so a repeated build sends nothing and gc
takes them when unused); ``materialize`` writes the tree, refusing any path that would leave the directory.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import PolyarchError, UsageError

from .protocol import ProtocolError

__all__ = ["DigestMemo", "Entry", "materialize", "missing", "scan"]


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # relative, "/"-separated, never "", "..", or absolute
    kind: str  # dir | file | symlink
    mode: int = 0o644
    mtime_ns: int = 0
    size: int = 0
    digest: str = ""  # file: sha256 of its content
    target: str = ""  # symlink

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"path": self.path, "kind": self.kind, "mode": self.mode, "mtime": self.mtime_ns}
        if self.kind == "file":
            doc.update(size=self.size, digest=self.digest)
        elif self.kind == "symlink":
            doc["target"] = self.target
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> Entry:
        try:
            entry = cls(str(doc["path"]), str(doc["kind"]), int(doc.get("mode", 0o644)) & 0o7777,
                        int(doc.get("mtime", 0)), int(doc.get("size", 0)), str(doc.get("digest", "")),
                        str(doc.get("target", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"bad context entry: {exc}") from None
        parts = entry.path.split("/")
        if any(p in ("", ".", "..") for p in parts) or "\0" in entry.path:
            raise ProtocolError(f"bad context entry path {entry.path!r}")
        if entry.kind not in ("dir", "file", "symlink"):
            raise ProtocolError(f"bad context entry kind {entry.kind!r}")
        if entry.kind == "file":
            Digest.parse(entry.digest)
        return entry


class DigestMemo:
    """sha256 of files, remembered by (path, size, mtime, inode) while the process lives."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int, int], str] = {}

    def digest(self, path: str, st: os.stat_result) -> str:
        key = (path, st.st_size, st.st_mtime_ns, st.st_ino)
        found = self._known.get(key)
        if found is None:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            found = self._known[key] = "sha256:" + h.hexdigest()
        return found


def scan(root: Path, excluded: Callable[[str], bool] | None = None, memo: DigestMemo | None = None) -> list[Entry]:
    """The entries of ``root`` (sorted, parents first). :raises UsageError: unreadable."""
    memo = memo or DigestMemo()
    out: list[Entry] = []

    def walk(directory: str, rel: str) -> Iterator[Entry]:
        with os.scandir(directory) as it:
            items = sorted(it, key=lambda e: e.name)
        for item in items:
            path = f"{rel}/{item.name}" if rel else item.name
            st = item.stat(follow_symlinks=False)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                yield Entry(path, "dir", mode, st.st_mtime_ns)
                yield from walk(item.path, path)
            elif stat.S_ISLNK(st.st_mode):
                if not (excluded and excluded(path)):
                    yield Entry(path, "symlink", mode, st.st_mtime_ns, target=os.readlink(item.path))
            elif stat.S_ISREG(st.st_mode) and not (excluded and excluded(path)):
                yield Entry(path, "file", mode, st.st_mtime_ns, st.st_size, memo.digest(item.path, st))

    try:
        out.extend(walk(str(root), ""))
    except OSError as exc:
        raise UsageError(f"cannot read the build context {root}: {exc.strerror or exc}") from None
    return out


def missing(store: ContentStore, entries: Sequence[Entry]) -> list[str]:
    """Digests of file contents ``store`` lacks (each once)."""
    need: dict[str, None] = {}
    for e in entries:
        if e.kind == "file" and e.digest not in need and store.stat(Digest.parse(e.digest)) != e.size:
            need[e.digest] = None
    return list(need)


def materialize(store: ContentStore, entries: Sequence[Entry], dest: Path) -> None:
    """Write ``entries`` under the empty directory ``dest`` (contents from ``store``); directory times last.

    :raises ProtocolError: an entry would leave ``dest`` or its content is missing."""
    dest = dest.resolve()
    dirs: list[Entry] = []
    for e in entries:
        target = dest.joinpath(*PurePosixPath(e.path).parts)
        parent = target.parent
        if os.path.realpath(parent) != str(parent) or not str(parent).startswith(str(dest)):
            raise ProtocolError(f"context entry {e.path!r} leaves the context")
        try:
            if e.kind == "dir":
                target.mkdir(mode=0o700)
                dirs.append(e)
            elif e.kind == "symlink":
                os.symlink(e.target, target)
                os.utime(target, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)
            else:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out, store.open(Digest.parse(e.digest)) as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                os.chmod(target, e.mode)
                os.utime(target, ns=(e.mtime_ns, e.mtime_ns))
        except (OSError, PolyarchError) as exc:
            raise ProtocolError(f"cannot write context entry {e.path!r}: {exc}") from None
    for e in reversed(dirs):
        target = dest.joinpath(*PurePosixPath(e.path).parts)
        os.chmod(target, e.mode)
        os.utime(target, ns=(e.mtime_ns, e.mtime_ns))
