"""``--metadata-file`` content for one exported build result, with buildx's keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polyarch.exporters.assemble import BuildResult

__all__ = ["build_metadata"]


def build_metadata(result: BuildResult, names: Sequence[str]) -> dict[str, object]:
    """``containerimage.digest`` (the index, or what was pushed), ``containerimage.descriptor``,
    ``containerimage.config.digest`` (single platform) and ``image.name`` (the names, comma-separated)."""
    meta: dict[str, object] = {
        "containerimage.digest": str(result.index.digest),
        "containerimage.descriptor": result.index.to_dict(),
    }
    if len(result.images) == 1:
        meta["containerimage.config.digest"] = str(result.images[0].config_descriptor.digest)
    if names:
        meta["image.name"] = ",".join(names)
    return meta
