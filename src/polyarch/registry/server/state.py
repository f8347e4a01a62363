"""The registry's shared state: configuration, content store, blob storage, metadata, local names, sessions, auth.

Metadata is a ``metastore.MetadataStore``: SQLite beside the store by default, or one the caller made (the CLI
makes ``pgmeta.PostgresMetadata`` for ``--database postgresql://…``, which replicas share).

``blob_size`` is the one access rule for blobs: a repository may serve a digest when it holds a link to it
(pushed, mounted, or a manifest of it) or when a local store name served as that repository reaches it, and
the blob storage really has it (checked on every request: no existence cache to go stale).

With ``upstream`` and ``proxy`` given, ``proxy`` is the pull-through mirror (``proxy.PullThrough``) the handlers
ask for what the registry does not have yet.

Blob bytes live in a ``storage.BlobStorage`` (default: the local content store). With another storage (S3), local
store names are not served: their blobs are in the local store, not in the registry's storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.digest import Digest

from .auth import Authorizer
from .localstore import LocalNames
from .metadata import DB_NAME, Metadata
from .metastore import MetadataStore
from .proxy import ProxyConfig, PullThrough, Upstream
from .storage import BlobStorage, FilesystemStorage
from .uploads import MAX_PER_CLIENT, MAX_PER_REPO, Uploads

__all__ = ["REDIRECT_MIN", "Registry", "RegistryConfig"]

MAX_MANIFEST = 4 << 20
# Blobs smaller than this are streamed even when redirects are on (``storage.redirect.minsize``; 0: redirect every
# blob, as distribution does). The spec asks for ``Docker-Content-Digest`` on the blob GET answer reached after any
# redirect, and a presigned S3 answer can never carry that header (S3 returns only its own and ``x-amz-meta-*``
# headers); streaming gives it. For a small blob (configs, signatures, SBOMs, attestations) the redirect also costs
# more than it saves: a second request, often a new connection and TLS handshake to the storage, against a few
# milliseconds of the registry's bandwidth. Large layers, where offloading the bytes matters, are redirected.
REDIRECT_MIN = 1 << 20


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    read_only: bool = False
    delete_enabled: bool = False
    max_manifest: int = MAX_MANIFEST
    max_blob: int | None = None
    upload_ttl: float = 3600.0
    max_uploads_per_repo: int = MAX_PER_REPO
    max_uploads_per_client: int = MAX_PER_CLIENT
    idle_timeout: float = 60.0
    page_max: int = 1000
    redirect: bool = True  # blob GET answers 307 to the storage's presigned URL when it has one
    redirect_min: int = REDIRECT_MIN  # … for blobs of at least this size
    redirect_ttl: int = 1200


class Registry:
    """Owns the metadata database (``meta``: SQLite ``<root>/registry.db`` unless one is given, e.g. PostgreSQL)
    and the live upload sessions; close with ``close()``."""

    def __init__(self, root: Path | ContentStore, config: RegistryConfig | None = None,
                 authorizer: Authorizer | None = None, storage: BlobStorage | None = None,
                 meta: MetadataStore | None = None, upstream: Upstream | None = None,
                 proxy: ProxyConfig | None = None) -> None:
        self.store = root if isinstance(root, ContentStore) else ContentStore(root)
        self.images = ImageStore(self.store)
        self.config = config or RegistryConfig()
        self.blobs: BlobStorage = storage if storage is not None else FilesystemStorage(self.store)
        self.meta: MetadataStore = meta if meta is not None else Metadata(self.store.root / DB_NAME)
        self.local = LocalNames(self.images, enabled=self.blobs.name == FilesystemStorage.name)
        self.uploads = Uploads(self.blobs, self.meta, self.config.upload_ttl,
                               max_per_repo=self.config.max_uploads_per_repo,
                               max_per_client=self.config.max_uploads_per_client)
        self.auth = authorizer or Authorizer()
        # a pull-through mirror of ``upstream`` (the caller's client) when both are given
        self.proxy = PullThrough(upstream, proxy, self.blobs, self.meta, max_manifest=self.config.max_manifest) \
            if upstream is not None and proxy is not None else None

    def recover(self) -> int:
        return self.uploads.recover()

    def blob_size(self, repo: str, digest: Digest) -> int | None:
        """Size of ``digest`` as served by ``repo``, or None when the repository may not serve it."""
        text = str(digest)
        if not (self.meta.has_link(repo, text) or text in self.local.reachable(repo)):
            return None
        return self.blobs.stat(digest)

    def repo_known(self, repo: str) -> bool:
        return self.meta.repo_exists(repo) or repo in self.local.view().repos

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        self.uploads.close()
        self.meta.close()
