"""What a generated workflow builds: ``CiSpec`` (frozen), validated by ``spec_error``.

Tags may hold ``${VERSION}``: every step has ``VERSION`` set to the git tag that started the run (``v1.2.0``), so
``--tag registry.example.com/app:${VERSION}`` publishes each release under its own tag.
"""

from __future__ import annotations

from dataclasses import dataclass

from polyarch.errors import PolyarchError
from polyarch.oci.reference import parse as parse_reference
from polyarch.platform import Platform

#: provider name → the family its workflow file belongs to
PROVIDERS: dict[str, str] = {"github": "actions", "gitea": "actions", "forgejo": "actions",
                             "woodpecker": "woodpecker", "gitlab": "gitlab"}

VERSION_VAR = "${VERSION}"


@dataclass(frozen=True)
class BakeTarget:
    """One target of the project's bake file that the workflow pushes: its name and its tags."""

    name: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class CiSpec:
    """One workflow: ``build`` of ``context`` (``file``) for ``platforms`` with ``tags``, or ``bake`` of
    ``bake_targets`` (``bake_files`` as ``-f``); ``matrix``: one native runner per platform and a merge job."""

    provider: str
    platforms: tuple[Platform, ...] = ()
    tags: tuple[str, ...] = ()
    context: str = "."
    file: str = ""
    bake: bool = False
    bake_files: tuple[str, ...] = ()
    bake_targets: tuple[BakeTarget, ...] = ()
    matrix: bool = False
    pip_spec: str = "polyarch"

    @property
    def all_tags(self) -> tuple[str, ...]:
        if self.bake:
            return tuple(t for target in self.bake_targets for t in target.tags)
        return self.tags

    def registries(self) -> tuple[str, ...]:
        """The registry host of every tag, once each, in order: the workflow logs in to each."""
        seen: dict[str, None] = {}
        for tag in self.all_tags:
            seen.setdefault(repository(tag).split("/", 1)[0], None)
        return tuple(seen)


def repository(tag: str) -> str:
    """``registry.example.com/app`` of ``registry.example.com/app:${VERSION}`` (a tag's ``${VERSION}`` is
    replaced by a sample version to parse it)."""
    return parse_reference(tag.replace(VERSION_VAR, "v0.0.0")).name


def _tag_error(tag: str) -> str | None:
    bare = tag.replace(VERSION_VAR, "")
    if any(c in bare for c in "$`\"'\\ \t\n"):
        return f"tag {tag!r}: only ${{VERSION}} may be substituted (no other $, quotes, spaces)"
    try:
        ref = parse_reference(tag.replace(VERSION_VAR, "v0.0.0"))
    except PolyarchError as exc:
        return f"tag {tag!r}: {exc}"
    if ref.digest is not None:
        return f"tag {tag!r}: a digest cannot be pushed to"
    return None


def spec_error(spec: CiSpec) -> str | None:
    """Why ``spec`` cannot make a workflow (one line), or None."""
    if spec.provider not in PROVIDERS:
        return f"unknown provider {spec.provider!r} (one of {', '.join(PROVIDERS)})"
    if spec.bake:
        if spec.matrix:
            return "--matrix builds one platform per runner with polyarch build: drop --bake"
        if not spec.bake_targets:
            return "the bake file has no target with tags to push"
    else:
        if not spec.tags:
            return "no tag to push: give --tag (e.g. registry.example.com/app:${VERSION}) or a bake file with tags"
        if not spec.platforms:
            return "no platform: give --platform (e.g. linux/amd64,linux/arm64)"
    if spec.matrix and len({repository(t) for t in spec.tags}) > 1:
        return "--matrix pushes by digest to one repository: give tags of one repository"
    for tag in spec.all_tags:
        err = _tag_error(tag)
        if err:
            return err
    for text in (spec.context, spec.file, spec.pip_spec, *spec.bake_files):
        if any(c in text for c in "$`\"'\\\n"):
            return f"{text!r}: no $, quotes or backslashes in paths and the pip requirement"
    return None
