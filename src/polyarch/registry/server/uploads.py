"""Blob upload sessions: POST → PATCH… → PUT ``?digest=``, and the monolithic ``POST ?digest=``.

A session is a row in the registry database (the authority: ``registry gc`` may purge it) plus, in this
process, an open data file under ``<root>/registry/uploads/`` and a running hash. Chunks must arrive in order
(``Content-Range`` start = current offset, else 416); a chunk that fails half-way is rolled back (file
truncated, hash restored), so the session stays at its last good offset. Completion verifies digest and size,
fsyncs and renames the file into the content store under its digest: the same temp → verify → fsync → rename
protocol as ``ContentStore``; a wrong digest answers 400 ``DIGEST_INVALID`` and closes the session.

Sessions do not survive a restart: the server purges them on start (the clients restart those uploads).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyarch.content.store import ContentStore, fsync_dir
from polyarch.digest import CHUNK, Digest
from polyarch.errors import StoreError

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


@dataclass(eq=False)
class Session:
    id: str
    repo: str
    algorithm: str
    path: Path
    file: Any
    hasher: Any
    offset: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False

    def append(self, chunks: list[bytes]) -> None:
        """Blocking: write and hash one batch of chunks."""
        write_and_hash(self.file.fileno(), chunks, self.hasher)
        self.offset += sum(len(c) for c in chunks)

    def checkpoint(self) -> tuple[int, Any]:
        return self.offset, self.hasher.copy()

    def rollback(self, state: tuple[int, Any]) -> None:
        self.offset, self.hasher = state[0], state[1]
        try:
            self.file.flush()
            self.file.truncate(self.offset)
            self.file.seek(self.offset)
        except (OSError, ValueError):
            pass

    def range_header(self) -> str:
        return f"0-{max(self.offset - 1, 0)}"


class Uploads:
    """Owner of the live sessions of this process."""

    def __init__(self, store: ContentStore, meta: Metadata, ttl: float = 3600.0) -> None:
        self.store = store
        self.meta = meta
        self.ttl = ttl
        self.dir = store.root / "registry" / "uploads"
        self._live: dict[str, Session] = {}

    def recover(self) -> int:
        """Startup: forget every session of a previous process and delete its data. Returns how many."""
        ids = self.meta.clear_uploads()
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        return len(ids)

    def start(self, repo: str, algorithm: str = "sha256") -> Session:
        upload_id = secrets.token_hex(16)
        path = self.dir / upload_id
        self.dir.mkdir(parents=True, exist_ok=True)
        f = open(path, "w+b", buffering=0)
        session = Session(upload_id, repo, algorithm, path, f, hashlib.new(algorithm))
        self.meta.create_upload(upload_id, repo, algorithm)
        self._live[upload_id] = session
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

    def _drop(self, session: Session) -> None:
        session.closed = True
        self._live.pop(session.id, None)
        try:
            session.file.close()
        except OSError:
            pass
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
                session.file.seek(0)
                h = hashlib.new(expected.algorithm)
                while chunk := session.file.read(CHUNK * 4):
                    h.update(chunk)
                got = h.hexdigest()
            if got != expected.hex:
                self.cancel(session)
                raise ApiError("DIGEST_INVALID", "uploaded content does not match the digest",
                               detail={"digest": str(expected)})
            os.fsync(session.file.fileno())
            session.file.close()
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
        session.closed = True
        self._live.pop(session.id, None)
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
        for session in list(self._live.values()):
            try:
                session.file.close()
            except OSError:
                pass
        self._live.clear()
