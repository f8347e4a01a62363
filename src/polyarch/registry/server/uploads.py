"""Blob upload sessions: POST → PATCH… → PUT ``?digest=``, and the monolithic ``POST ?digest=``.

A session is a row in the registry database (the authority: ``registry gc`` may purge it) plus its data in the
storage driver (``storage.UploadWriter``: a file under ``<root>/registry/uploads/``, or an S3 multipart upload) and,
in the process that received its bytes, a running hash. Chunks must arrive in order (``Content-Range`` start =
current offset, else 416); a chunk that fails half-way is rolled back (data and hash), so the session stays at its
last good offset, and after each good request the driver's state is recorded beside the offset. Completion
verifies digest and size and publishes the blob through the driver; a wrong digest answers 400
``DIGEST_INVALID`` and closes the session.

Open sessions are limited per repository (default 64) and per client address (default 256), counted in the metadata
database when a session is created (``MetadataStore.create_upload``), so replicas on one database share the limits; a
POST over either limit answers 429 ``TOOMANYREQUESTS``. A session counts until it completes, is cancelled (DELETE)
or has been idle for the upload TTL (its row not written), also when the process that held it died. Sessions survive a restart: a session this process has not seen is resumed from its row and
the driver's data on first use (its hash is then recomputed from the data at completion); on start only data
without a row is purged. With a shared database (replicas), a session continued on another replica since this
process last saved it (its row's offset moved) is resumed again from the row.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from polyarch.digest import Digest
from polyarch.errors import StoreError

from .errors import ApiError
from .metastore import MetadataStore, TooManyUploads, UploadLimits
from .storage import BlobStorage, SessionGone, UploadWriter

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


_HASH = ThreadPoolExecutor(max_workers=4, thread_name_prefix="registry-upload-hash")


def _gone() -> ApiError:
    return ApiError("BLOB_UPLOAD_UNKNOWN", "upload session was purged")


@dataclass(eq=False)
class Session:
    id: str
    repo: str
    algorithm: str
    writer: UploadWriter
    client: str
    hasher: Any  # None when resumed in a process that did not see the earlier bytes
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False
    saved: int = 0  # the offset this process last recorded in (or read from) the session's row

    @property
    def offset(self) -> int:
        return self.writer.offset

    def append(self, chunks: list[bytes]) -> None:
        """Blocking: write one batch of chunks at the session's offset while hashing them on another thread."""
        hasher = self.hasher
        done = _HASH.submit(lambda: [hasher.update(c) for c in chunks]) if hasher is not None else None
        try:
            self.writer.append(chunks)
        except SessionGone:
            raise _gone() from None
        finally:
            if done is not None:
                done.result()

    def checkpoint(self) -> tuple[object, Any]:
        return self.writer.checkpoint(), None if self.hasher is None else self.hasher.copy()

    def rollback(self, state: tuple[object, Any]) -> None:
        self.writer.rollback(state[0])
        self.hasher = state[1]

    def range_header(self) -> str:
        return f"0-{max(self.offset - 1, 0)}"


