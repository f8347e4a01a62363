"""Content-addressed blob store laid out as an OCI image layout (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``).

Every write streams into a private temp file under ``ingest/`` while hashing, checks digest and size, fsyncs and
renames into place, so a blob is visible under its digest only when complete and correct. Several processes may
ingest the same blob at once: each renames an identical file over the same name. A process killed mid-ingest
leaves only a temp file, which ``clean_ingest`` removes after a grace period.

Permissions: polyarch's own store (``ContentStore(root, private=True)``, what the CLI opens) has its root and
``ingest/`` mode 0700, and so do the directories other modules keep under it through ``fsutil.private_dir``:
``snapshots/`` with each driver's dir, ``tmp/`` and ``active/`` (worker.snapshot), ``bundles/`` and ``runc-state/``
(worker.runc), ``cache-mounts/`` (worker.mounts). Extracted image trees hold setuid-root binaries and device
nodes; a local user who could reach one could run it and become root (the class of CVE-2021-41091). No other
user needs to traverse the store (there is no rootless mode; runc and overlayfs act as root), so nothing is
0711. A store made by an older polyarch is tightened on first use: one ``stat`` per such directory, a ``chmod``
only when group or others have any access. Other OCI layouts (an ``-o type=oci,tar=false`` destination, a
layout read with ``create=False``) keep the modes they have.
"""

from __future__ import annotations

import errno
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from polyarch.digest import ALGORITHMS, CHUNK, Digest, Hasher
from polyarch.errors import DigestMismatch, LimitExceeded, NotFound, StoreError
from polyarch.fsutil import atomic_write, fsync_dir, private_dir, start_writeback

__all__ = ["BlobWriter", "ContentStore"]

LAYOUT_VERSION = b'{"imageLayoutVersion":"1.0.0"}'
EMPTY_INDEX = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
INGEST_DIR = "ingest"
_WRITEBACK = 8 << 20  # start writeback of a blob being written every this many bytes (fsync at commit is short)
_PARALLEL_HASH = 1 << 20  # writes at least this large are hashed on a helper thread while they are written


def _store_error(exc: OSError, root: Path, action: str) -> StoreError:
    reason = exc.strerror or str(exc)
    hint = None
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "set POLYARCH_ROOT to a directory you can write, or run with the right permissions"
    elif exc.errno == errno.ENOSPC:
        hint = "free space on that filesystem, or run 'polyarch prune'"
    return StoreError(f"cannot {action} in store {root}: {reason}", hint=hint)


