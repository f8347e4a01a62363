"""Image references: ``[domain[:port]/]path[:tag][@digest]`` with Docker's normalization.

``busybox`` → ``docker.io/library/busybox:latest``; ``localhost:5000/app`` keeps its registry. Repository paths
must be lowercase (Docker's rule); a tag is ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from polyarch.digest import Digest
from polyarch.errors import InvalidDigest, InvalidReference

__all__ = ["DEFAULT_DOMAIN", "Reference", "parse", "valid_repository", "valid_tag"]

DEFAULT_DOMAIN = "docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DOMAIN_RE = re.compile(
    r"^(?:(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(?:\.(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)
MAX_NAME = 255


def valid_repository(path: str) -> bool:
    return len(path) <= MAX_NAME and bool(_PATH_RE.match(path))


def valid_tag(tag: str) -> bool:
    return bool(_TAG_RE.match(tag))


@dataclass(frozen=True, slots=True)
class Reference:
    domain: str
    path: str
    tag: str = ""
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """``docker.io/library/busybox``: domain and repository path."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def familiar(self) -> str:
        """The short form a user types: ``busybox:latest`` for ``docker.io/library/busybox:latest``."""
        name = self.name
        if self.domain == DEFAULT_DOMAIN:
            name = self.path.removeprefix("library/")
        text = name
        if self.tag:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag (``latest`` by default)."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or "latest"

    def with_tag(self, tag: str) -> Reference:
        if not valid_tag(tag):
            raise InvalidReference(f"invalid tag {tag!r}")
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: Digest) -> Reference:
        return Reference(self.domain, self.path, self.tag, digest)

    def defaulted(self) -> Reference:
        """With ``latest`` when neither tag nor digest was given."""
        if self.tag or self.digest is not None:
            return self
        return Reference(self.domain, self.path, "latest", None)

    def same_name(self, other: Reference) -> bool:
        return self.name == other.name


def parse(text: str) -> Reference:
    """Parse and normalize an image reference.

    :raises InvalidReference: with the reason (uppercase repository, bad tag, bad digest, too long).
    """
    if not isinstance(text, str) or not text or text != text.strip():
        raise InvalidReference(f"invalid reference {text!r}: empty or surrounded by spaces")
    rest, at, digest_text = text.partition("@")
    digest = None
    if at:
        try:
            digest = Digest.parse(digest_text)
        except InvalidDigest as exc:
            raise InvalidReference(f"invalid reference {text!r}: {exc.message}") from None
    tag = ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not valid_tag(tag):
            raise InvalidReference(f"invalid reference {text!r}: invalid tag {tag!r}",
                                   hint="a tag is up to 128 of A-Z a-z 0-9 _ . - and cannot start with . or -")
    first, sep, remainder = rest.partition("/")
    if sep and first.lower() != first and not ("." in first or ":" in first):
        raise InvalidReference(f"invalid reference {text!r}: repository name must be lowercase",
                               hint=f"use {text.lower()!r}")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, remainder
        if not _DOMAIN_RE.match(domain):
            raise InvalidReference(f"invalid reference {text!r}: invalid registry {domain!r}")
        domain = domain.lower()
    else:
        domain, path = DEFAULT_DOMAIN, rest
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if path.lower() != path and _PATH_RE.match(path.lower()):
        raise InvalidReference(f"invalid reference {text!r}: repository name must be lowercase",
                               hint=f"use {text.lower()!r}")
    if not _PATH_RE.match(path):
        raise InvalidReference(f"invalid reference format {text!r}: invalid repository name {path!r}")
    if len(f"{domain}/{path}") > MAX_NAME:
        raise InvalidReference(f"invalid reference {text[:60]!r}…: repository name longer than {MAX_NAME}")
    return Reference(domain, path, tag, digest)
