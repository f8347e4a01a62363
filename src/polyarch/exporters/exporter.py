"""The exporters' seam: what an exporter receives (``ExportContext``), what it returns (``ExportReport``) and the
one method every exporter has (``Exporter.export``).

An exporter never constructs its collaborators: the image store, ``SOURCE_DATE_EPOCH`` and the registry client
factory come from the caller (the CLI) in the context. A ``ClientFactory`` is called with no argument; only an
output with ``registry.insecure=true`` calls it with ``insecure=(HOST,)``, the extra hosts to reach without TLS
verification.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from polyarch.content.images import ImageStore
    from polyarch.exporters.assemble import BuildResult
    from polyarch.registry.client import RegistryClient

    from .spec import OutputSpec

__all__ = ["ClientFactory", "ExportContext", "ExportReport", "Exporter"]


class ClientFactory(Protocol):
    """Makes a registry client (the caller's options and environment already applied)."""

    def __call__(self, *, insecure: tuple[str, ...] = ...) -> RegistryClient: ...


@dataclass(frozen=True, slots=True)
class ExportContext:
    """What every exporter of one build result works with, made by the caller."""

    images: ImageStore
    tags: tuple[str, ...] = ()  # the -t names: the default names of image, registry, oci and docker outputs
    epoch: int | None = None  # SOURCE_DATE_EPOCH, for rewrite-timestamp=true
    client_factory: ClientFactory | None = None  # for type=registry; None: pushing is an error
    # attestations made again for a result an output changed (other manifest digests): made by the CLI
    attest: Callable[[BuildResult], BuildResult] | None = None


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What outputs did: ``names`` written (store names, pushed references), ``pushed`` name → root digest, and
    ``result`` the build result as exported last (after a conversion or a push; None: unchanged)."""

    names: tuple[str, ...] = ()
    pushed: Mapping[str, str] = field(default_factory=dict)
    result: BuildResult | None = None

    def then(self, later: ExportReport) -> ExportReport:
        """This report followed by ``later``'s (its result wins when it has one)."""
        return ExportReport((*self.names, *later.names), {**self.pushed, **later.pushed},
                            later.result if later.result is not None else self.result)


@runtime_checkable
class Exporter(Protocol):
    """Writes a build result to one kind of output (``type``): returns its part of the report."""

    type: ClassVar[str]

    def export(self, result: BuildResult, spec: OutputSpec, ctx: ExportContext) -> ExportReport: ...
