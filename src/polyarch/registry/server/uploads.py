"""Blob upload sessions: POST → PATCH… → PUT ``?digest=``, and the monolithic ``POST ?digest=``.

A session is a row in the registry database (the authority: ``registry gc`` may purge it) plus, in this
process, a data file under ``<root>/registry/uploads/`` and a running hash kept in memory. No descriptor is held
between requests: each append opens the file, writes at the session's offset and closes it, so idle sessions
cost memory only. Chunks must arrive in order (``Content-Range`` start = current offset, else 416); a chunk that
fails half-way is rolled back (file truncated, hash restored), so the session stays at its last good offset.
Completion verifies digest and size, fsyncs and renames the file into the content store under its digest: the
same temp → verify → fsync → rename protocol as ``ContentStore``; a wrong digest answers 400 ``DIGEST_INVALID``
and closes the session.

Open sessions are limited per repository (default 64) and per client address (default 256); a POST over either
limit answers 429 ``TOOMANYREQUESTS``. A session counts until it completes, is cancelled (DELETE) or has been idle
for the upload TTL. Sessions do not survive a restart: the server purges them on start (the clients restart those
uploads).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyarch.content.store import ContentStore
from polyarch.digest import CHUNK, Digest
from polyarch.errors import StoreError
from polyarch.fsutil import fsync_dir

from .body import write_and_hash
from .errors import ApiError
from .metadata import Metadata

__all__ = ["Session", "Uploads", "parse_content_range"]

_RANGE_RE = re.compile(r"^(?:bytes[ =])?(\d{1,19})-(\d{1,19})(?:/(?:\*|\d{1,19}))?$")


def parse_content_range(value: str) -> tuple[int, int]:
    """``start-end`` (inclusive) of a PATCH ``Content-Range``; accepts ``a-b``, ``bytes a-b/*``, ``bytes=a-b``.

    :raises ApiError: 416 for a malformed or inverted range.
    """
    m = _RANGE_RE.match(value.strip())
    if not m:
        raise ApiError("BLOB_UPLOAD_INVALID", "malformed Content-Range", status=416, detail={"range": value[:100]})
    start, end = int(m.group(1)), int(m.group(2))
    if end < start:
        raise ApiError("BLOB_UPLOAD_INVALID", "Content-Range end before start", status=416,
                       detail={"range": value[:100]})
    return start, end


MAX_PER_REPO = 64
MAX_PER_CLIENT = 256
RETRY_AFTER = "60"


def _release(counts: collections.Counter[str], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]


@dataclass(eq=False)
class Session:
    id: str
    repo: str
    algorithm: str
    path: Path
    client: str
    hasher: Any
    offset: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False

    def append(self, chunks: list[bytes]) -> None:
        """Blocking: write one batch of chunks at the session's offset and hash them; no descriptor is kept."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # purged by ``registry gc`` while this request was running
            raise ApiError("BLOB_UPLOAD_UNKNOWN", "upload session was purged") from None
        try:
            os.lseek(fd, self.offset, os.SEEK_SET)
            write_and_hash(fd, chunks, self.hasher)
        finally:
            os.close(fd)
        self.offset += sum(len(c) for c in chunks)

    def checkpoint(self) -> tuple[int, Any]:
        return self.offset, self.hasher.copy()

    def rollback(self, state: tuple[int, Any]) -> None:
        self.offset, self.hasher = state[0], state[1]
        try:
            os.truncate(self.path, self.offset)
        except OSError:
            pass

    def range_header(self) -> str:
        return f"0-{max(self.offset - 1, 0)}"


class Uploads:
    """Owner of the live sessions of this process and of their limits."""

    def __init__(self, store: ContentStore, meta: Metadata, ttl: float = 3600.0, *,
                 max_per_repo: int = MAX_PER_REPO, max_per_client: int = MAX_PER_CLIENT) -> None:
        self.store = store
        self.meta = meta
        self.ttl = ttl
        self.max_per_repo = max_per_repo
        self.max_per_client = max_per_client
        self.dir = store.root / "registry" / "uploads"
        self._live: dict[str, Session] = {}
        self._per_repo: collections.Counter[str] = collections.Counter()
        self._per_client: collections.Counter[str] = collections.Counter()
        self._count_lock = threading.Lock()  # start() runs on I/O threads: check and count in one step

    def recover(self) -> int:
        """Startup: forget every session of a previous process and delete its data. Returns how many."""
        ids = self.meta.clear_uploads()
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        return len(ids)

    def start(self, repo: str, algorithm: str = "sha256", client: str = "") -> Session:
        """A new empty session of ``repo`` for the client at address ``client``.

        :raises ApiError: 429 TOOMANYREQUESTS when the repository or the client has too many open sessions.
        """
        upload_id = secrets.token_hex(16)
        path = self.dir / upload_id
        session = Session(upload_id, repo, algorithm, path, client, hashlib.new(algorithm))
        with self._count_lock:
            if self._per_repo[repo] >= self.max_per_repo:
                raise ApiError("TOOMANYREQUESTS", f"repository {repo} has {self.max_per_repo} open upload sessions: "
                               "finish or cancel some first", status=429, headers={"Retry-After": RETRY_AFTER})
            if self._per_client[client] >= self.max_per_client:
                raise ApiError("TOOMANYREQUESTS", f"this client has {self.max_per_client} open upload sessions: "
                               "finish or cancel some first", status=429, headers={"Retry-After": RETRY_AFTER})
            self._per_repo[repo] += 1
            self._per_client[client] += 1
            self._live[upload_id] = session
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            self.meta.create_upload(upload_id, repo, algorithm)
        except BaseException:
            self._drop(session)
            raise
        return session

    def get(self, upload_id: str, repo: str) -> Session:
        """:raises ApiError: 404 BLOB_UPLOAD_UNKNOWN for a finished, cancelled, expired or foreign session."""
        session = self._live.get(upload_id)
        row = self.meta.upload(upload_id)
        if session is None or session.closed or row is None or row.repo != repo or session.repo != repo:
            if session is not None and row is None:
                self._drop(session)  # purged by gc or expiry
            raise ApiError("BLOB_UPLOAD_UNKNOWN", "upload session not found")
        return session

    def _forget(self, session: Session) -> None:
        session.closed = True
        with self._count_lock:
            if self._live.pop(session.id, None) is not None:
                _release(self._per_repo, session.repo)
                _release(self._per_client, session.client)

    def _drop(self, session: Session) -> None:
        self._forget(session)
        try:
            os.unlink(session.path)
        except OSError:
            pass

    def cancel(self, session: Session) -> None:
        """Close the session: data first (frees space when the disk is full), then the row (left for the
        TTL purge and ``registry gc`` if the database cannot be written)."""
        self._drop(session)
        try:
            self.meta.finish_upload(session.id)
        except StoreError:
            pass

    def save_offset(self, session: Session) -> None:
        self.meta.advance_upload(session.id, session.offset)

    def commit(self, session: Session, expected: Digest) -> int:
        """Blocking: verify and publish the session's data as blob ``expected``; returns its size.

        :raises ApiError: DIGEST_INVALID (session closed) when the data does not hash to ``expected``.
        """
        try:
            if expected.algorithm == session.algorithm:
                got = session.hasher.hexdigest()
            else:
                h = hashlib.new(expected.algorithm)
                with open(session.path, "rb", buffering=0) as f:
                    while chunk := f.read(CHUNK * 4):
                        h.update(chunk)
                got = h.hexdigest()
            if got != expected.hex:
                self.cancel(session)
                raise ApiError("DIGEST_INVALID", "uploaded content does not match the digest",
                               detail={"digest": str(expected)})
            fd = os.open(session.path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            target = self.store.blob_path(expected)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(session.path, 0o644)
            os.replace(session.path, target)
            fsync_dir(target.parent)
        except FileNotFoundError:
            self.cancel(session)
            raise ApiError("BLOB_UPLOAD_UNKNOWN", "upload session was purged") from None
        except OSError:
            self.cancel(session)
            raise
        self._forget(session)
        return session.offset

    def expire(self, now: float | None = None) -> int:
        """Drop sessions idle longer than the TTL (and live sessions whose row is gone)."""
        now = time.time() if now is None else now
        rows = {r.id: r for r in self.meta.uploads()}
        dropped = 0
        for session in list(self._live.values()):
            row = rows.get(session.id)
            if row is None or now - row.updated > self.ttl:
                if session.lock.locked():
                    continue
                self.cancel(session)
                dropped += 1
        return dropped

    def close(self) -> None:
        """Forget the live sessions (their data goes at the next start's ``recover``)."""
        for session in list(self._live.values()):
            self._forget(session)
