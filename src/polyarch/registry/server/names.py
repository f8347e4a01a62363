"""Request paths of the distribution API, parsed strictly, and local store names mapped to repository:tag.

Routing works on the **raw** path: a ``%`` anywhere (``%2F``, ``%2e%2e``) is refused before any decoding, so a
name can never smuggle a separator or a dot segment past validation (zot ``FuzzInitRepo``). Repository names
follow the distribution grammar (lowercase components, ``.``/``_``/``__``/``-+`` separators, at most 255
characters); tags are ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``, in the path or as ``?tag=`` parameters of a manifest
PUT by digest (at most 100); digests go through ``Digest.parse``.

Local names (``org.opencontainers.image.ref.name`` in ``index.json``) are served as follows: when the first
path component looks like a registry host (contains ``.`` or ``:``, or is ``localhost``) it is stripped, the
rest is the repository as written, and the tag defaults to ``latest``. So ``base/busybox:1`` is repository
``base/busybox`` tag ``1``; ``localhost:5000/app:1`` and ``app:1`` are both repository ``app`` tag ``1``;
``docker.io/library/busybox:1`` is ``library/busybox`` tag ``1``. Digest-only names are not served as tags.
When a pushed tag and a local name map to the same repository:tag, the pushed tag wins.

Pushes do **not** add names to ``index.json``: the pushed blobs land in the same store (so ``polyarch pull
localhost:5000/app:1`` transfers nothing new), but the local names stay under the user's control and a CI
registry does not flood ``polyarch images`` or contend for the ``index.json`` lock on every push.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from polyarch.digest import Digest
from polyarch.errors import InvalidDigest
from polyarch.oci.reference import valid_repository, valid_tag

from .errors import ApiError

__all__ = ["MAX_TAG_PARAMS", "Route", "local_repo_tag", "parse_digest", "parse_reference", "parse_route",
           "parse_tag_params"]

MAX_TAG_PARAMS = 100

_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("tags", re.compile(r"^(?P<name>.+)/tags/list$")),
    ("manifest", re.compile(r"^(?P<name>.+)/manifests/(?P<ref>[^/]+)$")),
    ("upload", re.compile(r"^(?P<name>.+)/blobs/uploads/(?P<ref>[^/]+)$")),
    ("uploads", re.compile(r"^(?P<name>.+)/blobs/uploads/?$")),
    ("blob", re.compile(r"^(?P<name>.+)/blobs/(?P<ref>[^/]+)$")),
    ("referrers", re.compile(r"^(?P<name>.+)/referrers/(?P<ref>[^/]+)$")),
)
_UUID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # base | catalog | tags | manifest | upload | uploads | blob | referrers
    name: str = ""
    ref: str = ""


def parse_route(raw_path: bytes) -> Route | None:
    """The API route of a raw request path, or None when it is not under ``/v2/``.

    :raises ApiError: NAME_INVALID for a bad repository name, 404 for an unknown or encoded path.
    """
    try:
        path = raw_path.decode("ascii")
    except UnicodeDecodeError:
        raise ApiError("NAME_INVALID", "request path is not ASCII", status=404) from None
    if path in ("/v2", "/v2/"):
        return Route("base")
    if not path.startswith("/v2/"):
        return None
    if "%" in path:
        raise ApiError("NAME_INVALID", "percent-encoded characters are not allowed in API paths", status=404)
    rest = path[4:]
    if rest == "_catalog":
        return Route("catalog")
    for kind, pattern in _ROUTES:
        m = pattern.match(rest)
        if m:
            name = m.group("name")
            check_repository(name)
            ref = m.groupdict().get("ref") or ""
            if kind == "upload" and not _UUID.match(ref):
                raise ApiError("BLOB_UPLOAD_UNKNOWN", "upload session not found")
            return Route(kind, name, ref)
    raise ApiError("UNSUPPORTED", "unknown API path", status=404)


def check_repository(name: str) -> None:
    if not valid_repository(name):
        raise ApiError("NAME_INVALID", "invalid repository name", detail={"name": name[:300]})


def parse_digest(text: str, code: str = "DIGEST_INVALID") -> Digest:
    """A digest from a path or query; never used to build a path before this check.

    :raises ApiError: ``code`` (400) for anything ``Digest.parse`` refuses.
    """
    try:
        return Digest.parse(text)
    except InvalidDigest as exc:
        raise ApiError(code, exc.message, detail={"digest": text[:200]}) from None


def parse_reference(text: str) -> Digest | str:
    """A manifest reference: a digest when it has ``:``, else a tag.

    :raises ApiError: DIGEST_INVALID or TAG_INVALID.
    """
    if ":" in text:
        return parse_digest(text)
    if not valid_tag(text):
        raise ApiError("TAG_INVALID", "invalid tag", detail={"tag": text[:200]})
    return text


def parse_tag_params(values: Sequence[str]) -> tuple[str, ...]:
    """The ``?tag=`` parameters of a manifest PUT by digest, each a valid tag, in order, without repeats.

    :raises ApiError: TAG_INVALID (400) for a bad tag; 414 for more than :data:`MAX_TAG_PARAMS`.
    """
    if len(values) > MAX_TAG_PARAMS:
        raise ApiError("TAG_INVALID", f"at most {MAX_TAG_PARAMS} tags per request", status=414)
    for tag in values:
        if not valid_tag(tag):
            raise ApiError("TAG_INVALID", "invalid tag", detail={"tag": tag[:200]})
    return tuple(dict.fromkeys(values))


def local_repo_tag(ref_name: str) -> tuple[str, str] | None:
    """The (repository, tag) a local store name is served as, or None when it has no valid tag form."""
    rest = ref_name.partition("@")[0]
    if not rest:
        return None
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        rest = remainder
    repo, tag = rest, "latest"
    slash, colon = rest.rfind("/"), rest.rfind(":")
    if colon > slash:
        repo, tag = rest[:colon], rest[colon + 1:]
    if "@" in ref_name and colon <= slash:
        return None  # digest-only name: nothing to serve as a tag
    if not valid_repository(repo) or not valid_tag(tag):
        return None
    return repo, tag
