"""Compose files → bake targets (one per service with ``build:``), and a ``default`` group of them all.

Read: ``build`` (a context string, or ``context``, ``dockerfile``, ``dockerfile_inline``, ``args`` (map or
``KEY=VALUE`` list), ``target``, ``labels``, ``tags``, ``cache_from``, ``cache_to``, ``platforms``, ``secrets``,
``ssh``, ``network``, ``pull``, ``no_cache``, ``additional_contexts``, ``shm_size``), ``image`` (the first tag),
top-level ``secrets`` (a build secret keeps its ``file`` or ``environment`` source: ``id=NAME,src=FILE`` or
``id=NAME,env=VAR``, as buildx passes it on),
and ``build.x-bake`` (bake attribute names: ``platforms``, ``tags``, ``output``, ``cache-from``…, added last).
Values are interpolated from the environment as compose does (``frontend/interpolation.py``: ``$VAR``,
``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, ``$$``).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

from polyarch.errors import ParseError, SourceSpan
from polyarch.frontend.interpolation import interpolate

from .hcl import Attribute, Block, Body, Lit, Pos, TupleExpr

__all__ = ["parse_compose"]

_KEYS = {"context": "context", "dockerfile": "dockerfile", "dockerfile_inline": "dockerfile-inline",
         "args": "args", "target": "target", "labels": "labels", "tags": "tags", "cache_from": "cache-from",
         "cache_to": "cache-to", "platforms": "platforms", "secrets": "secret", "ssh": "ssh",
         "network": "network", "pull": "pull", "no_cache": "no-cache", "additional_contexts": "contexts",
         "shm_size": "shm-size"}


def _interp(value: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):
        return interpolate(value, env, where)
    if isinstance(value, list):
        return [_interp(v, env, where) for v in value]
    if isinstance(value, dict):
        return {k: _interp(v, env, where) for k, v in value.items()}
    return value


def _kv(value: Any, env: Mapping[str, str]) -> Any:
    """A map, or a ``KEY=VALUE`` list where a bare ``KEY`` takes its value from the environment (or is unset)."""
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for item in value:
            k, eq, v = str(item).partition("=")
            out[k] = v if eq else env.get(k)
        return out
    if isinstance(value, dict):
        return {k: (env.get(k) if v is None else v) for k, v in value.items()}
    return value


def _lit(value: Any, pos: Pos) -> Any:
    from .hcl import ObjectExpr

    if isinstance(value, list):
        return TupleExpr(tuple(_lit(v, pos) for v in value), pos)
    if isinstance(value, dict):
        return ObjectExpr(tuple((Lit(str(k), pos), _lit(v, pos)) for k, v in value.items()), pos)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Lit(str(value), pos)
    return Lit(value, pos)


def parse_compose(text: str, filename: str, env: Mapping[str, str]) -> Body:
    import yaml  # type: ignore[import-untyped,unused-ignore]

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise ParseError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}",
                         SourceSpan(filename, line, col)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("services", {}), dict):
        raise ParseError("a compose file must be a mapping with 'services'", SourceSpan(filename, 1, 1))
    blocks: list[Block] = []
    names: list[str] = []
    for name, service in (doc.get("services") or {}).items():
        if not isinstance(service, dict) or "build" not in service:
            continue
        pos = Pos(filename, _line(text, str(name)), 3)
        build = service["build"]
        if isinstance(build, str):
            build = {"context": build}
        if not isinstance(build, dict):
            raise ParseError(f"service {name!r}: build must be a path or a mapping", SourceSpan(filename, pos.line, 1))
        try:
            build = _interp(build, env, f"service {name!r}")
            image = _interp(service.get("image"), env, f"service {name!r}")
        except ParseError as exc:  # ${VAR:?error}: located at the service
            raise ParseError(exc.message, SourceSpan(filename, pos.line, 1)) from None
        attrs: dict[str, Any] = {}
        for key, value in build.items():
            if key == "secrets":
                value = _secrets(value, doc.get("secrets"), filename, str(name), pos)
            if key in _KEYS:
                attrs[_KEYS[key]] = _kv(value, env) if key in ("args", "labels", "additional_contexts") else value
        if image:
            attrs["tags"] = [image, *attrs.get("tags", [])]
        for key, value in (build.get("x-bake") or {}).items():
            key = {"platform": "platforms", "outputs": "output", "secrets": "secret"}.get(key, key)
            if key == "tags" and isinstance(value, list):  # added to the image name and build.tags
                value = [*attrs.get("tags", []), *[v for v in value if v not in attrs.get("tags", [])]]
            attrs[key] = value
        blocks.append(Block("target", (str(name),), Body(tuple(Attribute(k, _lit(v, pos), pos)
                                                               for k, v in attrs.items()), ()), pos))
        names.append(str(name))
    group = Block("group", ("default",), Body((Attribute("targets", _lit(names, Pos(filename, 1, 1)),
                                                          Pos(filename, 1, 1)),), ()), Pos(filename, 1, 1))
    return Body((), (*blocks, group) if names else tuple(blocks))


def _secrets(uses: Any, defined: Any, filename: str, service: str, pos: Pos) -> list[str]:
    """A service's build secrets (``- NAME`` or ``- source: NAME``) with the source the top-level ``secrets``
    section gives each: a file (relative to the compose file) or an environment variable."""
    where = SourceSpan(filename, pos.line, 1)
    if not isinstance(uses, list):
        raise ParseError(f"service {service!r}: build.secrets must be a list", where)
    defined = defined if isinstance(defined, dict) else {}
    out: list[str] = []
    for use in uses:
        source = use.get("source") if isinstance(use, dict) else use
        if not isinstance(source, str) or not source:
            raise ParseError(f"service {service!r}: a build secret needs a name (source)", where)
        spec = defined.get(source)
        if not isinstance(spec, dict):
            raise ParseError(f"service {service!r} refers to undefined build secret {source}", where)
        attrs = [f"id={source}"]
        if isinstance(spec.get("file"), str) and spec["file"]:
            attrs.append("src=" + posixpath.join(posixpath.dirname(filename), spec["file"]))
        if isinstance(spec.get("environment"), str) and spec["environment"]:
            attrs.append("env=" + spec["environment"])
        out.append(",".join(attrs))
    return out


def _line(text: str, name: str) -> int:
    """The line of the service's key (the first indented ``NAME:``), 1 when not found."""
    m = re.search(rf"^[ \t]+{re.escape(name)}[ \t]*:", text, re.MULTILINE)
    return text.count("\n", 0, m.start()) + 1 if m else 1
