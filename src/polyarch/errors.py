"""The one error tree of polyarch.

PolyarchError                      every error a user may see; one line + optional hint; exit 1
├── UsageError                     bad flags or arguments; exit 2
├── ParseError                     text input with a location (Dockerfile, bake file); renders a caret
├── InvalidDigest                  digest syntax
├── DigestMismatch                 bytes do not hash to the expected digest, or size differs
├── InvalidPlatform                platform string
├── InvalidReference               image reference syntax
├── InvalidManifest                manifest / index / config JSON that is not valid
├── NotFound                       a blob, image, ref or file that does not exist
├── LimitExceeded                  a size, count or decompression limit was hit
├── InvalidLayer                   a layer archive that is unsafe or malformed
├── StoreError                     the content store cannot be used (permissions, disk)
├── RegistryError                  talking to a registry failed (auth, network, protocol)
└── BuildError                     a build step failed

Lower-level exceptions (OSError, httpx errors, tarfile errors) are translated into these at module
boundaries with ``raise … from exc``; the CLI renders them in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BuildError",
    "DigestMismatch",
    "InvalidDigest",
    "InvalidLayer",
    "InvalidManifest",
    "InvalidPlatform",
    "InvalidReference",
    "LimitExceeded",
    "NotFound",
    "ParseError",
    "PolyarchError",
    "RegistryError",
    "SourceSpan",
    "StoreError",
    "UsageError",
]


class PolyarchError(Exception):
    """Base of every error polyarch reports to a user."""

    reference = "polyarch-error"
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def render(self) -> str:
        """The text shown to the user: the message, and a hint line when there is one."""
        text = f"error: {self.message}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text


class UsageError(PolyarchError, ValueError):
    reference = "usage"
    exit_code = 2


@dataclass(frozen=True, slots=True)
class SourceSpan:
    """A location in a text file: 1-based line and column, and the length of the bad part."""

    filename: str
    line: int
    column: int
    length: int = 1
    source_line: str = ""

    def caret(self) -> str:
        pad = "".join("\t" if c == "\t" else " " for c in self.source_line[: max(self.column - 1, 0)])
        return pad + "^" + "~" * max(self.length - 1, 0)


class ParseError(PolyarchError, ValueError):
    reference = "parse-error"

    def __init__(self, message: str, span: SourceSpan | None = None, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.span = span

    def __str__(self) -> str:
        if self.span is None:
            return self.message
        return f"{self.span.filename}:{self.span.line}:{self.span.column}: {self.message}"

    def render(self) -> str:
        text = f"error: {self}"
        if self.span is not None and self.span.source_line:
            text += f"\n  {self.span.source_line}\n  {self.span.caret()}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text


class InvalidDigest(PolyarchError, ValueError):
    reference = "invalid-digest"


class DigestMismatch(PolyarchError, ValueError):
    reference = "digest-mismatch"


class InvalidPlatform(PolyarchError, ValueError):
    reference = "invalid-platform"


class InvalidReference(PolyarchError, ValueError):
    reference = "invalid-reference"


class InvalidManifest(PolyarchError, ValueError):
    reference = "invalid-manifest"


class NotFound(PolyarchError, LookupError):
    reference = "not-found"


class LimitExceeded(PolyarchError):
    reference = "limit-exceeded"


class InvalidLayer(PolyarchError, ValueError):
    reference = "invalid-layer"


class StoreError(PolyarchError):
    reference = "store-error"


class RegistryError(PolyarchError):
    """A registry answered with an error, or could not be reached.

    ``status`` is the HTTP status when there was an answer, ``code`` the distribution-spec error code.
    """

    reference = "registry-error"

    def __init__(
        self, message: str, *, hint: str | None = None, status: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code


class BuildError(PolyarchError):
    reference = "build-failed"
