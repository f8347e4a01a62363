"""COPY/ADD and WORKDIR layers, written straight from the source tree (no rootfs needed).

``plan_copy`` resolves the sources of a COPY (globs matched per path component like Go's ``filepath.Match``,
by ``.dockerignore``'s own matcher; ``.dockerignore``, ``--exclude``; rooted resolution inside the source tree, the final symlink of a named source followed like Docker) into sorted layer ``Entry`` values,
with the destination rules of Docker: several sources or a trailing ``/`` → into a directory; a directory source
→ its contents; a single file onto an existing directory → inside it. Missing parents of the destination are
created (0755, owned like the copied files). ``content_key`` hashes the entries (never mtimes, like BuildKit's
content hash) and ``write_layer`` writes them as a reproducible tar (PAX, sorted, numeric ids, mtimes clamped to
``SOURCE_DATE_EPOCH``; created directories get the epoch, or 0) into the content store.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from polyarch.content.compression import LayerWriter
from polyarch.content.store import ContentStore
from polyarch.errors import BuildError, StoreError
from polyarch.frontend.dockerignore import glob_match
from polyarch.oci.jsonutil import key_json
from polyarch.worker.securepath import secure_join

from .rootview import RootView
from .state import Layer

__all__ = ["Chmod", "Entry", "content_key", "mkdir_entries", "parse_chmod", "plan_copy", "write_layer"]

_GLOB = set("*?[")
FileHasher = Callable[[str, os.stat_result], str]


@dataclass(frozen=True, slots=True)
class Entry:
    rel: str  # path in the layer, no leading '/'
    kind: str  # dir | file | symlink
    mode: int
    uid: int
    gid: int
    host: str = ""  # host path of a file's content
    linkname: str = ""
    size: int = 0
    mtime: int | None = None  # None: a created directory


Chmod = Callable[[int, bool], int]  # (current mode, is a directory) -> new mode

_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o1007, "a": 0o7777}
_PERM = {"r": 0o444, "w": 0o222, "x": 0o111, "s": 0o6000, "t": 0o1000}


def parse_chmod(chmod: str) -> Chmod | None:
    """``--chmod``: octal (``0755``) or symbolic (``u+x,go-w``, ``a=rX``) → a function of the current mode.

    :raises BuildError: anything else.
    """
    if not chmod:
        return None
    if chmod.isdigit():
        fixed = int(chmod, 8) & 0o7777
        return lambda _mode, _is_dir: fixed
    clauses = []
    for clause in chmod.split(","):
        i = 0
        while i < len(clause) and clause[i] in _WHO:
            i += 1
        who, rest = clause[:i] or "a", clause[i:]
        if not rest or rest[0] not in "+-=" or any(c not in "rwxXst" for c in rest[1:]):
            raise BuildError(f"invalid --chmod={chmod}: want an octal mode or [ugoa][+-=][rwxXst]")
        clauses.append((who, rest[0], rest[1:]))

    def apply(mode: int, is_dir: bool) -> int:
        mode &= 0o7777
        for who, op, perms in clauses:
            mask = 0
            for w in who:
                mask |= _WHO[w]
            bits = 0
            for p in perms:
                if p == "X":
                    bits |= 0o111 if is_dir or mode & 0o111 else 0
                else:
                    bits |= _PERM[p]
            bits &= mask
            if op == "+":
                mode |= bits
            elif op == "-":
                mode &= ~bits
            else:
                mode = (mode & ~(mask & 0o777 if who != "a" else 0o7777)) | bits
        return mode & 0o7777

    return apply


def _match(tree: str, pattern: str, excluded: Callable[[str], bool]) -> list[str]:
    """Relative paths in ``tree`` matching a glob pattern, component by component."""
    parts = [p for p in pattern.split("/") if p and p != "."]
    found = [""]
    for i, part in enumerate(parts):
        nxt: list[str] = []
        for base in found:
            directory = secure_join(tree, base) if base else tree
            if not any(c in _GLOB for c in part):
                cand = posixpath.join(base, part) if base else part
                if os.path.lexists(secure_join(tree, cand, follow_final=False)):
                    nxt.append(cand)
                continue
            try:
                names = sorted(os.listdir(directory))
            except (NotADirectoryError, FileNotFoundError):
                continue
            for name in names:
                if glob_match(part, name):
                    cand = posixpath.join(base, name) if base else name
                    if i == len(parts) - 1 and excluded(cand):
                        continue
                    nxt.append(cand)
        found = nxt
    return found


def _mtime(st: os.stat_result) -> int:
    return int(st.st_mtime)


def plan_copy(tree: str, paths: Sequence[str], dest: str, *, excluded: Callable[[str], bool],
              view: RootView | None, owner: tuple[int, int] | None, chmod: Chmod | None,
              what: str = "build context", parents: bool = False) -> list[Entry]:
    """The entries a COPY of ``paths`` (relative to ``tree``) to ``dest`` adds, sorted by path.

    ``parents`` (``COPY --parents``): each source keeps its path (from the ``/./`` marker when there is one)
    under ``dest``."""
    uid, gid = owner or (0, 0)
    sources: list[str] = []
    keep: dict[str, str] = {}  # source -> the part of its path kept under dest (--parents)
    for raw in paths:
        clean = posixpath.normpath("/" + raw).lstrip("/")
        pivot = posixpath.normpath("/" + raw.split("/./", 1)[0]).lstrip("/") if "/./" in raw else ""
        if any(c in _GLOB for c in clean):
            hits = _match(tree, clean, excluded)  # a pattern may match nothing (BuildKit: AllowEmptyWildcard)
            sources.extend(hits)
        else:
            if clean and excluded(clean):
                raise BuildError(f"{raw!r} not found: it is excluded by .dockerignore or --exclude")
            host = secure_join(tree, clean)
            if not os.path.lexists(host):
                raise BuildError(f"{raw!r} not found in the {what}")
            hits = [clean]
            sources.append(clean)
        for hit in hits:
            keep[hit] = posixpath.relpath(hit, pivot) if pivot and hit.startswith(pivot + "/") else hit
    if not sources:
        return []
    into_dir = dest.endswith("/") or len(sources) > 1 or parents  # one match onto ``dest`` names a file
    dest_abs = posixpath.normpath("/" + dest)
    if not into_dir and len(sources) == 1:
        st0 = os.stat(secure_join(tree, sources[0]))
        if stat.S_ISDIR(st0.st_mode) or (view is not None and view.is_dir(dest_abs)):
            into_dir = True
    out: dict[str, Entry] = {}

    def add_file(rel: str, host: str, st: os.stat_result) -> None:
        mode = stat.S_IMODE(st.st_mode)
        if chmod is not None:
            mode = chmod(mode, stat.S_ISDIR(st.st_mode))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = Entry(rel, "symlink", 0o777, uid, gid, linkname=os.readlink(host), mtime=_mtime(st))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = Entry(rel, "dir", mode, uid, gid, mtime=_mtime(st))
        elif stat.S_ISREG(st.st_mode):
            out[rel] = Entry(rel, "file", mode, uid, gid, host=host, size=st.st_size, mtime=_mtime(st))

    def add_tree(src_rel: str, host: str, target: str) -> None:
        for name in sorted(os.listdir(host)):
            child_rel = posixpath.join(src_rel, name) if src_rel else name
            if excluded(child_rel):
                if os.path.isdir(os.path.join(host, name)) and not os.path.islink(os.path.join(host, name)):
                    add_tree(child_rel, os.path.join(host, name), posixpath.join(target, name))  # '!' re-includes
                continue
            child = os.path.join(host, name)
            st = os.lstat(child)
            add_file(posixpath.join(target, name), child, st)
            if stat.S_ISDIR(st.st_mode):
                add_tree(child_rel, child, posixpath.join(target, name))

    base = dest_abs.lstrip("/")
    for src in sources:
        host = secure_join(tree, src) if src else tree
        st = os.stat(host)  # a named source's final symlink is followed
        if parents and keep.get(src):
            _parents(out, posixpath.join(base, keep[src]) if stat.S_ISDIR(st.st_mode) else
                     posixpath.dirname(posixpath.join(base, keep[src])), None, uid, gid)
        if stat.S_ISDIR(st.st_mode):
            add_tree(src, host, posixpath.join(base, keep[src]) if parents and keep.get(src) else base)
        else:
            target = posixpath.join(base, keep[src] if parents else posixpath.basename(src)) if into_dir else base
            if not target:
                raise BuildError(f"cannot copy file {src!r} onto /")
            add_file(target, host, st)
    _parents(out, base if into_dir else posixpath.dirname(base), view, uid, gid)
    return [out[k] for k in sorted(out, key=lambda p: p.encode("utf-8", "surrogateescape"))]


def _parents(out: dict[str, Entry], directory: str, view: RootView | None, uid: int, gid: int) -> None:
    parts = [p for p in directory.split("/") if p]
    for i in range(len(parts)):
        rel = "/".join(parts[: i + 1])
        if rel in out:
            continue
        if view is not None and view.lookup("/" + rel) is not None:
            continue
        out[rel] = Entry(rel, "dir", 0o755, uid, gid)


def mkdir_entries(path: str, view: RootView | None, owner: tuple[int, int] | None) -> list[Entry]:
    """WORKDIR: the directories of ``path`` the tree lacks (empty when it exists)."""
    uid, gid = owner or (0, 0)
    out: dict[str, Entry] = {}
    _parents(out, posixpath.normpath("/" + path).lstrip("/"), view, uid, gid)
    return [out[k] for k in sorted(out)]


def content_key(entries: Sequence[Entry], hash_file: FileHasher) -> str:
    """A digest of what the entries contain (paths, types, modes, owners, link targets, file contents)."""
    rows = []
    for e in entries:
        row: list[object] = [e.rel, e.kind, e.mode, e.uid, e.gid, e.linkname, e.mtime is None]
        if e.kind == "file":
            row.append(hash_file(e.host, os.stat(e.host)))
        rows.append(row)
    return "sha256:" + hashlib.sha256(key_json(rows)).hexdigest()


def write_layer(store: ContentStore, entries: Sequence[Entry], *, epoch: int | None, compression: str = "gzip",
                level: int | None = None, oci: bool = True) -> Layer | None:
    """The entries as a reproducible layer blob in ``store``; None when there are none."""
    if not entries:
        return None
    try:
        with LayerWriter(store, compression, level=level, oci=oci) as lw:
            with tarfile.open(fileobj=lw, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                for e in entries:
                    info = tarfile.TarInfo(e.rel)
                    info.mode = e.mode
                    info.uid, info.gid = e.uid, e.gid
                    info.uname = info.gname = ""
                    mtime = e.mtime if e.mtime is not None else (epoch or 0)
                    info.mtime = min(mtime, epoch) if epoch is not None else mtime
                    if e.kind == "dir":
                        info.type = tarfile.DIRTYPE
                        tf.addfile(info)
                    elif e.kind == "symlink":
                        info.type = tarfile.SYMTYPE
                        info.linkname = e.linkname
                        tf.addfile(info)
                    else:
                        with open(e.host, "rb") as f:
                            info.size = os.fstat(f.fileno()).st_size
                            tf.addfile(info, f)
            result = lw.close_layer()
    except OSError as exc:
        raise StoreError(f"cannot write a layer: {exc}") from exc
    return Layer(result.descriptor, result.diff_id, result.uncompressed_size)
