"""One build's attestations: per platform manifest, an SBOM and/or a provenance in-toto statement.

API::

    Statement(subject, predicate_type, raw)              # raw: the statement's JSON bytes
    make_statements(images, subjects, opts, facts, plans, *, name, created, cache, indexes) -> [Statement]

``subjects`` are the platform manifest descriptors of the build result (with their platforms), ``plans`` the
build plan's platform plans in the same order (for provenance materials and steps). The SBOM reads the image's
layers from the store (``layers.image_packages``), or, with ``indexes`` (the store's layer path indexes, given
by the CLI), what a pull or an earlier SBOM captured of each layer; base images are resolved to manifest digests
in the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from polyarch import __version__
from polyarch.content.images import ImageStore
from polyarch.content.pathindex import LayerIndexes
from polyarch.digest import Digest
from polyarch.errors import PolyarchError
from polyarch.frontend.convert.plan import PlatformPlan
from polyarch.oci.config import parse_config
from polyarch.oci.spec import Descriptor, Manifest
from polyarch.platform import Platform
from polyarch.sources.store import StoreSource

from .cyclonedx import cyclonedx_document
from .layers import LayerCache, image_packages, prescan
from .options import AttestOptions
from .provenance import BuildFacts, platform_materials, predicate_v02, predicate_v1
from .sbom import spdx_document
from .statement import (
    PREDICATE_CYCLONEDX,
    PREDICATE_SLSA_V02,
    PREDICATE_SLSA_V1,
    PREDICATE_SPDX,
    Subject,
    encode,
    statement,
)

__all__ = ["Statement", "make_statements", "subject_name"]

TOOL = f"polyarch-{__version__}"


@dataclass(frozen=True, slots=True)
class Statement:
    subject: Descriptor  # the platform manifest it is about
    predicate_type: str
    raw: bytes


def subject_name(name: str, platform: Platform | None) -> str:
    """BuildKit's subject name: ``pkg:docker/NAME@TAG?platform=…`` (``_`` without a name)."""
    if not name:
        return "_"
    repo, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    out = f"pkg:docker/{repo}" + (f"@{tag}" if tag else "")
    return out + (f"?platform={str(platform).replace('/', '%2F')}" if platform is not None else "")


def _resolver(images: ImageStore):  # type: ignore[no-untyped-def]
    store = StoreSource(images)

    def resolve(ref: str, platform: Platform) -> Digest | None:
        try:
            return store.image(ref, platform).descriptor.digest
        except PolyarchError:
            return None

    return resolve


def make_statements(images: ImageStore, subjects: Sequence[Descriptor], opts: AttestOptions, facts: BuildFacts,
                    plans: Sequence[PlatformPlan], *, name: str = "", created: str,
                    cache: LayerCache | None = None, indexes: LayerIndexes | None = None) -> list[Statement]:
    """The statements ``opts`` asks for, per subject, in subject order (SBOM first)."""
    out: list[Statement] = []
    source = StoreSource(images)
    resolve = _resolver(images)
    facts = replace(facts, mode=opts.provenance_mode)
    cache = cache if cache is not None else LayerCache()
    if opts.sbom:  # every platform's layers scanned at once, each once
        layers: list[tuple[str, Descriptor]] = []
        for subject in subjects:
            doc = images.read_document(subject).document
            assert isinstance(doc, Manifest)
            diff_ids = parse_config(images.store.read(doc.config.digest)).diff_ids
            layers += [(str(diff_ids[i]) if i < len(diff_ids) else str(x.digest), x) for i, x in enumerate(doc.layers)]
        prescan(source, layers, cache, indexes=indexes)
    for i, subject in enumerate(subjects):
        platform = subject.platform
        subj = [Subject(subject_name(name, platform), subject.digest)]
        if opts.sbom:
            doc = images.read_document(subject).document
            assert isinstance(doc, Manifest)
            config = parse_config(images.store.read(doc.config.digest))
            pkgs = image_packages(source, doc, config.diff_ids, cache, indexes)
            make, stype = ((cyclonedx_document, PREDICATE_CYCLONEDX) if opts.sbom_format == "cyclonedx"
                           else (spdx_document, PREDICATE_SPDX))
            sbom = make(pkgs, image_name=name, manifest_digest=subject.digest,
                        platform=str(platform or config.platform), created=created, tool=TOOL)
            out.append(Statement(subject, stype, encode(statement(stype, sbom, subj))))
        if opts.provenance and i < len(plans):
            materials, steps = platform_materials(plans[i], resolve)
            plat = platform or plans[i].platform
            if opts.provenance_version == "v0.2":
                pred, ptype = predicate_v02(facts, plat, materials, steps), PREDICATE_SLSA_V02
            else:
                pred, ptype = predicate_v1(facts, plat, materials, steps), PREDICATE_SLSA_V1
            out.append(Statement(subject, ptype, encode(statement(ptype, pred, subj))))
    return out
