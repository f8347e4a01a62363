"""Remote build contexts, fetched for one build: git repositories, http(s) tarballs or files, a tar or a
Dockerfile on stdin, images of an OCI layout (``--build-context NAME=oci-layout://…``).

The CLI decides what a context string is (``pipeline.ctxurl``) and asks a ``RemoteContexts`` (made per build,
closed after it, also on failure) to fetch it; the build then sees plain local directories (and store names for
layout images). Everything fetched is untrusted:

- it lands in one private (0700) temporary directory under ``<store>/contexts/``, removed by ``close``; what a
  killed build left (its process gone) is removed by the next one (``sweep``);
- tarballs (plain, gzip, zstd, bzip2, xz) are unpacked with ``worker.apply.apply_layer``: no absolute or ``..``
  names, parents resolved inside the directory (a symlink entry never leads out), bounded by ``ContextLimits``
  (bytes fetched, bytes unpacked, entries);
- git runs through ``solver.git.checkout`` (no prompts, no user or system config, subdirectory resolved inside
  the checkout); http through ``solver.http.download`` (size limit, redirects, http/https only);
- an OCI layout is read through ``sources`` (``parse_location``/``open_source``, every document and blob
  verified against its descriptor) and copied into the store under a temporary name, removed by ``close``.

Every failure is a ``BuildError`` (``UsageError`` for a bad location) whose message starts with ``what`` (how
the caller names the context: ``build context URL``, ``--build-context NAME``).
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import posixpath
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO
from urllib.parse import urlsplit

from polyarch.content.images import ImageStore
from polyarch.errors import BuildError, PolyarchError
from polyarch.fsutil import private_dir
from polyarch.oci.spec import Descriptor, Index, Manifest, is_index, is_manifest, parse_document
from polyarch.sources.protocol import ContentSource
from polyarch.worker.reap import pid_alive

from .ctxurl import GitURL

__all__ = ["ContextLimits", "Fetched", "RemoteContexts", "archive_kind"]

_TAR_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}
TEMP_REPOSITORY = "polyarch-build-context"


@dataclass(frozen=True, slots=True)
class ContextLimits:
    """Bounds on what one fetched context may cost."""

    download: int = 4 << 30  # bytes read from the network or stdin
    unpacked: int = 16 << 30  # bytes of a tarball once decompressed
    entries: int = 500_000  # entries of a tarball


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetched context: its directory, and the Dockerfile when the context *is* one (a plain file over http
    or on stdin: BuildKit reads it as the Dockerfile and the context is that one file, or nothing)."""

    directory: Path
    dockerfile: Path | None = None


def archive_kind(head: bytes) -> str | None:
    """``tar``, ``gzip``, ``zstd``, ``bzip2`` or ``xz`` when ``head`` (the first 512+ bytes) starts an archive."""
    for magic, kind in _TAR_MAGIC.items():
        if head.startswith(magic):
            return kind
    if len(head) < 512:
        return None
    block = head[:512]
    if block[257:262] == b"ustar":
        return "tar"
    try:
        stored = int(block[148:156].replace(b"\x00", b" ").strip() or b"-1", 8)
    except ValueError:
        return None
    return "tar" if stored == sum(block[:148]) + 8 * 32 + sum(block[156:]) else None


class _Unbuffered(io.RawIOBase):
    """A decompressing stream with no ``fileno`` (so nothing maps the compressed file as a plain tar)."""

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


