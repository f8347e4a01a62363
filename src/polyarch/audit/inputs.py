"""The images ``polyarch audit`` looks at: compose files and image lists → ``ImageUse``s.

A **compose file** (a YAML mapping with ``services``): each service's ``image``, interpolated as compose does
(``frontend/interpolation.py``) from the environment the caller gives over the ``.env`` file beside the
compose file (read by python-dotenv, values taken as written: no interpolation inside ``.env``);
``platform:`` pins the service's platform; services with only ``build:`` are skipped and listed.
An **image list**: one reference per line, ``#`` starts a comment.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polyarch import platform as plat
from polyarch.audit.model import ImageUse
from polyarch.audit.textfile import parse_yaml, read_text
from polyarch.errors import InvalidPlatform, ParseError, PolyarchError, SourceSpan
from polyarch.frontend.interpolation import interpolate
from polyarch.platform import Platform

__all__ = ["load_images", "merge_uses", "parse_images", "read_dotenv"]


def read_dotenv(folder: Path) -> dict[str, str]:
    """The variables of ``folder/.env`` (none when there is no such file or it cannot be read); names
    without ``=`` are left out."""
    from dotenv import dotenv_values

    try:
        text = read_text(folder / ".env", ".env file")
    except PolyarchError:
        return {}
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    return {k: v for k, v in values.items() if v is not None}


def load_images(path: Path, env: Mapping[str, str]) -> tuple[list[ImageUse], list[str]]:
    """Image uses of a compose file or an image list, and the services skipped (with why). A compose file's
    variables come from ``env``, then from the ``.env`` beside it."""
    text = read_text(path, "file")
    return parse_images(text, path, {**read_dotenv(path.parent), **env})


def parse_images(text: str, path: Path, env: Mapping[str, str]) -> tuple[list[ImageUse], list[str]]:
    """``text`` (the content of ``path``) as a compose file (variables from ``env``) or an image list."""
    doc: Any = None
    try:
        doc = parse_yaml(text, path)
    except ParseError:
        doc = None
    if isinstance(doc, dict) and "services" in doc:
        return _compose(doc, path, env)
    uses = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if len(line.split()) != 1:
            raise ParseError("expected one image reference per line", SourceSpan(str(path), n, 1, len(raw), raw))
        _check_ref(line, f"{path}:{n}")
        uses.append(ImageUse(line, (f"{path.name}:{n}",)))
    return uses, []


def _check_ref(ref: str, where: str) -> None:
    from polyarch.errors import InvalidReference
    from polyarch.oci import reference

    try:
        reference.parse(ref)
    except InvalidReference as exc:
        raise ParseError(f"{where}: {exc}") from None


def _compose(doc: dict[str, Any], path: Path, env: Mapping[str, str]) -> tuple[list[ImageUse], list[str]]:
    services = doc.get("services")
    if not isinstance(services, dict):
        raise ParseError(f"{path}: services must be a mapping")
    uses: list[ImageUse] = []
    skipped: list[str] = []
    for name, svc in services.items():
        where = f"{path}: service {name}"
        if not isinstance(svc, dict):
            raise ParseError(f"{where} must be a mapping")
        image = svc.get("image")
        if image is None:
            skipped.append(f"{path.name}:{name}: no image (built by compose from {'build:' if 'build' in svc else 'nothing'})")
            continue
        if not isinstance(image, str):
            raise ParseError(f"{where}: image must be a string")
        ref = interpolate(image, env, where).strip()
        _check_ref(ref, where)
        pinned = None
        if svc.get("platform"):
            pinned = _pinned(interpolate(str(svc["platform"]), env, where), where)
        uses.append(ImageUse(ref, (f"{path.name}:{name}",), pinned))
    return uses, skipped


def _pinned(text: str, where: str) -> Platform:
    try:
        return plat.parse(text)
    except InvalidPlatform as exc:
        raise ParseError(f"{where}: platform: {exc}", hint=exc.hint) from None


def merge_uses(uses: list[ImageUse]) -> list[ImageUse]:
    """One row per (image, pinned platform), listing every service that uses it, first-seen order."""
    merged: dict[tuple[str, Platform | None], ImageUse] = {}
    for u in uses:
        key = (u.ref, u.pinned)
        if key in merged:
            merged[key] = ImageUse(u.ref, merged[key].services + u.services, u.pinned)
        else:
            merged[key] = u
    return list(merged.values())