class BlobWriter:
    """An open ingest: write bytes, then ``commit`` (verify + rename) or ``abort``. Use as a context manager."""

    def __init__(self, store: ContentStore, algorithm: str = "sha256", *, limit: int | None = None) -> None:
        self._store = store
        self._hasher = Hasher(algorithm)
        self._limit = limit
        try:
            fd, self._tmp = tempfile.mkstemp(dir=store.ingest_dir, prefix="blob-")
        except OSError as exc:
            raise _store_error(exc, store.root, "create a blob") from exc
        self._file: IO[bytes] = os.fdopen(fd, "wb", buffering=0)
        self._fd = fd
        self._closed = False
        self._written = 0
        self._synced = 0  # writeback started up to here
        self._hash_pool: ThreadPoolExecutor | None = None

    @property
    def size(self) -> int:
        return self._hasher.size

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._limit is not None and self._hasher.size + len(data) > self._limit:
            raise LimitExceeded(f"blob exceeds the limit of {self._limit} bytes")
        if len(data) < _PARALLEL_HASH:
            self._hasher.update(data)
            self._write_all(data)
            return len(data)
        # Both release the GIL: hashing on a helper thread overlaps the copy into the page cache.
        if self._hash_pool is None:
            self._hash_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-hash")
        hashed = self._hash_pool.submit(self._hasher.update, data)
        try:
            self._write_all(data)
        finally:
            hashed.result()  # the caller may reuse ``data`` once this returns
        return len(data)

    def _stop_hashing(self) -> None:
        if self._hash_pool is not None:
            self._hash_pool.shutdown()
            self._hash_pool = None

    def _write_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self._written += n
            if self._written - self._synced >= _WRITEBACK:
                # Overlap the disk writes with producing the rest; commit's fsync then has little left to wait for.
                start_writeback(self._fd, self._synced, self._written - self._synced)
                self._synced = self._written
        except OSError as exc:
            raise _store_error(exc, self._store.root, "write a blob") from exc

    def commit(self, expected: Digest | None = None, size: int | None = None) -> tuple[Digest, int]:
        """Verify and publish the blob under its digest; returns (digest, size).

        :raises DigestMismatch: when ``expected`` or ``size`` differ; the temp file is removed.
        """
        self._stop_hashing()
        got = self._hasher.digest()
        try:
            if size is not None and self._hasher.size != size:
                raise DigestMismatch(f"blob {expected or got}: got {self._hasher.size} bytes, expected {size}")
            if expected is not None and got != expected:
                raise DigestMismatch(f"blob content hashes to {got}, expected {expected}")
            try:
                os.fsync(self._file.fileno())
                self._file.close()
                self._closed = True
                target = self._store.blob_path(got)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(self._tmp, 0o644)
                is_new = not target.exists()
                os.replace(self._tmp, target)
                if is_new:
                    self._store._created(got)
                fsync_dir(target.parent)
            except OSError as exc:
                raise _store_error(exc, self._store.root, "commit a blob") from exc
        except BaseException:
            self.abort()
            raise
        return got, self._hasher.size

    def abort(self) -> None:
        self._stop_hashing()
        if not self._closed:
            self._closed = True
            try:
                self._file.close()
            except OSError:
                pass
        try:
            os.unlink(self._tmp)
        except OSError:
            pass

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None or not self._closed:
            self.abort()


