"""The queries both metadata databases run alike (SQLite in ``metadata.py``, PostgreSQL in ``pgmeta.py``): every
read, and the writes whose SQL is the same in both dialects. One text per query, written with ``?`` placeholders
and turned into the driver's style once; writes that differ (upserts) stay with each database.

A subclass gives ``_one``/``_all`` (its connection, its error translation), ``write()`` (one transaction),
``PLACEHOLDER`` (``?`` or ``%s``), ``UPLOAD_COLUMNS`` (``offset`` is a reserved word PostgreSQL wants quoted) and
``_serialize_uploads`` (PostgreSQL: an advisory lock; SQLite: nothing more, its write lock already serializes), so the
session limits ``create_upload`` checks hold across processes.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from .metastore import ManifestRow, TagRow, TooManyUploads, UploadLimits, UploadRow

__all__ = ["SqlCommon"]

_MANIFEST_COLUMNS = "repo, digest, media_type, size, artifact_type, subject, annotations"


class SqlCommon(ABC):
    """Reads of repositories, tags, manifests, links and upload sessions, and the dialect-free writes."""

    PLACEHOLDER: ClassVar[str] = "?"
    UPLOAD_COLUMNS: ClassVar[str] = "id, repo, algorithm, offset, created, updated"

    @abstractmethod
    def _one(self, sql: str, args: Sequence[Any]) -> tuple[Any, ...] | None: ...

    @abstractmethod
    def _all(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def write(self) -> AbstractContextManager[Any]: ...

    def _q(self, sql: str) -> str:
        return sql.replace("?", self.PLACEHOLDER)

    def tag(self, repo: str, tag: str) -> str | None:
        row = self._one(self._q("SELECT digest FROM tags WHERE repo=? AND tag=?"), (repo, tag))
        return row[0] if row else None

    def manifest(self, repo: str, digest: str) -> ManifestRow | None:
        row = self._one(self._q(f"SELECT {_MANIFEST_COLUMNS} FROM manifests WHERE repo=? AND digest=?"),
                        (repo, digest))
        return manifest_row(row) if row else None

    def has_link(self, repo: str, digest: str) -> bool:
        return self._one(self._q("SELECT 1 FROM links WHERE repo=? AND digest=?"), (repo, digest)) is not None

    def repos_with_blob(self, digest: str) -> list[str]:
        return [r[0] for r in self._all(self._q("SELECT repo FROM links WHERE digest=? LIMIT 1000"), (digest,))]

    def tags(self, repo: str, *, last: str = "", limit: int = 1000) -> list[str]:
        return [r[0] for r in self._all(self._q("SELECT tag FROM tags WHERE repo=? AND tag>? ORDER BY tag LIMIT ?"),
                                        (repo, last, limit))]

    def tags_of(self, repo: str, digest: str) -> list[str]:
        return [r[0] for r in self._all(self._q("SELECT tag FROM tags WHERE repo=? AND digest=?"), (repo, digest))]

    def tag_rows(self) -> list[TagRow]:
        return [TagRow(r[0], r[1], r[2], float(r[3]), r[4] or "", int(r[5] or 0)) for r in self._all(
            "SELECT t.repo, t.tag, t.digest, t.updated, m.media_type, m.size FROM tags t LEFT JOIN manifests m"
            " ON m.repo=t.repo AND m.digest=t.digest ORDER BY t.repo, t.tag", ())]

    def repo_exists(self, repo: str) -> bool:
        return self._one(self._q("SELECT 1 FROM repos WHERE name=?"), (repo,)) is not None

    def repos(self, *, last: str = "", limit: int = 1000) -> list[str]:
        return [r[0] for r in self._all(self._q("SELECT name FROM repos WHERE name>? ORDER BY name LIMIT ?"),
                                        (last, limit))]

    def referrers(self, repo: str, subject: str) -> list[ManifestRow]:
        rows = self._all(self._q(f"SELECT {_MANIFEST_COLUMNS} FROM manifests WHERE repo=? AND subject=? "
                                 "ORDER BY created, digest LIMIT 10000"), (repo, subject))
        return [manifest_row(r) for r in rows]

    def upload(self, upload_id: str) -> UploadRow | None:
        row = self._one(self._q(f"SELECT {self.UPLOAD_COLUMNS} FROM uploads WHERE id=?"), (upload_id,))
        return _upload_row(row) if row else None

    def uploads(self) -> list[UploadRow]:
        return [_upload_row(r) for r in self._all(f"SELECT {self.UPLOAD_COLUMNS} FROM uploads", ())]

    def upload_state(self, upload_id: str) -> str | None:
        row = self._one(self._q("SELECT state FROM uploads WHERE id=?"), (upload_id,))
        return str(row[0]) if row else None

    def referenced_digests(self) -> set[str]:
        """Every digest a registry manifest is, or references (config, layers, children)."""
        return {r[0] for r in self._all("SELECT digest FROM manifests UNION SELECT target FROM refs", ())}

    def last_link_touch(self, digest: str) -> float:
        row = self._one(self._q("SELECT MAX(touched) FROM links WHERE digest=?"), (digest,))
        return float(row[0]) if row and row[0] is not None else 0.0

    # --- writes the two dialects spell alike ------------------------------------------------------------------

    def delete_manifest(self, repo: str, digest: str) -> bool:
        with self.write() as c:
            cur = c.execute(self._q("DELETE FROM manifests WHERE repo=? AND digest=?"), (repo, digest))
            c.execute(self._q("DELETE FROM refs WHERE repo=? AND manifest=?"), (repo, digest))
            c.execute(self._q("DELETE FROM tags WHERE repo=? AND digest=?"), (repo, digest))
            c.execute(self._q("DELETE FROM links WHERE repo=? AND digest=?"), (repo, digest))
            return bool(cur.rowcount > 0)

    def delete_tag(self, repo: str, tag: str) -> bool:
        with self.write() as c:
            return bool(c.execute(self._q("DELETE FROM tags WHERE repo=? AND tag=?"), (repo, tag)).rowcount > 0)

    @abstractmethod
    def _serialize_uploads(self, c: Any) -> None:
        """Inside ``create_upload``'s transaction, before counting: exclude every other ``create_upload`` on the
        database until the commit."""

    def create_upload(self, upload_id: str, repo: str, algorithm: str, client: str = "",
                      limits: UploadLimits | None = None) -> None:
        now = time.time()
        with self.write() as c:
            if limits is not None:
                self._serialize_uploads(c)
                since = now - limits.idle
                for scope, column, value, limit in (("repository", "repo", repo, limits.per_repo),
                                                    ("client", "client", client, limits.per_client)):
                    # at most ``limit`` rows are read: the count stops at the limit
                    row = c.execute(self._q(f"SELECT COUNT(*) FROM (SELECT 1 FROM uploads WHERE {column}=? AND "
                                            "updated>? LIMIT ?) AS open_sessions"),
                                    (value, since, limit)).fetchone()
                    if int(row[0]) >= limit:
                        raise TooManyUploads(scope, limit)
            c.execute(self._q(f"INSERT INTO uploads ({self.UPLOAD_COLUMNS}, client) VALUES (?,?,?,?,?,?,?)"),
                      (upload_id, repo, algorithm, 0, now, now, client))


def _upload_row(row: tuple[Any, ...]) -> UploadRow:
    return UploadRow(row[0], row[1], row[2], int(row[3]), float(row[4]), float(row[5]))


def manifest_row(row: tuple[Any, ...]) -> ManifestRow:
    """A ``manifests`` row (``_MANIFEST_COLUMNS`` order) as a value; unreadable annotations read as none."""
    try:
        annotations = json.loads(row[6]) if row[6] else {}
    except ValueError:
        annotations = {}
    return ManifestRow(row[0], row[1], row[2], int(row[3]), row[4] or "", row[5], annotations)
