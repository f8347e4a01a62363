"""Content digests (``algorithm:hex``) with strict syntax, and streaming verification.

Only ``sha256`` and ``sha512`` are accepted, with exact lowercase hex of the right length: a digest is used to
build file paths and URLs, so anything looser is a traversal or confusion risk (CVE-2024-3727).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import IO, BinaryIO

from polyarch.errors import DigestMismatch, InvalidDigest

__all__ = [
    "ALGORITHMS",
    "CHUNK",
    "Digest",
    "Hasher",
    "VerifyingReader",
    "hash_file",
]

ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_HEX = frozenset("0123456789abcdef")
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``alg:hex`` strictly.

        :raises InvalidDigest: unknown algorithm, wrong length, or anything but lowercase hex.
        """
        if not isinstance(text, str):
            raise InvalidDigest(f"invalid digest {text!r}: not a string")
        alg, sep, hexpart = text.partition(":")
        if not sep:
            raise InvalidDigest(f"invalid digest {text[:100]!r}: expected algorithm:hex")
        expected = ALGORITHMS.get(alg)
        if expected is None:
            raise InvalidDigest(
                f"invalid digest {text[:100]!r}: unsupported algorithm {alg[:20]!r}",
                hint="supported algorithms: sha256, sha512",
            )
        if len(hexpart) != expected or not _HEX.issuperset(hexpart):
            raise InvalidDigest(f"invalid digest {text[:100]!r}: {alg} needs {expected} lowercase hex characters")
        return cls(alg, hexpart)

    @classmethod
    def is_valid(cls, text: str) -> bool:
        try:
            cls.parse(text)
        except InvalidDigest:
            return False
        return True

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        if algorithm not in ALGORITHMS:
            raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}")
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def short(self) -> str:
        return self.hex[:12]

    def hasher(self) -> Hasher:
        return Hasher(self.algorithm)


class Hasher:
    """Incremental hash that also counts bytes."""

    __slots__ = ("_h", "algorithm", "size")

    def __init__(self, algorithm: str = "sha256") -> None:
        if algorithm not in ALGORITHMS:
            raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}")
        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._h.hexdigest())


class VerifyingReader:
    """Wraps a binary stream; at EOF checks that what was read hashes to ``expected`` (and has ``size``).

    :raises DigestMismatch: at EOF, when content or size differ; also as soon as more than ``size`` bytes arrive.
    """

    def __init__(self, raw: IO[bytes], expected: Digest, size: int | None = None) -> None:
        self._raw = raw
        self._expected = expected
        self._size = size
        self._hasher = Hasher(expected.algorithm)
        self._done = False

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._hasher.update(data)
            if self._size is not None and self._hasher.size > self._size:
                raise DigestMismatch(f"blob {self._expected} is larger than its declared size {self._size}")
        elif not self._done:
            self._done = True
            self.check()
        return data

    def check(self) -> None:
        if self._size is not None and self._hasher.size != self._size:
            raise DigestMismatch(
                f"blob {self._expected}: got {self._hasher.size} bytes, descriptor says {self._size}"
            )
        got = self._hasher.digest()
        if got != self._expected:
            raise DigestMismatch(f"blob content hashes to {got}, expected {self._expected}")

    def close(self) -> None:
        self._raw.close()


def hash_file(path: str | os.PathLike[str] | BinaryIO, algorithm: str = "sha256") -> tuple[Digest, int]:
    """Digest and size of a file, read in large chunks."""
    hasher = Hasher(algorithm)
    if hasattr(path, "readinto"):
        _hash_stream(path, hasher)  # type: ignore[arg-type]
    else:
        with open(path, "rb", buffering=0) as f:
            _hash_stream(f, hasher)
    return hasher.digest(), hasher.size


def _hash_stream(f: BinaryIO, hasher: Hasher) -> None:
    buf = bytearray(CHUNK * 4)
    view = memoryview(buf)
    while True:
        n = f.readinto(buf)
        if not n:
            return
        hasher.update(view[:n])