class ContentStore:
    """Blobs by digest under ``root``; the root is also a valid OCI image layout."""

    def __init__(self, root: Path | str, *, create: bool = True, private: bool = False) -> None:
        self.root = Path(root)
        self.ingest_dir = self.root / INGEST_DIR
        self._transactions: list[list[Digest]] = []
        self._transactions_lock = threading.Lock()  # builds open transactions from several threads
        if create:
            self._init_layout(private)
        elif not (self.root / "oci-layout").exists():
            raise StoreError(f"{self.root} is not an OCI image layout (no oci-layout file)")
        elif private:
            try:
                self._tighten()
            except OSError as exc:
                raise _store_error(exc, self.root, "restrict the permissions") from exc

    def _tighten(self) -> None:
        private_dir(self.root)
        private_dir(self.ingest_dir)

    def _init_layout(self, private: bool) -> None:
        try:
            if private:
                self._tighten()
            else:
                self.ingest_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            if not (self.root / "oci-layout").exists():
                atomic_write(self.root / "oci-layout", LAYOUT_VERSION)
            if not (self.root / "index.json").exists():
                atomic_write(self.root / "index.json", EMPTY_INDEX)
            if not os.access(self.root, os.W_OK) or not os.access(self.ingest_dir, os.W_OK):
                raise PermissionError(errno.EACCES, "Permission denied")
        except OSError as exc:
            raise _store_error(exc, self.root, "initialise the layout") from exc

    # --- reading -----------------------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        # Digest values are validated on parse: algorithm from a fixed set, hex only; no traversal possible.
        return self.root / "blobs" / digest.algorithm / digest.hex

    def stat(self, digest: Digest) -> int | None:
        """Size of the blob, or None when absent."""
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _store_error(exc, self.root, "read a blob") from exc

    def has(self, digest: Digest) -> bool:
        return self.stat(digest) is not None

    def open(self, digest: Digest) -> BinaryIO:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in store {self.root}") from None
        except OSError as exc:
            raise _store_error(exc, self.root, "read a blob") from exc

    def read(self, digest: Digest, *, limit: int = 64 << 20) -> bytes:
        """Whole blob into memory (for manifests and configs), bounded by ``limit``."""
        with self.open(digest) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise LimitExceeded(f"blob {digest} is larger than {limit} bytes")
        return data

    def list(self) -> Iterator[tuple[Digest, int]]:
        for alg in ALGORITHMS:
            folder = self.root / "blobs" / alg
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                if Digest.is_valid(f"{alg}:{entry.name}") and entry.is_file(follow_symlinks=False):
                    yield Digest(alg, entry.name), entry.stat().st_size

    # --- writing -----------------------------------------------------------------------------------------

    def writer(self, algorithm: str = "sha256", *, limit: int | None = None) -> BlobWriter:
        return BlobWriter(self, algorithm, limit=limit)

    def ingest(
        self,
        stream: BinaryIO,
        *,
        expected: Digest | None = None,
        size: int | None = None,
        limit: int | None = None,
        tap: Callable[[bytes], None] | None = None,
    ) -> tuple[Digest, int]:
        """Copy a stream into the store; hashing overlaps writing on a second thread for large blobs. ``tap`` sees
        every chunk in order as it is hashed (``content.pathindex.IndexBuilder.feed``: one read for both)."""
        if expected is not None and size is not None and self.stat(expected) == size:
            return expected, size
        algorithm = expected.algorithm if expected is not None else "sha256"
        if size is not None and limit is not None and size > limit:
            raise LimitExceeded(f"blob of {size} bytes exceeds the limit of {limit} bytes")
        with self.writer(algorithm, limit=limit) as w:
            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = None
                read = getattr(stream, "read1", stream.read)
                while True:
                    chunk = read(CHUNK * 4)
                    if not chunk:
                        break
                    if limit is not None and w.size + len(chunk) > limit:
                        raise LimitExceeded(f"blob exceeds the limit of {limit} bytes")
                    if size is not None and w.size + len(chunk) > size:
                        raise DigestMismatch(f"blob {expected}: more bytes than the expected {size}")
                    if pending is not None:
                        pending.result()
                    pending = pool.submit(w._write_all, chunk)
                    w._hasher.update(chunk)
                    if tap is not None:
                        tap(chunk)
                if pending is not None:
                    pending.result()
            return w.commit(expected, size)

    def write(self, data: bytes, expected: Digest | None = None, algorithm: str = "sha256") -> tuple[Digest, int]:
        """Store small bytes (manifests, configs)."""
        digest = Digest.of(data, expected.algorithm if expected else algorithm)
        if expected is not None and digest != expected:
            raise DigestMismatch(f"blob content hashes to {digest}, expected {expected}")
        if self.stat(digest) == len(data):
            return digest, len(data)
        with self.writer(digest.algorithm) as w:
            w.write(data)
            return w.commit(digest, len(data))

    def _created(self, digest: Digest) -> None:
        with self._transactions_lock:
            for created in self._transactions:
                created.append(digest)

    @contextmanager
    def transaction(self) -> Iterator[list[Digest]]:
        """Blobs this store object newly creates inside the block are deleted again if the block fails, so a
        failed import, load or build leaves the store as it was. Yields the list of created digests."""
        created: list[Digest] = []
        with self._transactions_lock:
            self._transactions.append(created)
        try:
            yield created
        except BaseException:
            for digest in created:
                try:
                    self.delete(digest)
                except StoreError:
                    pass
            raise
        finally:  # by identity: two open transactions may hold equal lists (both empty, say)
            with self._transactions_lock:
                self._transactions[:] = [t for t in self._transactions if t is not created]

    def delete(self, digest: Digest) -> bool:
        try:
            self.blob_path(digest).unlink()
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _store_error(exc, self.root, "delete a blob") from exc

    def clean_ingest(self, older_than: float = 3600.0) -> int:
        """Remove temp files of abandoned ingests older than ``older_than`` seconds; returns how many."""
        removed = 0
        cutoff = time.time() - older_than
        try:
            entries = list(os.scandir(self.ingest_dir))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    if entry.is_dir(follow_symlinks=False):
                        import shutil

                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
