"""The ``filesystem`` storage driver: blobs in the local content store, session data in
``<root>/registry/uploads/<id>`` (one file per session, no descriptor held between requests).

Completion fsyncs the session file and renames it into the store under its digest: the same temp → verify → fsync
→ rename protocol as ``ContentStore``. A session file survives a restart; ``resume`` truncates it to the offset the
database recorded (bytes of a request that died half-way are dropped).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from polyarch.content.store import ContentStore
from polyarch.digest import CHUNK, Digest
from polyarch.fsutil import fsync_dir

from ..body import write_chunks
from .protocol import SessionGone

__all__ = ["FileUpload", "FilesystemStorage"]


class FileUpload:
    """One session's data file."""

    def __init__(self, store: ContentStore, path: Path, offset: int = 0) -> None:
        self.store = store
        self.path = path
        self.offset = offset

    def append(self, chunks: list[bytes]) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # purged by ``registry gc`` while this request was running
            raise SessionGone("upload session was purged") from None
        try:
            os.lseek(fd, self.offset, os.SEEK_SET)
            write_chunks(fd, chunks)
        finally:
            os.close(fd)
        self.offset += sum(len(c) for c in chunks)

    def checkpoint(self) -> object:
        return self.offset

    def rollback(self, state: object) -> None:
        assert isinstance(state, int)
        self.offset = state
        try:
            os.truncate(self.path, self.offset)
        except OSError:
            pass

    def flush(self) -> str:
        return ""

    def _hash(self, algorithm: str) -> str:
        h = hashlib.new(algorithm)
        with open(self.path, "rb", buffering=0) as f:
            remaining = self.offset
            while remaining > 0 and (chunk := f.read(min(CHUNK * 4, remaining))):
                h.update(chunk)
                remaining -= len(chunk)
        return h.hexdigest()

    def complete(self, expected: Digest, *, verified: bool) -> bool:
        try:
            if not verified and self._hash(expected.algorithm) != expected.hex:
                self.abort()
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.ftruncate(fd, self.offset)
                os.fsync(fd)
            finally:
                os.close(fd)
            target = self.store.blob_path(expected)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.path, 0o644)
            os.replace(self.path, target)
            fsync_dir(target.parent)
        except FileNotFoundError:
            raise SessionGone("upload session was purged") from None
        return True

    def abort(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass


class _FileRange:
    def __init__(self, f: BinaryIO, length: int) -> None:
        self._f = f
        self._left = length

    def read(self, n: int) -> bytes:
        if self._left <= 0:
            return b""
        data = self._f.read(min(n, self._left))
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._f.close()


class FilesystemStorage:
    """Blobs in ``store``; session files under ``<root>/registry/uploads``."""

    name = "filesystem"

    def __init__(self, store: ContentStore) -> None:
        self.store = store
        self.dir = store.root / "registry" / "uploads"

    def stat(self, digest: Digest) -> int | None:
        return self.store.stat(digest)

    def read(self, digest: Digest, *, limit: int) -> bytes:
        return self.store.read(digest, limit=limit)

    def write(self, data: bytes, expected: Digest) -> None:
        self.store.write(data, expected)

    def open(self, digest: Digest, start: int, length: int) -> _FileRange:
        f = open(self.store.blob_path(digest), "rb", buffering=0)
        if start:
            f.seek(start)
        return _FileRange(f, length)

    def presign(self, digest: Digest, ttl: int) -> str | None:
        return None

    def delete(self, digest: Digest) -> bool:
        return self.store.delete(digest)

    def list(self) -> Iterator[tuple[Digest, int]]:
        return self.store.list()

    def begin(self, upload_id: str) -> FileUpload:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / upload_id
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        return FileUpload(self.store, path)

    def resume(self, upload_id: str, offset: int, state: str) -> FileUpload:
        path = self.dir / upload_id
        try:
            if os.stat(path).st_size < offset:
                raise SessionGone("upload session data is shorter than recorded")
            os.truncate(path, offset)
        except FileNotFoundError:
            raise SessionGone("upload session data is gone") from None
        return FileUpload(self.store, path, offset)

    def forget(self, upload_id: str, state: str) -> None:
        try:
            os.unlink(self.dir / upload_id)
        except OSError:
            pass

    def sessions(self) -> Iterator[str]:
        """The session files (the folder is made here: the server's start lists it)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return iter(os.listdir(self.dir))

    def modified(self, digest: Digest) -> float | None:
        try:
            return self.store.blob_path(digest).stat().st_mtime
        except FileNotFoundError:
            return None

    def stale_sessions(self, before: float) -> Iterator[tuple[str, str]]:
        """Session files not written since ``before`` (a long streaming PATCH updates the file, not the row)."""
        if not self.dir.is_dir():
            return
        for entry in os.scandir(self.dir):
            try:
                if entry.stat(follow_symlinks=False).st_mtime < before:
                    yield entry.name, ""
            except OSError:
                continue
