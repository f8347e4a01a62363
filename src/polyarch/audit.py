"""``polyarch audit``: for each image a fleet uses and each host of the fleet, what the host would run.

A cell is one of

* ``native P``: the image has an entry the host runs without emulation; P is the entry a pull would pick
  (containerd's order: an arm64 host prefers arm64, then arm/v8…v5; an amd64 host amd64 then 386);
* ``emulated P``: nothing native, but a Linux entry exists; P is what it would run under QEMU user emulation
  (preferring amd64, then arm64, arm/v7, arm/v6, 386, then index order). For a multi-platform index Docker
  pulls it only when told the platform (``--platform P`` or compose's ``platform:``); a single-platform image
  it pulls and runs with a warning;
* ``missing``: the image does not exist, or has no Linux entry at all;
* ``unknown``: the host's platform could not be learnt (ssh failed).

A compose service that pins ``platform:`` gets that platform: native when the host runs it, else emulated.
Images are resolved through an ``ImageResolver`` (local store, registry, or both in turn). Pure except for
the resolver, which callers inject.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from polyarch import platform as plat
from polyarch.platform import Platform

__all__ = [
    "EMULATION_ORDER",
    "AuditReport",
    "AuditRow",
    "ChainResolver",
    "Host",
    "ImageResolver",
    "ImageUse",
    "RegistryResolver",
    "StoreResolver",
    "Verdict",
    "audit",
    "decide",
    "render_json",
    "render_table",
]

EMULATION_ORDER = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/386")


class ImageResolver(Protocol):
    def platforms(self, ref: str) -> list[Platform] | None:
        """The platforms of the image ``ref`` names (attestation entries left out), or None when it does not
        exist."""
        ...


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    platform: Platform | None  # None when it could not be learnt
    source: str = "file"  # "file" or the ssh target it was asked over
    error: str = ""


@dataclass(frozen=True, slots=True)
class ImageUse:
    ref: str
    services: tuple[str, ...] = ()  # "compose.yaml:web"; empty for image lists
    pinned: Platform | None = None  # compose ``platform:``


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # native | emulated | missing | unknown
    platform: Platform | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "native"

    def text(self) -> str:
        return f"{self.status} {self.platform}" if self.platform is not None else self.status

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.platform is not None:
            out["platform"] = str(self.platform)
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class AuditRow:
    use: ImageUse
    platforms: tuple[Platform, ...] | None
    cells: tuple[Verdict, ...]


@dataclass(frozen=True, slots=True)
class AuditReport:
    hosts: tuple[Host, ...]
    rows: tuple[AuditRow, ...]
    skipped: tuple[str, ...] = field(default=())  # services with no image to audit, and why
    errors: tuple[str, ...] = field(default=())  # images that could not be resolved, and why

    @property
    def ok(self) -> bool:
        return all(c.ok for row in self.rows for c in row.cells) and all(h.platform for h in self.hosts)


def _key(p: Platform) -> tuple[str, str, str]:
    n = p.normalized()
    return n.os, n.architecture, n.variant


def decide(available: Sequence[Platform] | None, host: Platform | None, pinned: Platform | None = None) -> Verdict:
    """What ``host`` would run of an image offering ``available`` (None: the image does not exist)."""
    if host is None:
        return Verdict("unknown")
    if available is None:
        return Verdict("missing", note="image not found")
    linux = [p.normalized() for p in available if p.os == host.os and p.architecture != "unknown"]
    if pinned is not None:
        match = next((p for p in linux if _key(p) == _key(pinned)), None)
        if match is None:
            return Verdict("missing", note=f"pinned to {pinned.normalized()}, which the image does not have")
        if plat.rank(match, host) is not None:
            return Verdict("native", match, note="pinned by the service")
        return Verdict("emulated", match, note="pinned by the service")
    best = plat.best_match(linux, host)
    if best is not None:
        return Verdict("native", best, note=_compat_note(best, host))
    if not linux:
        have = ", ".join(str(p) for p in available) or "no platform"
        return Verdict("missing", note=f"no {host.os} entry (has {have})")
    order = {k: i for i, k in enumerate(EMULATION_ORDER)}
    chosen = min(enumerate(linux), key=lambda ip: (order.get(str(ip[1]), len(order)), ip[0]))[1]
    return Verdict("emulated", chosen, note=f"no entry runs natively on {host.normalized()}")


def _compat_note(chosen: Platform, host: Platform) -> str:
    h = host.normalized()
    if chosen.architecture == "arm" and h.architecture == "arm64":
        return "32-bit ARM on a 64-bit host: needs a CPU with AArch32 (Pi 3/4/5 yes; some ARM servers no)"
    if chosen.architecture == "386" and h.architecture == "amd64":
        return "32-bit x86 userland on a 64-bit host"
    return ""


def audit(uses: Sequence[ImageUse], hosts: Sequence[Host], resolver: ImageResolver,
          skipped: Sequence[str] = ()) -> AuditReport:
    """The table. An image the resolver fails on (registry unreachable) is missing everywhere, with the error
    as the note, and listed in ``errors``."""
    from polyarch.errors import PolyarchError

    rows = []
    cache: dict[str, list[Platform] | None] = {}
    errors: dict[str, str] = {}
    for use in uses:
        if use.ref not in cache:
            try:
                cache[use.ref] = resolver.platforms(use.ref)
            except PolyarchError as exc:
                cache[use.ref] = None
                errors[use.ref] = exc.message
        available = cache[use.ref]
        cells = tuple(decide(available, h.platform, use.pinned) for h in hosts)
        if use.ref in errors:
            cells = tuple(Verdict("missing", note=f"cannot resolve: {errors[use.ref]}") if c.status == "missing"
                          else c for c in cells)
        rows.append(AuditRow(use, tuple(available) if available is not None else None, cells))
    return AuditReport(tuple(hosts), tuple(rows), tuple(skipped), tuple(f"{r}: {e}" for r, e in errors.items()))


# --- resolvers ----------------------------------------------------------------------------------------------

class StoreResolver:
    """Images of the local store (or any OCI layout's ImageStore)."""

    def __init__(self, images: Any) -> None:
        self._images = images

    def platforms(self, ref: str) -> list[Platform] | None:
        from polyarch.errors import InvalidManifest, NotFound
        from polyarch.oci.spec import Index, is_manifest

        try:
            desc = self._images.lookup(ref)
            doc = self._images.read_document(desc).document
        except (NotFound, InvalidManifest):
            return None
        if isinstance(doc, Index):
            return [m.platform for m in doc.manifests if m.platform is not None and is_manifest(m.media_type)
                    and m.platform.os != "unknown" and m.platform.architecture != "unknown"]
        return [self._images.image(desc).platform]


class RegistryResolver:
    """Images of registries, through the registry client (the user's credentials; a 404 is "not found")."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def platforms(self, ref: str) -> list[Platform] | None:
        from polyarch.errors import InvalidReference, RegistryError
        from polyarch.oci import reference
        from polyarch.oci.spec import Index, is_manifest, parse_config, parse_document
        from polyarch.registry.sources import RegistrySource, read_config

        try:
            parsed = reference.parse(ref).defaulted()
        except InvalidReference:
            return None
        try:
            fetched = self._client.get_manifest(parsed)
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise
        doc = parse_document(fetched.raw, fetched.media_type)
        if isinstance(doc, Index):
            return [m.platform for m in doc.manifests if m.platform is not None and is_manifest(m.media_type)
                    and m.platform.os != "unknown" and m.platform.architecture != "unknown"]
        return [parse_config(read_config(RegistrySource(self._client, parsed), doc.config)).platform]


class ChainResolver:
    """Asks each resolver in turn; the first that knows the image answers."""

    def __init__(self, *resolvers: ImageResolver) -> None:
        self._resolvers = resolvers

    def platforms(self, ref: str) -> list[Platform] | None:
        for r in self._resolvers:
            found = r.platforms(ref)
            if found is not None:
                return found
        return None


# --- rendering ----------------------------------------------------------------------------------------------

def _host_label(h: Host) -> str:
    return f"{h.name} ({h.platform})" if h.platform is not None else f"{h.name} (?)"


def render_table(report: AuditReport) -> str:
    header = ["IMAGE", *(_host_label(h) for h in report.hosts)]
    body = [[row.use.ref + (f" [{row.use.pinned}]" if row.use.pinned else ""), *(c.text() for c in row.cells)]
            for row in report.rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [header, *body]]
    return "\n".join(lines) + "\n"


def to_dict(report: AuditReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "hosts": [{"name": h.name, "platform": str(h.platform) if h.platform else None, "source": h.source,
                   **({"error": h.error} if h.error else {})} for h in report.hosts],
        "images": [{"ref": row.use.ref, "services": list(row.use.services),
                    "pinned": str(row.use.pinned) if row.use.pinned else None,
                    "found": row.platforms is not None,
                    "platforms": [str(p) for p in row.platforms] if row.platforms is not None else [],
                    "hosts": {h.name: c.to_dict() for h, c in zip(report.hosts, row.cells, strict=True)}}
                   for row in report.rows],
        "skipped": list(report.skipped),
        "errors": list(report.errors),
    }


def render_json(report: AuditReport) -> str:
    return json.dumps(to_dict(report), indent=2) + "\n"
