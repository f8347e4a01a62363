"""The one entry ``polyarch build`` and ``polyarch bake`` call: a build result written to every output, in order.

Each ``OutputSpec`` goes to the one exporter of its type (``EXPORTERS``). Before an image, registry, oci or
docker output the result is prepared for it: ``rewrite-timestamp=true`` clamps the build's layers to
``SOURCE_DATE_EPOCH`` (``timestamps``), then compression and media type options convert it (``recompress``);
local and tar outputs always get the result as built. The report collects every exporter's part; its ``result``
is the one an output prepared or pushed last (what ``--metadata-file`` describes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from polyarch.content.images import ImageStore
from polyarch.errors import UsageError

from .archive import DockerExporter, OciExporter
from .exporter import ClientFactory, ExportContext, Exporter, ExportReport
from .local import LocalExporter, TarExporter
from .recompress import recompress, wants_conversion
from .registry import RegistryExporter
from .spec import OUTPUT_TYPES, OutputSpec, require_epoch
from .store import StoreExporter

if TYPE_CHECKING:
    from polyarch.exporters.assemble import BuildResult

__all__ = ["EXPORTERS", "export", "exporter_for"]

_IMAGE_TYPES = ("image", "oci", "docker", "registry")  # the outputs that write image manifests


class CacheOnlyExporter:
    """``type=cacheonly``: nothing but the build cache (written by the build itself)."""

    type: ClassVar[str] = "cacheonly"

    def export(self, result: BuildResult, spec: OutputSpec, ctx: ExportContext) -> ExportReport:
        return ExportReport()


def _by_type(exporters: Sequence[Exporter]) -> Mapping[str, Exporter]:
    table: dict[str, Exporter] = {}
    for exporter in exporters:
        if exporter.type in table:
            raise AssertionError(f"two exporters for type={exporter.type}")
        table[exporter.type] = exporter
    return table


EXPORTERS: Mapping[str, Exporter] = _by_type([
    StoreExporter(), OciExporter(), DockerExporter(), LocalExporter(), TarExporter(), RegistryExporter(),
    CacheOnlyExporter()])


def exporter_for(spec: OutputSpec) -> Exporter:
    """The exporter of ``spec.type``.

    :raises UsageError: no exporter has that type.
    """
    try:
        return EXPORTERS[spec.type]
    except KeyError:
        raise UsageError(f"unknown output type {spec.type!r}", hint="types: " + ", ".join(OUTPUT_TYPES)) from None


def _prepare(result: BuildResult, spec: OutputSpec, ctx: ExportContext) -> tuple[BuildResult, bool]:
    """The result as ``spec`` writes it, and whether the output changed it (or may have: pushes always count)."""
    if spec.type not in _IMAGE_TYPES:
        return result, False
    changed = spec.type == "registry"
    if spec.flag("rewrite-timestamp", False):
        from .timestamps import rewrite_timestamps

        require_epoch([spec], ctx.epoch)
        assert ctx.epoch is not None
        result, changed = rewrite_timestamps(ctx.images, result, ctx.epoch), True
    if spec.type == "registry" or wants_conversion(spec):
        result, changed = recompress(ctx.images, result, spec), True
    return result, changed


def export(images: ImageStore, result: BuildResult, outputs: Sequence[OutputSpec], *, tags: Sequence[str],
           client_factory: ClientFactory | None = None, epoch: int | None = None,
           attest: Callable[[BuildResult], BuildResult] | None = None) -> ExportReport:
    """Write ``result`` to every output in order; returns what was named and pushed.

    ``client_factory`` makes the registry client of ``type=registry`` outputs; ``epoch`` is ``SOURCE_DATE_EPOCH``
    (for ``rewrite-timestamp=true``). Both come from the caller: exporters read no environment. ``attest``
    (the CLI's, when the build made attestations) makes them again for an output whose preparation changed the
    platform manifests (compression, media types, rewritten timestamps): their subjects are the new digests.

    :raises UsageError: an unknown output type, or an output that cannot hold this result.
    """
    ctx = ExportContext(images, tuple(tags), epoch, client_factory, attest)
    report = ExportReport(result=result)
    for spec in outputs:
        exporter = exporter_for(spec)
        prepared, changed = _prepare(result, spec, ctx)
        if ctx.attest is not None and [i.descriptor.digest for i in prepared.images] != \
                [i.descriptor.digest for i in result.images]:
            prepared = ctx.attest(prepared)
        part = exporter.export(prepared, spec, ctx)
        report = report.then(part if not changed else ExportReport(part.names, part.pushed, prepared))
    return report
