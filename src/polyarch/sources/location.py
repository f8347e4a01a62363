"""Image locations: ONE parser of location strings into a ``Location`` value and ONE ``open_source``.

Syntax (``parse_location``, no I/O):

- ``local:NAME`` — a name of polyarch's local store (never a fallback).
- ``oci-layout://PATH[:TAG|@DIGEST]`` — an OCI image layout directory.
- ``oci-archive://PATH[:TAG|@DIGEST]`` — a tar of an OCI layout, read in place (never extracted).
- ``docker-archive://PATH[:TAG]`` — ``docker save`` output, read in place; TAG picks one of its RepoTags.
- ``docker-image://REF`` — buildx's spelling of an image reference: means what a bare string means.
- anything else is *bare*: its meaning is the command's ``order`` of kinds, the only fallback rule there is:
  ``VERIFY_ORDER`` (an OCI layout ``PATH[:TAG]`` when ``PATH`` holds one, else a local store name, else a registry
  reference), ``REGISTRY_ONLY`` (imagetools), ``STORE_THEN_REGISTRY`` (build ``FROM``, audit).

``PATH:TAG`` is split when opening, not when parsing (a path may hold colons, a tag may too): the first split
whose ``PATH`` holds an ``oci-layout`` file (whole text first). A ``@`` followed by ``ALG:HEX`` ends a path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

from polyarch.digest import Digest
from polyarch.errors import (
    InvalidDigest,
    InvalidReference,
    NotFound,
    PolyarchError,
    RegistryError,
    UsageError,
)

from .protocol import Location, Opened, Scheme

if TYPE_CHECKING:
    from polyarch.content.images import ImageStore
    from polyarch.registry.client import RegistryClient

__all__ = ["REGISTRY_ONLY", "STORE_THEN_REGISTRY", "VERIFY_ORDER", "Kind", "Location", "Scheme", "explicit_scheme",
           "open_source", "parse_location"]


class Kind(StrEnum):
    """What a bare location may be, tried in a command's order."""

    LAYOUT = "layout"
    LOCAL = "local"
    REGISTRY = "registry"


VERIFY_ORDER = (Kind.LAYOUT, Kind.LOCAL, Kind.REGISTRY)
REGISTRY_ONLY = (Kind.REGISTRY,)
STORE_THEN_REGISTRY = (Kind.LOCAL, Kind.REGISTRY)

_PATH_SCHEMES = (Scheme.LAYOUT, Scheme.OCI_ARCHIVE, Scheme.DOCKER_ARCHIVE)
_DIGEST_TAIL = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[A-Za-z0-9=_-]+")
_SCHEME_PREFIX = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def parse_location(text: str) -> Location:
    """The ``Location`` ``text`` spells. :raises UsageError: the only error, naming what is wrong."""
    if not text.strip():
        raise UsageError("empty image location")
    if "\x00" in text:
        raise UsageError(f"image location {text[:100]!r} holds a NUL character")
    if text.startswith("local:"):
        return Location(Scheme.LOCAL, _nonempty(text[len("local:"):], text, "NAME"))
    m = _SCHEME_PREFIX.match(text)
    if m is None:
        return Location(Scheme.BARE, text)
    try:
        scheme = Scheme(m.group(1))
    except ValueError:
        raise UsageError(f"unknown location scheme {m.group(1)[:40]!r} in {text[:100]!r}",
                         hint="use local:, oci-layout://, oci-archive://, docker-archive:// or docker-image://") \
            from None
    body = text[m.end():]
    if scheme is Scheme.IMAGE:
        return Location(scheme, _nonempty(body, text, "REF"))
    digest = None
    head, at, tail = body.rpartition("@")
    if at and _DIGEST_TAIL.fullmatch(tail):
        try:
            digest = Digest.parse(tail)
        except InvalidDigest as exc:
            raise UsageError(f"{text[:200]!r}: {exc.message}", hint=exc.hint) from None
        body = head
    return Location(scheme, _nonempty(body, text, "PATH"), digest)


def explicit_scheme(text: str) -> Scheme | None:
    """The scheme ``text`` spells out (``oci-layout://…``, ``local:…``), None when it spells none polyarch knows:
    for callers that accept other strings too (``--build-context`` also takes paths and git/http URLs)."""
    if text.startswith("local:"):
        return Scheme.LOCAL
    m = _SCHEME_PREFIX.match(text)
    if m is None:
        return None
    try:
        return Scheme(m.group(1))
    except ValueError:
        return None


def _nonempty(part: str, text: str, what: str) -> str:
    if not part:
        raise UsageError(f"image location {text[:100]!r} has an empty {what}")
    return part


def open_source(location: Location, *, images: ImageStore | Callable[[], ImageStore] | None = None,
                registry: Callable[[], RegistryClient] | None = None,
                order: Sequence[Kind] = REGISTRY_ONLY) -> Opened:
    """Open what ``location`` names; the caller closes it (``Opened`` is a context manager). Collaborators come
    from the caller: ``images`` (the local store, or a function giving it, called only when the store is asked)
    and ``registry`` (called at most once, only when a registry is asked; the caller closes the client it made).

    An explicit scheme opens that kind; a bare location (or ``docker-image://``) tries ``order`` in turn: a
    layout only when the path holds one, the local store only when ``images`` is given, a registry only when
    the text is a reference; the first that has the image answers.

    :raises NotFound: nothing there (the message names every place asked). :raises UsageError: a kind needs a
        collaborator that was not given. :raises RegistryError: a registry could not be asked.
    """
    from . import layout, store
    from . import registry as remote

    scheme = location.scheme
    if scheme is Scheme.LOCAL:
        if images is None:
            raise UsageError("local: references need the local store")
        return store.open_name(_store(images), location.target, str(location))
    if scheme is Scheme.LAYOUT:
        return layout.open_layout(location)
    if scheme in (Scheme.OCI_ARCHIVE, Scheme.DOCKER_ARCHIVE):
        from . import tarball

        return tarball.open_archive(location)
    text = location.target
    local_miss: PolyarchError | None = None
    for kind in order:
        if kind is Kind.LAYOUT:
            found = layout.find_layout(text)
            if found is not None:
                return layout.open_layout(Location(Scheme.LAYOUT, text), found)
        elif kind is Kind.LOCAL and images is not None:
            try:
                return store.open_name(_store(images), text, text)
            except NotFound as exc:
                local_miss = exc
        elif kind is Kind.REGISTRY and registry is not None:
            try:
                return remote.open_reference(registry, text)
            except InvalidReference:
                if len(order) == 1:
                    raise
            except RegistryError as exc:
                if local_miss is None:
                    raise
                domain = getattr(exc, "domain", "") or _domain(text)
                if exc.status == 404:
                    raise NotFound(f"no image named {text!r} in the local store nor at {domain}") from exc
                raise RegistryError(f"no image named {text!r} in the local store, and {domain} cannot be asked: "
                                    f"{exc.message}", hint=exc.hint, status=exc.status, code=exc.code) from exc
    if local_miss is not None:
        where = f", and {text!r} is not an OCI layout directory" if Kind.LAYOUT in order else ""
        raise NotFound(f"no image named {text!r} in the local store{where}", hint=local_miss.hint)
    raise NotFound(f"no image at {text!r}")


def _store(images: ImageStore | Callable[[], ImageStore]) -> ImageStore:
    return images() if callable(images) else images


def _domain(text: str) -> str:
    from polyarch.oci import reference

    return reference.parse(text).defaulted().domain
