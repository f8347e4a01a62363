"""Turn rootfs tarballs (plain, gzip or zstd) into one image per platform and one index.

Each input is read as a tar stream and written again as a normalized PAX layer (entry names without ``./``,
times clamped to ``epoch`` when given (the CLI's ``SOURCE_DATE_EPOCH``), no atime/ctime), so the same input always gives the same
digests. Entries that could escape a root (absolute names, ``..``, NUL, hardlinks leaving the tree) reject the
whole input. On any failure, blobs this import created are removed again: the store is left as it was.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from polyarch.errors import InvalidLayer, LimitExceeded, NotFound
from polyarch.oci.spec import Descriptor, History, ImageConfig, Index
from polyarch.platform import Platform

from .compression import LayerResult, LayerWriter, decompressed
from .images import ImageStore

__all__ = ["ImportSource", "clean_member_name", "import_rootfs"]

MAX_ENTRIES = 2_000_000


@dataclass(frozen=True, slots=True)
class ImportSource:
    platform: Platform
    path: Path


def iso_time(epoch: int | float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clean_member_name(name: str, *, what: str = "entry") -> str:
    """``./a/b/`` → ``a/b``; rejects absolute names, ``..`` components and NUL bytes.

    :raises InvalidLayer: naming the entry.
    """
    if "\x00" in name:
        raise InvalidLayer(f"{what} {name!r} contains a NUL byte")
    if name.startswith("/"):
        raise InvalidLayer(f"{what} {name!r} is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidLayer(f"{what} {name!r} escapes the root with '..'")
    return "/".join(parts)


def _rewrite(src: Path, writer: LayerWriter, epoch: int | None) -> int:
    """Copy the tar at ``src`` into ``writer`` normalized; returns the newest entry mtime."""
    newest = 0
    count = 0
    try:
        with open(src, "rb") as raw, decompressed(raw) as plain, \
                tarfile.open(fileobj=plain, mode="r|") as tin, \
                tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tout:
            for member in tin:
                count += 1
                if count > MAX_ENTRIES:
                    raise LimitExceeded(f"{src}: more than {MAX_ENTRIES} entries")
                name = clean_member_name(member.name)
                if not name:
                    continue  # the root directory itself
                member.name = name
                if member.islnk():
                    member.linkname = clean_member_name(member.linkname, what=f"hardlink {name!r} target")
                mtime = int(member.mtime)
                if epoch is not None:
                    mtime = min(mtime, epoch)
                member.mtime = mtime
                newest = max(newest, mtime)
                member.pax_headers = {k: v for k, v in member.pax_headers.items() if k.startswith("SCHILY.xattr.")}
                tout.addfile(member, tin.extractfile(member) if member.isreg() else None)
    except tarfile.TarError as exc:
        raise InvalidLayer(f"{src}: not a valid tar archive ({exc})") from None
    except EOFError:
        raise InvalidLayer(f"{src}: truncated tar archive") from None
    except InvalidLayer as exc:
        if str(src) in exc.message:
            raise
        raise InvalidLayer(f"{src}: {exc.message}", hint=exc.hint) from None
    except FileNotFoundError:
        raise NotFound(f"{src}: no such file") from None
    except IsADirectoryError:
        raise InvalidLayer(f"{src}: is a directory, expected a tar archive") from None
    if count == 0:
        raise InvalidLayer(f"{src}: empty tar archive")
    return newest


def import_rootfs(
    images: ImageStore,
    sources: Sequence[ImportSource],
    *,
    compression: str = "gzip",
    level: int | None = None,
    oci: bool = True,
    base: Descriptor | None = None,
    on_progress: Callable[[str], None] | None = None,
    epoch: int | None = None,
) -> Descriptor:
    """Import every source as a one-layer image and return the descriptor of the index holding them (and, with
    ``base``, the platforms of that index which no source replaces). ``epoch``: clamp every time to it and use it
    as the created time (else the newest entry's time)."""
    store = images.store
    with store.transaction():
        manifests: list[Descriptor] = []
        for source in sources:
            if on_progress:
                on_progress(f"importing {source.path} as {source.platform}")
            with LayerWriter(store, compression, level=level, oci=oci) as writer:
                newest = _rewrite(source.path, writer, epoch)
                layer: LayerResult = writer.close_layer()
            when = iso_time(epoch if epoch is not None else newest)
            p = source.platform
            config = ImageConfig(
                architecture=p.architecture, os=p.os, variant=p.variant, created=when,
                diff_ids=(layer.diff_id,),
                history=(History(created=when, created_by=f"polyarch import --platform {p}", comment="imported"),),
            )
            manifests.append(images.put_image(config, [layer.descriptor], oci=oci))
        if base is not None:
            old = images.read_document(base).document
            olds = old.manifests if isinstance(old, Index) else (base,)
            replaced = {m.platform.normalized() for m in manifests if m.platform}
            kept = [m for m in olds if m.platform is None or m.platform.normalized() not in replaced]
            manifests = kept + manifests
        return images.put_index(manifests, oci=oci)
