"""``type=image`` and ``--load``: the build result named in the local image store.

Every platform and the index are kept under each name (unlike buildx's ``--load``, which keeps one platform);
with ``name-canonical=true`` each name is followed by its ``name@digest``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from .exporter import ExportContext, ExportReport
from .spec import OutputSpec, canonical_name, output_names

if TYPE_CHECKING:
    from polyarch.exporters.assemble import BuildResult

__all__ = ["StoreExporter", "with_canonical"]


def with_canonical(names: Sequence[str], digest: str, spec: OutputSpec) -> list[str]:
    """The names, each followed by its canonical ``name@digest`` with ``name-canonical=true``."""
    if not spec.flag("name-canonical", False):
        return list(names)
    out: list[str] = []
    for name in names:
        out += [name, canonical_name(name, digest)]
    return list(dict.fromkeys(out))


class StoreExporter:
    """Names the result's index in the local store."""

    type: ClassVar[str] = "image"

    def export(self, result: BuildResult, spec: OutputSpec, ctx: ExportContext) -> ExportReport:
        names = with_canonical(output_names(spec, ctx.tags), str(result.index.digest), spec)
        for name in names:
            ctx.images.set_name(name, result.index)
        return ExportReport(names=tuple(names))
