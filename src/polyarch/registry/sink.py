"""Where a downloaded blob goes (the content store's ``BlobWriter`` fits): the one type blob download, foreign
layer fetches and the client share."""

from __future__ import annotations

from typing import Protocol

from polyarch.digest import Digest

__all__ = ["BlobSink"]


class BlobSink(Protocol):
    """Receives a blob's bytes; ``commit`` verifies digest and size, ``abort`` drops what was written."""

    def write(self, data: bytes, /) -> int: ...
    def commit(self, expected: Digest | None = None, size: int | None = None) -> tuple[Digest, int]: ...
    def abort(self) -> None: ...
