"""``-o/--output`` values parsed once into a frozen ``OutputSpec``, and the names an output gives an image.

Forms (buildx's): ``type=oci,dest=F[,tar=false][,name=N]``, ``type=docker,dest=F[,name=N]`` (one platform),
``type=local,dest=DIR[,platform-split=false]``, ``type=tar,dest=F``, ``type=registry,name=REF[,push-by-digest=true]
[,name-canonical=true][,compression=gzip|zstd|uncompressed][,compression-level=N][,force-compression=true]
[,oci-mediatypes=false][,rewrite-timestamp=true][,registry.insecure=true]``, ``type=image`` (= registry when
``push=true``, else the local store), ``type=cacheonly``, a bare path (= ``type=local,dest=PATH``) and ``-`` (a
tar on stdout). ``--load`` is ``OutputSpec("image")`` and ``--push`` is ``OutputSpec("registry")``, both with
the ``-t`` names. Parsing reads nothing but its argument; ``require_epoch`` checks ``rewrite-timestamp=true``
against the ``SOURCE_DATE_EPOCH`` the caller read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from polyarch.errors import UsageError

__all__ = ["OUTPUT_TYPES", "OutputSpec", "canonical_name", "output_names", "parse_output", "require_epoch"]

OUTPUT_TYPES = ("oci", "docker", "local", "tar", "registry", "image", "cacheonly")
_COMPRESSIONS = ("gzip", "zstd", "uncompressed", "none")


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """One output: its type, ``dest`` (a path, ``-`` for stdout) and the other ``key=value`` options."""

    type: str
    dest: str = ""
    attrs: Mapping[str, str] = field(default_factory=dict)

    def flag(self, key: str, default: bool) -> bool:
        """The boolean option ``key`` (``true``/``1``/``yes``/empty, ``false``/``0``/``no``).

        :raises UsageError: any other value.
        """
        value = self.attrs.get(key)
        if value is None:
            return default
        if value.lower() in ("true", "1", "yes", ""):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
        raise UsageError(f"output option {key}={value!r} is not a boolean")


def parse_output(text: str) -> OutputSpec:
    """One ``-o`` value → OutputSpec.

    :raises UsageError: unknown type, missing ``dest``, malformed ``key=value``, bad compression or boolean.
    """
    text = text.strip()
    if not text:
        raise UsageError("empty --output")
    if "=" not in text:
        return OutputSpec("tar", "-") if text == "-" else OutputSpec("local", text)
    attrs: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            raise UsageError(f"invalid --output {text!r}: expected key=value pairs, got {part!r}")
        attrs[key] = value.strip()
    kind = attrs.pop("type", "")
    if not kind:
        raise UsageError(f"invalid --output {text!r}: type= is required", hint="types: " + ", ".join(OUTPUT_TYPES))
    if kind not in OUTPUT_TYPES:
        raise UsageError(f"unknown output type {kind!r}", hint="types: " + ", ".join(OUTPUT_TYPES))
    dest = attrs.pop("dest", "")
    if kind in ("oci", "docker", "local", "tar") and not dest:
        raise UsageError(f"output type={kind} needs dest=PATH")
    if kind == "image" and attrs.get("push", "false").lower() in ("true", "1"):
        kind = "registry"
    spec = OutputSpec(kind, dest, attrs)
    if kind in ("registry", "image", "oci", "docker"):
        compression = attrs.get("compression", "gzip")
        if compression not in _COMPRESSIONS:
            raise UsageError(f"unknown compression {compression!r}", hint="use gzip, zstd or uncompressed")
        for key, default in (("push-by-digest", False), ("oci-mediatypes", True), ("name-canonical", False),
                             ("rewrite-timestamp", False)):
            spec.flag(key, default)
    return spec


def require_epoch(specs: Iterable[OutputSpec], epoch: int | None) -> None:
    """Refuse ``rewrite-timestamp=true`` without ``SOURCE_DATE_EPOCH`` (called before any work).

    :raises UsageError: an output asks for it and ``epoch`` is None.
    """
    if epoch is None and any(s.flag("rewrite-timestamp", False) for s in specs
                             if s.type in ("registry", "image", "oci", "docker")):
        raise UsageError("rewrite-timestamp=true needs SOURCE_DATE_EPOCH",
                         hint="e.g. SOURCE_DATE_EPOCH=$(git log -1 --pretty=%ct) polyarch build …")


def output_names(spec: OutputSpec, tags: Sequence[str]) -> list[str]:
    """The output's ``name=`` values (comma-separated), else the ``-t`` names."""
    return [n for n in spec.attrs.get("name", "").split(",") if n] or list(tags)


def canonical_name(name: str, digest: str) -> str:
    """``repo:tag`` → ``repo@digest`` (buildx's ``name-canonical``)."""
    from polyarch.oci import reference

    ref = reference.parse(name)
    return f"{ref.domain}/{ref.path}@{digest}" if ref.domain else f"{ref.path}@{digest}"