class RemoteContexts:
    """The remote contexts of one build; owns their temporary directory and store names until ``close``."""

    def __init__(self, store_root: Path, images: ImageStore | Callable[[], ImageStore], *,
                 limits: ContextLimits = ContextLimits()) -> None:
        self._parent = store_root / "contexts"
        self._images = images
        self.limits = limits
        self._dir: Path | None = None
        self._names: list[str] = []

    def __enter__(self) -> RemoteContexts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove every fetched directory and every temporary store name (blobs are left to gc)."""
        if self._names:
            images = self._store()
            for name in self._names:
                try:
                    images.remove_name(name)
                except PolyarchError:
                    pass
            self._names = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _store(self) -> ImageStore:
        return self._images() if callable(self._images) else self._images

    def _work(self, prefix: str) -> Path:
        if self._dir is None:
            private_dir(self._parent)
            self.sweep()
            self._dir = Path(tempfile.mkdtemp(prefix=f"build-{os.getpid()}-", dir=self._parent))
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self._dir))

    def sweep(self) -> int:
        """Remove what a killed build left (its process is gone): ``build-PID-*`` directories and temporary
        ``polyarch-build-context/…:PID`` names. Returns how many were removed."""
        removed = 0
        for entry in os.scandir(self._parent) if self._parent.is_dir() else ():
            pid = entry.name.split("-")[1] if entry.name.startswith("build-") and entry.name.count("-") >= 2 else ""
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
        images = self._store()
        for name, _desc in images.names():
            repo, _, pid = name.rpartition(":")
            if repo.startswith(TEMP_REPOSITORY + "/") and pid.isdigit() and not pid_alive(int(pid)):
                try:
                    images.remove_name(name)
                    removed += 1
                except PolyarchError:
                    pass
        return removed

    # --- git --------------------------------------------------------------------------------------------------

    def git(self, url: GitURL, what: str) -> Path:
        """``url`` checked out (shallow, ``.git`` removed): the directory of its subdirectory."""
        from polyarch.solver.git import checkout

        if shutil.which("git") is None:
            raise BuildError(f"{what}: git is not installed", hint="apt-get install git")
        root, _commit = checkout(url.remote, url.ref, self._work("git-"), subdir=url.subdir, what=what)
        return root

    # --- http and tar -----------------------------------------------------------------------------------------

    def http(self, url: str, what: str, *, filename: str = "") -> Fetched:
        """``url`` downloaded: a tarball is unpacked into a directory; any other file is put alone in one, named
        ``filename`` (default: the last segment of the URL path, ``index`` when it has none, as BuildKit's http
        source) and returned as ``dockerfile``."""
        from polyarch.solver.http import download

        work = self._work("http-")
        name = filename or posixpath.basename(urlsplit(url).path)
        if name in ("", ".", "..") or "/" in name:
            name = "index"
        spool = work / "download"
        download(url, spool, limit=self.limits.download, what=what)
        return self._tar_or_file(spool, name, what)

    def stdin(self, stream: BinaryIO, what: str) -> Fetched:
        """What ``stream`` holds: a tar archive (unpacked), else a Dockerfile with an empty context (as buildx
        sniffs stdin). :raises BuildError: nothing on stdin, or more than the download limit."""
        spool = self._work("stdin-") / "stdin"
        size = 0
        with open(spool, "wb") as out:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > self.limits.download:
                    raise BuildError(f"{what}: more than {self.limits.download} bytes on stdin")
                out.write(chunk)
        if size == 0:
            raise BuildError(f"{what}: stdin is empty", hint="pipe a tar archive or a Dockerfile into it")
        return self._tar_or_file(spool, "Dockerfile", what, empty_context=True)

    def _tar_or_file(self, spool: Path, name: str, what: str, *, empty_context: bool = False) -> Fetched:
        with open(spool, "rb") as f:
            kind = archive_kind(f.read(1024))
        if kind is not None:
            directory = self.unpack(spool, kind, what)
            spool.unlink()
            return Fetched(directory)
        directory = self._work("file-")
        if empty_context:
            dockerfile = spool.parent / name
            spool.rename(dockerfile)
            return Fetched(directory, dockerfile)
        spool.rename(directory / name)
        return Fetched(directory, directory / name)

    def unpack(self, archive: Path, kind: str, what: str) -> Path:
        """The tar ``archive`` (``kind`` from ``archive_kind``) unpacked, contained, into a new directory."""
        from polyarch.worker.apply import ApplyLimits, apply_layer

        directory = self._work("tar-")
        limits = ApplyLimits(max_bytes=self.limits.unpacked, max_entries=self.limits.entries)
        try:
            with open(archive, "rb") as raw:
                stream: BinaryIO = raw
                if kind in ("bzip2", "xz"):
                    inner = bz2.BZ2File(raw) if kind == "bzip2" else lzma.LZMAFile(raw)
                    stream = io.BufferedReader(_Unbuffered(inner), 1 << 20)  # type: ignore[assignment]
                apply_layer(stream, directory, limits=limits)
        except PolyarchError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise BuildError(f"{what}: not a usable tar archive: {exc.message}") from exc
        except (OSError, EOFError, lzma.LZMAError) as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise BuildError(f"{what}: not a usable {kind} archive: {exc}") from exc
        return directory

    # --- OCI layouts ------------------------------------------------------------------------------------------

    def layout_image(self, location: str, what: str) -> str:
        """The image an ``oci-layout://PATH[:TAG|@DIGEST]`` location names, copied into the store (every blob
        verified) under a temporary name; returns that name (a reference the build's ``FROM`` finds locally)."""
        from polyarch.sources.location import open_source, parse_location

        images = self._store()
        name = f"{TEMP_REPOSITORY}/{secrets.token_hex(6)}:{os.getpid()}"
        try:
            with open_source(parse_location(location)) as opened:
                _copy_tree(images, opened.source, opened.descriptor)
                images.set_name(name, opened.descriptor)
        except PolyarchError as exc:
            raise BuildError(f"{what}: {exc.message}", hint=exc.hint) from exc
        self._names.append(name)
        return name


def _copy_tree(images: ImageStore, src: ContentSource, desc: Descriptor) -> None:
    """Every blob under ``desc`` from ``src`` into the store, verified; children of an index the layout lacks
    are skipped (a partial layout), everything a manifest names must be there."""
    store = images.store
    raw = src.read(desc)
    doc = parse_document(raw, desc.media_type)
    if isinstance(doc, Index):
        for child in doc.manifests:
            if (is_index(child.media_type) or is_manifest(child.media_type)) and src.route(child).has_blob(child):
                _copy_tree(images, src.route(child), child)
    elif isinstance(doc, Manifest):
        for blob in (doc.config, *doc.layers):
            if store.stat(blob.digest) == blob.size:
                continue
            with src.open_blob(blob) as f:
                store.ingest(f, expected=blob.digest, size=blob.size)
    store.write(raw, desc.digest)
