"""Where the registry keeps blob bytes: the ``BlobStorage`` seam and its drivers.

``filesystem`` (the local content store, the default) lives in :mod:`.filesystem`; ``s3`` (any S3-compatible
store) in :mod:`.s3`, imported only when configured (it imports boto3).
"""

from __future__ import annotations

from .filesystem import FilesystemStorage
from .protocol import BlobReader, BlobStorage, SessionGone, StorageUnavailable, UploadWriter

__all__ = ["BlobReader", "BlobStorage", "FilesystemStorage", "SessionGone", "StorageUnavailable", "UploadWriter"]
