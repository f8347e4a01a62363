"""The merged filesystem of an image's layers, computed from tar streams without writing anything to disk.

Layers are applied bottom-up (``MergedView.apply`` once per layer, in manifest order). Only what verify needs is
kept: ELF files (their ``ElfInfo``, a few dozen bytes each), symlinks (to resolve parents the way a rooted
apply would) and the directories holding them. Regular files that are not ELF are read no further than their
first 64 bytes and leave no trace beyond removing whatever they replace.

Semantics, as containerd and BuildKit apply layers:

* an entry replaces what was at its path (last entry wins, also inside one layer); a directory entry over a
  directory merges;
* ``.wh.NAME`` deletes NAME of lower layers; ``.wh..wh..opq`` hides every lower-layer entry of its directory,
  wherever it stands in the layer (entries of the same layer survive, reliability case T7);
* parents are resolved through symlinks of the merged view, rooted at the image root (``foo -> /`` then
  ``foo/bin/app`` lands on ``/bin/app``); a name that escapes (``..``, absolute, NUL) makes the layer invalid;
* a hardlink is what its target is at that moment (an ELF target makes an ELF file);
* ``.wh.`` names that are empty, ``.``, ``..`` or contain ``/`` make the layer invalid (T5);
* tar members are read by ``worker.tarmembers`` (the reader layer apply uses): PAX/GNU long headers over 1 MiB,
  oversized sparse maps and header chains make the layer invalid before tarfile reads them.

Bottom-up rather than top-down because a hardlink may name a lower layer's file, and because every layer must
be decompressed to the end anyway (a tar stream cannot be skipped); examining a file a later layer deletes
costs a 64-byte read.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from polyarch.errors import InvalidLayer, LimitExceeded
from polyarch.worker.tarmembers import open_members

from .elf import HEADER_SIZE, ElfInfo, ElfProbe, parse_header

__all__ = ["ElfFile", "LayerStats", "MergedView"]

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_DEPTH = 1024
MAX_ENTRIES = 1_000_000  # per layer (entry bombs, T9: ~25 s to reach); the largest real layers hold a few 100k
MAX_NODES = 1_000_000  # ELF files + symlinks + their directories kept for the merged view
_READ = 1 << 20
_SYMLINK_HOPS = 40


@dataclass(frozen=True, slots=True)
class ElfFile:
    path: str  # absolute, e.g. /usr/bin/app
    info: ElfInfo
    layer: int  # index of the layer that put the final version there


@dataclass(slots=True)
class LayerStats:
    entries: int = 0
    files: int = 0
    elf_files: int = 0


class _Dir:
    __slots__ = ("children", "layer")

    def __init__(self, layer: int) -> None:
        self.children: dict[str, _Node] = {}
        self.layer = layer


@dataclass(frozen=True, slots=True)
class _Link:
    target: str
    layer: int


@dataclass(frozen=True, slots=True)
class _Elf:
    info: ElfInfo
    layer: int


_Node = _Dir | _Link | _Elf


def _components(name: str, what: str = "entry") -> list[str]:
    if "\x00" in name:
        raise InvalidLayer(f"{what} name {name!r} contains NUL")
    if name.startswith("/"):
        raise InvalidLayer(f"{what} name {name!r} is absolute")
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise InvalidLayer(f"{what} name {name!r} escapes the root")
        parts.append(part)
    if len(parts) > MAX_DEPTH:
        raise InvalidLayer(f"{what} name is {len(parts)} levels deep (limit {MAX_DEPTH})")
    return parts


class MergedView:
    """The ELF files of a stack of layers, with whiteouts, opaque directories, symlinks and hardlinks applied."""

    def __init__(self) -> None:
        self._root = _Dir(-1)
        self._interned: dict[ElfInfo, ElfInfo] = {}
        self._nodes = 0

    # --- resolution ---------------------------------------------------------------------------------------

    def _resolve_dir(self, parts: list[str], layer: int, *, create: bool) -> _Dir | None:
        """The directory ``parts`` names, following symlinks rooted at the image root; created (stamped
        ``layer``) when missing and ``create``, else None when missing.

        :raises InvalidLayer: when symlinks loop (ELOOP for a real apply).
        """
        todo = list(parts)
        stack: list[_Dir] = [self._root]
        hops = 0
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            here = stack[-1]
            node = here.children.get(part)
            if isinstance(node, _Dir):
                stack.append(node)
            elif isinstance(node, _Link):
                hops += 1
                if hops > _SYMLINK_HOPS:
                    raise InvalidLayer(f"too many levels of symbolic links in {'/'.join(parts)!r}")
                if node.target.startswith("/"):
                    stack = [self._root]
                todo = node.target.split("/") + todo
            elif create:
                self._grow()
                new = _Dir(layer)
                here.children[part] = new
                stack.append(new)
            else:
                return None
        return stack[-1]

    def _lookup(self, parts: list[str], layer: int) -> _Node | None:
        parent = self._resolve_dir(parts[:-1], layer, create=False)
        return parent.children.get(parts[-1]) if parent is not None and parts else None

    # --- applying a layer ---------------------------------------------------------------------------------

    def apply(self, stream: IO[bytes], layer: int) -> LayerStats:
        """Apply one layer's uncompressed tar stream; reads it forward only, to its end-of-archive marker.

        :raises InvalidLayer: for an unsafe or malformed entry, or a corrupt tar stream.
        """
        stats = LayerStats()
        try:
            tar = open_members(stream, stream=True)
            for member in tar:
                stats.entries += 1
                if stats.entries > MAX_ENTRIES:
                    raise LimitExceeded(f"layer has more than {MAX_ENTRIES} entries")
                self._apply_member(tar, member, layer, stats)
        except (tarfile.TarError, EOFError) as exc:
            raise InvalidLayer(f"corrupt tar stream: {exc}") from exc
        return stats

    def _apply_member(self, tar: tarfile.TarFile, member: tarfile.TarInfo, layer: int, stats: LayerStats) -> None:
        parts = _components(member.name)
        if not parts:
            return  # the root directory itself
        name = parts[-1]
        if name.startswith(WHITEOUT):
            self._whiteout(parts, layer, member.name)
            return
        if member.isdir():
            self._mkdir(parts, layer)
            return
        new: _Node | None = None
        if member.isreg():
            stats.files += 1
            info = self._probe(tar, member)
            if info is not None:
                stats.elf_files += 1
                new = _Elf(info, layer)
        elif member.issym():
            new = _Link(member.linkname, layer)
        elif member.islnk():
            target = self._lookup(_components(member.linkname, "hardlink target"), layer)
            if isinstance(target, _Elf):
                new = _Elf(target.info, layer)
            elif isinstance(target, _Link):
                new = _Link(target.target, layer)
        # Only what verify keeps (ELF files, symlinks) creates directories; anything else just removes what
        # was at its path, so a layer of a million plain files or directories costs no memory.
        parent = self._resolve_dir(parts[:-1], layer, create=new is not None)
        if parent is None:
            return
        if new is None:
            parent.children.pop(name, None)
        else:
            self._grow()
            parent.children[name] = new

    def _mkdir(self, parts: list[str], layer: int) -> None:
        """A directory entry: merges with a directory, replaces anything else (a symlink ``bin -> usr/bin``
        replaced by a real ``bin/``); creates nothing when nothing was there."""
        parent = self._resolve_dir(parts[:-1], layer, create=False)
        if parent is None:
            return
        node = parent.children.get(parts[-1])
        if isinstance(node, _Dir):
            node.layer = layer
        elif node is not None:
            parent.children[parts[-1]] = _Dir(layer)

    def _grow(self) -> None:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise LimitExceeded(f"more than {MAX_NODES} ELF files, symlinks and their directories")

    def _whiteout(self, parts: list[str], layer: int, raw: str) -> None:
        name = parts[-1]
        parent = self._resolve_dir(parts[:-1], layer, create=False)
        if name == OPAQUE:
            if parent is not None:
                _prune_lower(parent, layer)
            return
        if name.startswith(WHITEOUT + WHITEOUT):
            return  # other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not part of the image's files
        hidden = name[len(WHITEOUT):]
        if hidden in ("", ".", ".."):
            raise InvalidLayer(f"invalid whiteout entry {raw!r}")
        if parent is None:
            return
        node = parent.children.get(hidden)
        if node is None:
            return
        if isinstance(node, _Dir):
            _prune_lower(node, layer)
            if node.layer < layer and not node.children:
                del parent.children[hidden]
        elif node.layer < layer:
            del parent.children[hidden]

    def _probe(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> ElfInfo | None:
        if member.size < 52:
            return None
        f = tar.extractfile(member)
        if f is None:
            return None
        head = f.read(HEADER_SIZE)
        header = parse_header(head)
        if header is None:
            return None
        probe = ElfProbe(header)
        probe.feed(head)
        if probe.needs_more:
            while chunk := f.read(_READ):
                probe.feed(chunk)
        info = probe.result()
        return self._interned.setdefault(info, info)

    # --- results ------------------------------------------------------------------------------------------

    def elf_files(self) -> Iterator[ElfFile]:
        """Every ELF file of the merged view (depth first, names sorted within a directory)."""
        stack: list[tuple[str, _Dir]] = [("", self._root)]
        while stack:
            prefix, d = stack.pop()
            subdirs = []
            for name in sorted(d.children):
                node = d.children[name]
                path = f"{prefix}/{name}"
                if isinstance(node, _Elf):
                    yield ElfFile(path, node.info, node.layer)
                elif isinstance(node, _Dir):
                    subdirs.append((path, node))
            stack.extend(reversed(subdirs))


def _prune_lower(root: _Dir, layer: int) -> None:
    """Remove every entry under ``root`` that came from a layer below ``layer`` (keeping directories that hold
    entries of ``layer``); iterative, so deep trees cannot exhaust the stack."""
    order: list[_Dir] = []
    stack = [root]
    while stack:
        d = stack.pop()
        order.append(d)
        stack.extend(c for c in d.children.values() if isinstance(c, _Dir))
    for d in reversed(order):
        for name, child in list(d.children.items()):
            if isinstance(child, _Dir):
                if child.layer < layer and not child.children:
                    del d.children[name]
            elif child.layer < layer:
                del d.children[name]
