"""Content-addressed blob store laid out as an OCI image layout (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``).

Every write streams into a private temp file under ``ingest/`` while hashing, checks digest and size, fsyncs and
renames into place, so a blob is visible under its digest only when complete and correct. Several processes may
ingest the same blob at once: each renames an identical file over the same name. A process killed mid-ingest
leaves only a temp file, which ``clean_ingest`` removes after a grace period.

**Batches** (``store.batch()``: one pull). Durability per blob costs two flushes (the file, then the
directory after the rename); a batch pays one ``syncfs`` for all its blobs instead. The argument that it is as
safe, step by step:

1. Before its first blob, the batch writes a marker ``ingest/batch-<id>`` (owner: boot id, pid, process start
   time) and makes it durable (file and directory fsync). So after any crash, a batch that had published a blob
   has left a durable marker.
2. A blob committed in the batch is verified (digest, size) and renamed into ``blobs/`` without flushes: other
   readers see it at once, but after a power loss its data or its name may be lost. A blob that already exists
   is never replaced by a batch's copy (it is the same bytes and may be durable; the copy is dropped).
3. When the block ends (also on failure), one ``syncfs`` of the store's filesystem makes every blob of the batch
   durable, and only then is the marker removed. Callers name images (``index.json``, itself fsynced) only after
   the batch has ended, so no durable name ever reaches a blob that is not durable.
4. A crash before step 3 leaves the marker. Whoever opens the store next (``ContentStore(root)``) finds markers
   whose owner is gone (another boot, or no such process) and re-hashes every blob whose inode changed after the
   marker was made (ctime, less a slack of 2 s for clock steps), deleting those that do not match their digest,
   then removes the marker. A blob lost entirely is simply absent (it is fetched again); a truncated or zeroed
   one is deleted rather than trusted (a pull skips blobs whose size matches, so this check is what keeps a
   damaged blob from being reused). Markers are never removed by ``clean_ingest``.

Outside a batch (``write`` of single documents, writers of other store objects) every commit flushes as before.

**Ambient batches** (``store.batched()``: a load, a build — callers whose writers are made deep down, by code that
is handed the store and not a batch). Every writer this store object makes joins the block's batch. The argument
above holds as is, with two additions: (a) a name may be written while the block is still open (a build's
``--load``, a load naming each image), so ``ImageStore`` calls ``store.flush()`` before every ``index.json`` write:
step 3 (a syncfs, then the marker goes) happens before the name, and the block's next blob makes a new marker
(step 1 again); (b) writers of other threads keep publishing during a flush, so a publish (marker check and
rename) and a flush exclude each other (``Batch.publish``): a blob renamed after the syncfs is covered by the next
marker, never by none. Other records that name blobs are hints checked against the store before use (the build
cache treats a missing layer blob as a miss, path indexes and blob origins are keyed by digest), and the
recovery of step 4 leaves only blobs that match their digest.

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
import json
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
from polyarch.fsutil import atomic_write, fsync_dir, private_dir, start_writeback, sync_filesystem

__all__ = ["Batch", "BlobWriter", "ContentStore"]

LAYOUT_VERSION = b'{"imageLayoutVersion":"1.0.0"}'
EMPTY_INDEX = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
INGEST_DIR = "ingest"
BATCH_PREFIX = "batch-"
_CLOCK_SLACK = 2.0  # seconds: ctime compared with a marker's mtime
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

    def __init__(self, store: ContentStore, algorithm: str = "sha256", *, limit: int | None = None,
                 batch: Batch | None = None) -> None:
        self._store = store
        self._batch = batch
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
                if self._batch is None:
                    os.fsync(self._file.fileno())
                self._file.close()
                self._closed = True
                target = self._store.blob_path(got)
                target.parent.mkdir(parents=True, exist_ok=True)
                is_new = not target.exists()
                if self._batch is not None and not is_new:
                    os.unlink(self._tmp)  # never replace a blob that may be durable with one that is not yet
                    return got, self._hasher.size
                if self._batch is not None:
                    # the durable marker exists before the rename (step 1), and no flush ends between them (step 3)
                    self._batch.publish(lambda: self._publish(target))
                else:
                    self._publish(target)
                    fsync_dir(target.parent)
                if is_new:
                    self._store._created(got)
            except OSError as exc:
                raise _store_error(exc, self._store.root, "commit a blob") from exc
        except BaseException:
            self.abort()
            raise
        return got, self._hasher.size

    def _publish(self, target: Path) -> None:
        os.chmod(self._tmp, 0o644)  # after a batch's marker: the blob's ctime is later than the marker's
        os.replace(self._tmp, target)

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


def _owner() -> dict[str, object]:
    """This process, as a batch marker names it: boot id, pid and the process's start time (pid reuse)."""
    return {"boot": _boot_id(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22: starttime (after the comm in parentheses)


def _alive(owner: object) -> bool:
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return False
    return owner.get("boot") == _boot_id() and _start_time(owner["pid"]) not in ("", None) and \
        _start_time(owner["pid"]) == owner.get("start")


class Batch:
    """Blob commits that share one flush (see the module docstring); made by ``ContentStore.batch``."""

    def __init__(self, store: ContentStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self.marker: Path | None = None

    def begin(self) -> None:
        """Make the durable marker, once, before the batch's first blob is published."""
        with self._lock:
            self._begin()

    def publish(self, rename: Callable[[], None]) -> None:
        """Run ``rename`` (a blob's move into ``blobs/``) with the marker in place and no ``end`` in between: a
        blob published while another thread flushes the batch is covered by this flush's marker or the next."""
        with self._lock:
            self._begin()
            rename()

    def _begin(self) -> None:
        if self.marker is not None:
            return
        fd, tmp = tempfile.mkstemp(dir=self._store.ingest_dir, prefix=BATCH_PREFIX)
        try:
            os.write(fd, json.dumps(_owner()).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self._store.ingest_dir)
        self.marker = Path(tmp)

    def end(self) -> None:
        """One syncfs for every blob of the batch, then the marker goes (step 3)."""
        with self._lock:
            if self.marker is None:
                return
            try:
                sync_filesystem(self._store.root)
            except OSError as exc:  # the marker stays: the next open re-verifies this batch's blobs
                raise _store_error(exc, self._store.root, "flush blobs") from exc
            try:
                self.marker.unlink()
            except OSError:
                pass  # a leftover marker only costs a re-verification
            self.marker = None


class ContentStore:
    """Blobs by digest under ``root``; the root is also a valid OCI image layout."""

    def __init__(self, root: Path | str, *, create: bool = True, private: bool = False) -> None:
        self.root = Path(root)
        self.ingest_dir = self.root / INGEST_DIR
        self._transactions: list[list[Digest]] = []
        self._transactions_lock = threading.Lock()  # builds open transactions from several threads
        self._ambient: Batch | None = None  # the open ``batched`` block's batch: writers join it by default
        if create:
            self._init_layout(private)
            self.recover_batches()
        elif not (self.root / "oci-layout").exists():
            raise StoreError(f"{self.root} is not an OCI image layout (no oci-layout file)")
        elif private:
            try:
                self._tighten()
            except OSError as exc:
                raise _store_error(exc, self.root, "restrict the permissions") from exc
            self.recover_batches()

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

    def writer(self, algorithm: str = "sha256", *, limit: int | None = None, batch: Batch | None = None) -> BlobWriter:
        """An ingest; it joins ``batch``, else the batch of an open ``batched`` block, else flushes on commit."""
        return BlobWriter(self, algorithm, limit=limit, batch=batch or self._ambient)

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Every writer of this store object joins one batch while the block is open (a load, a build: callers
        that cannot hand a ``Batch`` to each writer); ``flush`` ends it early. Names need no care: ``ImageStore``
        calls ``flush`` before it writes ``index.json`` (step 3). An inner block joins the outer one."""
        if self._ambient is not None:
            yield
            return
        self._ambient = Batch(self)
        try:
            yield
        finally:
            batch, self._ambient = self._ambient, None
            batch.end()

    def flush(self) -> None:
        """Make every blob of the open ``batched`` block durable now (one syncfs when any was written since the
        last flush); the block goes on, its next blob makes a new marker. Nothing to do outside such a block."""
        batch = self._ambient
        if batch is not None:
            batch.end()

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """Writers given the yielded ``Batch`` (``writer``, ``ingest``, ``write``) share one flush when the block
        ends; name nothing they wrote until then (module docstring)."""
        batch = Batch(self)
        try:
            yield batch
        finally:
            batch.end()

    def recover_batches(self) -> int:
        """Re-verify the blobs of batches whose process died before their flush (module docstring, step 4);
        returns how many blobs were deleted. Best effort: a marker that cannot be handled stays for next time."""
        try:
            markers = [e for e in os.scandir(self.ingest_dir) if e.name.startswith(BATCH_PREFIX)]
        except OSError:
            return 0
        stale = []
        for entry in markers:
            try:
                with open(entry.path, "rb") as f:
                    owner = json.loads(f.read(4096) or b"null")
                since = entry.stat(follow_symlinks=False).st_mtime - _CLOCK_SLACK
            except (OSError, ValueError):
                continue
            if not _alive(owner):
                stale.append((entry.path, since))
        if not stale:
            return 0
        since = min(t for _p, t in stale)
        deleted = 0
        try:
            for digest, _size in list(self.list()):
                path = self.blob_path(digest)
                if path.stat().st_ctime < since:
                    continue
                hasher = Hasher(digest.algorithm)
                with open(path, "rb") as f:
                    while chunk := f.read(CHUNK * 4):
                        hasher.update(chunk)
                if hasher.digest() != digest:
                    path.unlink()
                    deleted += 1
        except OSError:
            return deleted
        fsync_dir(self.root / "blobs" / "sha256")
        for path, _t in stale:
            try:
                os.unlink(path)
            except OSError:
                pass
        return deleted

    def ingest(
        self,
        stream: BinaryIO,
        *,
        expected: Digest | None = None,
        size: int | None = None,
        limit: int | None = None,
        tap: Callable[[bytes], None] | None = None,
        batch: Batch | None = None,
    ) -> tuple[Digest, int]:
        """Copy a stream into the store; writing runs on a second thread while the caller's hashes. ``tap`` sees
        every chunk in order (``content.pathindex.IndexBuilder.feed``: one read for both), on a third thread:
        inflating a layer for its index overlaps hashing and writing it (isal, zstandard and hashlib release
        the GIL); one chunk at most is ahead of it."""
        if expected is not None and size is not None and self.stat(expected) == size:
            return expected, size
        algorithm = expected.algorithm if expected is not None else "sha256"
        if size is not None and limit is not None and size > limit:
            raise LimitExceeded(f"blob of {size} bytes exceeds the limit of {limit} bytes")
        with self.writer(algorithm, limit=limit, batch=batch) as w:
            with ThreadPoolExecutor(max_workers=2 if tap is not None else 1) as pool:
                pending = tapped = None
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
                    if tap is not None:
                        if tapped is not None:
                            tapped.result()  # in order, and bounded: one chunk in the tap at a time
                        tapped = pool.submit(tap, chunk)
                    w._hasher.update(chunk)
                for future in (pending, tapped):
                    if future is not None:
                        future.result()
            return w.commit(expected, size)

    def write(self, data: bytes, expected: Digest | None = None, algorithm: str = "sha256", *,
              batch: Batch | None = None) -> tuple[Digest, int]:
        """Store small bytes (manifests, configs)."""
        digest = Digest.of(data, expected.algorithm if expected else algorithm)
        if expected is not None and digest != expected:
            raise DigestMismatch(f"blob content hashes to {digest}, expected {expected}")
        if self.stat(digest) == len(data):
            return digest, len(data)
        with self.writer(digest.algorithm, batch=batch) as w:
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
            if entry.name.startswith(BATCH_PREFIX):
                continue  # a batch's marker: removed by its batch, or by recover_batches
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