class Uploads:
    """Owner of the live sessions of this process; their limits are counted in the database."""

    def __init__(self, storage: BlobStorage, meta: MetadataStore, ttl: float = 3600.0, *,
                 max_per_repo: int = MAX_PER_REPO, max_per_client: int = MAX_PER_CLIENT) -> None:
        self.storage = storage
        self.meta = meta
        self.ttl = ttl
        self.max_per_repo = max_per_repo
        self.max_per_client = max_per_client
        self._live: dict[str, Session] = {}
        self._count_lock = threading.Lock()  # start() runs on I/O threads
        self._resume_lock = threading.Lock()

    def recover(self) -> int:
        """Startup: delete session data the database has no row for. Returns how many were purged.

        Each candidate's row is looked up again just before its data goes: with a shared database (replicas), a
        session another process started after the first read has a row by then (rows come before data)."""
        rows = {r.id for r in self.meta.uploads()}
        purged = 0
        for upload_id in list(self.storage.sessions()):
            if upload_id not in rows and self.meta.upload(upload_id) is None:
                self.storage.forget(upload_id, "")
                purged += 1
        return purged

    def _count(self, session: Session) -> None:
        with self._count_lock:
            self._live[session.id] = session

    def start(self, repo: str, algorithm: str = "sha256", client: str = "") -> Session:
        """A new empty session of ``repo`` for the client at address ``client``.

        :raises ApiError: 429 TOOMANYREQUESTS when the repository or the client has too many open sessions.
        """
        upload_id = secrets.token_hex(16)
        writer = self.storage.begin(upload_id)
        session = Session(upload_id, repo, algorithm, writer, client, hashlib.new(algorithm))
        try:
            self.meta.create_upload(upload_id, repo, algorithm, client,
                                    UploadLimits(self.max_per_repo, self.max_per_client, self.ttl))
        except TooManyUploads as exc:
            writer.abort()
            who = f"repository {repo}" if exc.scope == "repository" else "this client"
            raise ApiError("TOOMANYREQUESTS", f"{who} has {exc.limit} open upload sessions: finish or cancel some "
                           "first", status=429, headers={"Retry-After": RETRY_AFTER}) from None
        except BaseException:
            writer.abort()
            raise
        self._count(session)
        return session

    def _resume(self, upload_id: str, repo: str) -> Session:
        """Blocking: a session of an earlier process (or another replica) continued from its row."""
        with self._resume_lock:
            session = self._live.get(upload_id)
            if session is not None:
                return session
            row = self.meta.upload(upload_id)
            state = self.meta.upload_state(upload_id)
            if row is None or state is None or row.repo != repo:
                raise ApiError("BLOB_UPLOAD_UNKNOWN", "upload session not found")
            try:
                writer = self.storage.resume(upload_id, row.offset, state)
            except SessionGone:
                self.storage.forget(upload_id, state)
                self.meta.finish_upload(upload_id)
                raise ApiError("BLOB_UPLOAD_UNKNOWN", "upload session not found") from None
            session = Session(upload_id, repo, row.algorithm, writer, "", None, saved=row.offset)
            self._count(session)
            return session

    def is_live(self, upload_id: str) -> bool:
        return upload_id in self._live

    def get(self, upload_id: str, repo: str) -> Session:
        """Blocking. :raises ApiError: 404 BLOB_UPLOAD_UNKNOWN for a finished, cancelled, expired or foreign
        session."""
        session = self._live.get(upload_id)
        if session is None:
            return self._resume(upload_id, repo)
        row = self.meta.upload(upload_id)
        if session.closed or row is None or row.repo != repo or session.repo != repo:
            if row is None:
                self._drop(session)  # purged by gc or expiry
            raise ApiError("BLOB_UPLOAD_UNKNOWN", "upload session not found")
        if row.offset != session.saved:
            self._forget(session)  # continued by another replica since this process last saved it: the row wins
            return self._resume(upload_id, repo)
        return session

    def _forget(self, session: Session) -> None:
        session.closed = True
        with self._count_lock:
            self._live.pop(session.id, None)

    def _drop(self, session: Session) -> None:
        self._forget(session)
        session.writer.abort()

    def cancel(self, session: Session) -> None:
        """Close the session: data first (frees space when the disk is full), then the row (left for the
        TTL purge and ``registry gc`` if the database cannot be written)."""
        self._drop(session)
        try:
            self.meta.finish_upload(session.id)
        except StoreError:
            pass

    def save_offset(self, session: Session) -> None:
        """Blocking, after a good request: make the data durable in the driver, then record offset and state."""
        state = session.writer.flush()
        self.meta.advance_upload(session.id, session.offset, state)
        session.saved = session.offset

    def commit(self, session: Session, expected: Digest) -> int:
        """Blocking: verify and publish the session's data as blob ``expected``; returns its size.

        :raises ApiError: DIGEST_INVALID (session closed) when the data does not hash to ``expected``.
        """
        verified = False
        if expected.algorithm == session.algorithm and session.hasher is not None:
            if session.hasher.hexdigest() != expected.hex:
                self.cancel(session)
                raise ApiError("DIGEST_INVALID", "uploaded content does not match the digest",
                               detail={"digest": str(expected)})
            verified = True
        try:
            ok = session.writer.complete(expected, verified=verified)
        except SessionGone:
            self.cancel(session)
            raise _gone() from None
        except OSError:
            self.cancel(session)
            raise
        if not ok:
            self.cancel(session)
            raise ApiError("DIGEST_INVALID", "uploaded content does not match the digest",
                           detail={"digest": str(expected)})
        self._forget(session)
        return session.offset

    def expire(self, now: float | None = None) -> int:
        """Drop sessions idle longer than the TTL (also those of earlier processes), and live sessions whose row
        is gone."""
        now = time.time() if now is None else now
        rows = {r.id: r for r in self.meta.uploads()}
        dropped = 0
        for session in list(self._live.values()):
            row = rows.pop(session.id, None)
            if row is None or now - row.updated > self.ttl:
                if session.lock.locked():
                    continue
                self.cancel(session)
                dropped += 1
        for row in rows.values():
            if now - row.updated > self.ttl and row.id not in self._live:
                self.storage.forget(row.id, self.meta.upload_state(row.id) or "")
                self.meta.finish_upload(row.id)
                dropped += 1
        return dropped

    def close(self) -> None:
        """Forget the live sessions (their rows and data stay: a later process resumes them)."""
        for session in list(self._live.values()):
            self._forget(session)
