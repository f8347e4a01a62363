"""``type=registry`` and ``--push``: the build result pushed to every name's repository.

Each name gets the index (or the single manifest) under its tag; ``push-by-digest=true`` pushes the same tree
with no tag at all, addressable only by the digest the report gives (buildx's per-runner push that
``imagetools create`` later merges); ``name-canonical=true`` also reports ``repo@digest`` for each name. The
client comes from the context's factory, opened once for all names and closed after.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from polyarch.errors import UsageError

from .exporter import ExportContext, ExportReport
from .spec import OutputSpec, canonical_name, output_names

if TYPE_CHECKING:
    from polyarch.exporters.assemble import BuildResult

__all__ = ["RegistryExporter"]


class RegistryExporter:
    """Pushes with ``polyarch.sources.transfer.push_image`` through a client made by ``ctx.client_factory``."""

    type: ClassVar[str] = "registry"

    def export(self, result: BuildResult, spec: OutputSpec, ctx: ExportContext) -> ExportReport:
        from polyarch.oci import reference
        from polyarch.sources.referrers import push_referrers
        from polyarch.sources.transfer import push_image

        names = output_names(spec, ctx.tags)
        if not names:
            raise UsageError("nothing to push to: give -t NAME or -o type=registry,name=NAME")
        if ctx.client_factory is None:
            raise UsageError("type=registry needs a registry client, and none was given to the exporter")
        by_digest = spec.flag("push-by-digest", False)
        canonical = spec.flag("name-canonical", False)
        if spec.flag("registry.insecure", False):
            client = ctx.client_factory(insecure=(reference.parse(names[0]).domain,))
        else:
            client = ctx.client_factory()
        written: list[str] = []
        pushed: dict[str, str] = {}
        with client:
            for name in names:
                ref = reference.parse(name)
                dest = reference.Reference(ref.domain, ref.path) if by_digest else ref.defaulted()
                pushed[name] = str(push_image(ctx.images, result.index, dest, client=client).descriptor.digest)
                # attestations kept as referrers of the platform manifests go after them (none: nothing sent)
                push_referrers(ctx.images, [i.descriptor.digest for i in result.images], dest, client=client)
                written.append(name)
                if canonical:  # the manifest is addressable by digest once pushed
                    written.append(canonical_name(name, pushed[name]))
        return ExportReport(names=tuple(written), pushed=pushed, result=result)
