"""The one tar reader for layers (apply and verify): ``tarfile`` members with every metadata header bounded.

API::

    open_members(fileobj, *, stream=False) -> tarfile.TarFile   # iterate it for TarInfo members
    MAX_META_HEADER, MAX_MEMBER_META, MAX_META_CHAIN

``tarfile`` reads PAX headers, GNU long names/links and GNU sparse maps whole into memory, and follows chains of
them recursively. A layer is untrusted input, so before tarfile reads any of them:

- a PAX (``x``, ``g``, Solaris ``X``) or GNU long-name/long-link header larger than ``MAX_META_HEADER`` (1 MiB) is
  refused by its size field, before a byte of it is read;
- all the metadata read for one member (its PAX/GNU headers and GNU sparse map blocks, old ``S`` extension blocks
  or the 1.0 map in the data area) is bounded by ``MAX_MEMBER_META`` bytes, and a chain of metadata headers by
  ``MAX_META_CHAIN`` (tarfile recurses once per header);
- global PAX headers accumulate over the archive: their total is bounded by ``MAX_META_HEADER``;
- a malformed sparse map or number (tarfile raises ValueError/IndexError there) is an invalid layer.

Every refusal is ``InvalidLayer``. ``stream=False`` opens in ``r:`` mode on a forward-only reader (apply's
``LayerReader``: tarfile reads headers from it and never seeks back); ``stream=True`` uses ``r|``.
"""

from __future__ import annotations

import tarfile
from typing import IO, Any

from polyarch.errors import InvalidLayer

__all__ = ["MAX_MEMBER_META", "MAX_META_CHAIN", "MAX_META_HEADER", "open_members"]

MAX_META_HEADER = 1 << 20
MAX_MEMBER_META = 4 << 20
MAX_META_CHAIN = 16
_SIZED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
          tarfile.GNUTYPE_LONGLINK)
_META = (*_SIZED, tarfile.GNUTYPE_SPARSE)


class _Budget:
    """The tar file object while one member's metadata is read: counts bytes and the depth of the chain."""

    __slots__ = ("depth", "inner", "left")

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.left = MAX_MEMBER_META
        self.depth = 0

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.left:
            raise InvalidLayer(f"tar metadata of one entry exceeds {MAX_MEMBER_META} bytes")
        data: bytes = self.inner.read(n)
        self.left -= len(data)
        return data

    def tell(self) -> int:
        return int(self.inner.tell())

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self.inner.seek(offset, whence))


class _BoundedTarInfo(tarfile.TarInfo):
    """Checks the bounds of the module docstring before tarfile reads a metadata header."""

    def _proc_member(self, tar: Any) -> Any:
        if self.type not in _META:
            return super()._proc_member(tar)  # type: ignore[misc]
        if self.type in _SIZED and self.size > MAX_META_HEADER:
            raise InvalidLayer(f"tar metadata header of {self.size} bytes exceeds {MAX_META_HEADER}")
        outer = not isinstance(tar.fileobj, _Budget)
        budget = _Budget(tar.fileobj) if outer else tar.fileobj
        budget.depth += 1
        if budget.depth > MAX_META_CHAIN:
            raise InvalidLayer(f"more than {MAX_META_CHAIN} tar metadata headers for one entry")
        tar.fileobj = budget
        try:
            member = super()._proc_member(tar)  # type: ignore[misc]
        except (ValueError, IndexError, OverflowError) as exc:
            raise InvalidLayer(f"malformed tar metadata header: {exc}") from exc
        finally:
            if outer:
                tar.fileobj = budget.inner
        if self.type == tarfile.XGLTYPE and sum(len(k) + len(v) for k, v in tar.pax_headers.items()) \
                > MAX_META_HEADER:
            raise InvalidLayer(f"global PAX headers exceed {MAX_META_HEADER} bytes in total")
        return member


def open_members(fileobj: IO[bytes] | Any, *, stream: bool = False) -> tarfile.TarFile:
    """A ``TarFile`` reading ``fileobj`` forward only, names decoded with surrogateescape (bytes kept)."""
    return tarfile.open(fileobj=fileobj, mode="r|" if stream else "r:",  # type: ignore[call-overload,no-any-return]
                        tarinfo=_BoundedTarInfo, errors="surrogateescape")
