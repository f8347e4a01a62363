"""``registry serve --ui``: the web page's collaborators, made here (the registry layer cannot import
``verify/`` or ``audit/``): the verifier behind the coverage matrix (``verify_image`` over the store, one
platform manifest at a time) and the hosts of ``--hosts FILE`` (the ``polyarch audit`` hosts file; ssh hosts
asked once at start)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polyarch.content.store import ContentStore
    from polyarch.registry.server import Registry
    from polyarch.registry.server.ui import CellVerdict, HostPlatform, PlatformEntry, UiOptions

__all__ = ["StoreVerifier", "load_ui_hosts", "ui_enabled", "ui_options"]

_MISMATCH = frozenset({"elf-mismatch", "config-mismatch"})


def ui_enabled(flag: bool | None, host: str) -> bool:
    """``--ui``/``--no-ui`` when given; else on for a loopback address only."""
    from polyarch.registry.server.serve import is_loopback

    return flag if flag is not None else is_loopback(host)


class StoreVerifier:
    """``verify_image`` of one platform manifest of the registry's store → the matrix cell's verdict."""

    def __init__(self, store: ContentStore, reg: Registry) -> None:
        self._store = store
        self._reg = reg

    def __call__(self, entry: PlatformEntry) -> CellVerdict:
        from polyarch.digest import Digest
        from polyarch.errors import PolyarchError
        from polyarch.oci.spec import Descriptor
        from polyarch.registry.server.ui import CellVerdict
        from polyarch.verify.image import verify_image

        digest = Digest.parse(entry.digest)
        size = self._reg.blobs.stat(digest)
        if size is None:
            return CellVerdict("error", "manifest blob missing")
        try:
            report = verify_image(self._store, Descriptor(entry.media_type, digest, size), jobs=1)
        except PolyarchError as exc:
            return CellVerdict("error", exc.message)
        if report.ok:
            return CellVerdict("native", "")
        first = report.issues[0]
        kind = "mismatch" if any(i.kind in _MISMATCH for i in report.issues) else "error"
        return CellVerdict(kind, first.line()[:300])


def load_ui_hosts(path: Path, ssh_setting: str) -> tuple[HostPlatform, ...]:
    """The hosts whose platform is known (from the file, or asked over ssh). :raises PolyarchError:"""
    from polyarch.audit.hosts import SshOptions, load_hosts, resolve_hosts
    from polyarch.registry.server.ui import HostPlatform

    hosts = resolve_hosts(load_hosts(path), SshOptions.from_setting(ssh_setting, 30.0))
    return tuple(HostPlatform(h.name, h.platform) for h in hosts if h.platform is not None)


def ui_options(reg: Registry, store: ContentStore, *, filesystem: bool, hosts: tuple[HostPlatform, ...],
               viewers: tuple[str, ...]) -> UiOptions:
    """Options of the page: a verifier only when the blobs are in the local store (``filesystem`` storage)."""
    from polyarch.registry.server.ui import UiOptions

    return UiOptions(verifier=StoreVerifier(store, reg) if filesystem else None, hosts=hosts,
                     viewers=frozenset(viewers))
