"""An OCI archive (a tar of an OCI layout) or a docker archive (``docker save``) read in place as an
``ContentSource``: nothing is extracted to the host; member names only find entries.

OCI archives: ``oci-archive://PATH[:TAG|@DIGEST]`` picks an index.json entry as a layout does. Docker archives:
``docker-archive://PATH[:TAG]`` picks the ``manifest.json`` entry holding RepoTag TAG (the only one without a
tag); its manifest is made in memory exactly as ``polyarch load`` writes it (config as-is, each layer file a blob,
its media type from its magic bytes), so both give the same digest.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from polyarch.content.compression import sniff
from polyarch.content.images import MAX_CONFIG, normalize_name
from polyarch.content.loader import ArchiveReader
from polyarch.digest import Digest, Hasher, VerifyingReader
from polyarch.errors import InvalidLayer, InvalidManifest, NotFound
from polyarch.oci.reference import Reference
from polyarch.oci.spec import Descriptor, Manifest, MediaType, parse_config

from .layout import find_named, pick_entry
from .protocol import MAX_DOCUMENT, ContentSource, Location, Opened, Scheme, check_limit, verified
from .registry import TempBlob
from .store import without_ref_name

__all__ = ["TarballSource", "open_archive"]

_CHUNK = 1 << 20


class TarballSource:
    """Blobs of a tar archive: ``blobs/ALG/HEX`` members, plus ``members`` (digest → member name) and in-memory
    ``documents`` for a docker archive. Safe to read from several threads."""

    def __init__(self, reader: ArchiveReader) -> None:
        self.reader = reader
        self.documents: dict[str, bytes] = {}
        self.members: dict[str, str] = {}
        self._lock = threading.Lock()
        with open(reader.path, "rb") as f:
            self._plain = sniff(f.read(4)) == "none"  # an uncompressed tar: members are read by offset

    @property
    def name(self) -> str:
        return str(self.reader.path)

    @property
    def repository(self) -> Reference | None:
        return None

    def _member(self, digest: Digest) -> tuple[str, tarfile.TarInfo]:
        """(the name ``ArchiveReader`` knows it by, its tar header)."""
        name = self.members.get(str(digest), f"blobs/{digest.algorithm}/{digest.hex}")
        member = self.reader.members.get(name)
        if member is None or not member.isreg():
            raise NotFound(f"blob {digest} is not in {self.name}")
        return name, member

    def read(self, desc: Descriptor, *, limit: int = MAX_DOCUMENT) -> bytes:
        check_limit(desc, limit)
        raw = self.documents.get(str(desc.digest))
        if raw is None:
            name, _ = self._member(desc.digest)
            with self._lock:
                raw = self.reader.read_capped(name, limit)
        return verified(raw, desc, self.name)

    def has_blob(self, desc: Descriptor) -> bool:
        if str(desc.digest) in self.documents:
            return len(self.documents[str(desc.digest)]) == desc.size
        try:
            return self._member(desc.digest)[1].size == desc.size
        except NotFound:
            return False

    @contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[IO[bytes]]:
        if str(desc.digest) in self.documents:
            import io

            yield io.BytesIO(self.read(desc, limit=desc.size))
            return
        _, member = self._member(desc.digest)
        if self._plain and member.sparse is None:
            with open(self.reader.path, "rb") as f:
                f.seek(member.offset_data)
                yield VerifyingReader(_Bounded(f, member.size), desc.digest, desc.size)  # type: ignore[misc]
            return
        with self.blob_file(desc) as path, open(path, "rb") as f:
            yield f

    @contextmanager
    def blob_file(self, desc: Descriptor) -> Iterator[Path]:
        folder = Path(tempfile.mkdtemp(prefix="polyarch-spool-"))
        try:
            blob = TempBlob(folder, desc.digest.algorithm)
            raw = self.documents.get(str(desc.digest))
            if raw is not None:
                blob.write(raw)
            else:
                name, _ = self._member(desc.digest)
                with self._lock, self.reader.open(name) as f:
                    while chunk := f.read(_CHUNK):
                        blob.write(chunk)
            blob.commit(desc.digest, desc.size)
            yield blob.path
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def route(self, child: Descriptor) -> ContentSource:
        return self

    def close(self) -> None:
        self.reader.tar.close()


class _Bounded:
    """The next ``size`` bytes of a file."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self._f, self._left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n) if n else b""
        self._left -= len(data)
        return data


def open_archive(location: Location) -> Opened:
    """What an ``oci-archive://`` or ``docker-archive://`` location names; the caller closes it.

    :raises NotFound: no such file or image. :raises InvalidLayer, InvalidManifest: not such an archive.
    """
    path, tag = _split(location.target)
    source = TarballSource(ArchiveReader(path))
    try:
        if location.scheme is Scheme.OCI_ARCHIVE:
            desc, name = _oci_root(source, location, tag)
        else:
            desc, name = _docker_root(source, location, tag)
        return Opened(source, desc, source.read(desc), name)
    except (tarfile.TarError, EOFError) as exc:
        source.close()
        raise InvalidLayer(f"{path}: truncated or corrupt tar archive ({exc})") from None
    except BaseException:
        source.close()
        raise


def _split(target: str) -> tuple[Path, str]:
    """(file, tag): the whole text when it is a file, else the first colon whose left part is one."""
    if Path(target).is_file():
        return Path(target), ""
    start = 0
    while (i := target.find(":", start)) > 0:
        if target[i + 1:] and Path(target[:i]).is_file():
            return Path(target[:i]), target[i + 1:]
        start = i + 1
    raise NotFound(f"{target}: no such file")


def _oci_root(source: TarballSource, location: Location, tag: str) -> tuple[Descriptor, str]:
    reader = source.reader
    if "index.json" not in reader.members or "oci-layout" not in reader.members:
        raise InvalidLayer(f"{reader.path}: not an OCI archive (no index.json and oci-layout)")
    doc = reader.read_json("index.json")
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        raise InvalidManifest(f"{reader.path}: index.json has no manifests list")
    entries = [Descriptor.from_dict(raw, f"index.json manifests[{i}]") for i, raw in enumerate(doc["manifests"])]
    if location.digest is not None:
        found = [e for e in entries if e.digest == location.digest]
        if not found:
            raise NotFound(f"{location}: no index.json entry {location.digest}")
        return without_ref_name(found[0]), str(location)
    if tag:
        return without_ref_name(find_named(entries, tag, f"OCI archive {reader.path}")), str(location)
    desc, raw, _ = pick_entry(entries, str(reader.path))
    if raw is not None:
        source.documents[str(desc.digest)] = raw
        return desc, f"{location} (index.json)"
    return without_ref_name(desc), str(location)


def _docker_root(source: TarballSource, location: Location, tag: str) -> tuple[Descriptor, str]:
    reader = source.reader
    if "manifest.json" not in reader.members:
        raise InvalidLayer(f"{reader.path}: not a docker archive (no manifest.json)")
    entries = reader.read_json("manifest.json")
    if not isinstance(entries, list) or not entries or not all(
            isinstance(e, dict) and isinstance(e.get("Config"), str) and isinstance(e.get("Layers"), list)
            for e in entries):
        raise InvalidManifest(f"{reader.path}: manifest.json must be a non-empty list of Config and Layers")
    if tag:
        wanted = normalize_name(tag)
        chosen = [e for e in entries if any(normalize_name(str(t)) == wanted for t in e.get("RepoTags") or [])]
        if not chosen:
            raise NotFound(f"no image named {tag!r} in docker archive {reader.path}")
    elif len(entries) > 1:
        tags = sorted(str(t) for e in entries for t in e.get("RepoTags") or [])
        raise NotFound(f"docker archive {reader.path} holds {len(entries)} images",
                       hint=f"name one: {location}:{tags[0]}" if tags else None)
    else:
        chosen = entries
    desc = _docker_manifest(source, chosen[0])
    if location.digest is not None and desc.digest != location.digest:
        raise NotFound(f"{location}: the archive's image is {desc.digest}")
    return desc, str(location)


def _docker_manifest(source: TarballSource, entry: dict[str, object]) -> Descriptor:
    """The manifest ``polyarch load`` would write for ``entry``, held in memory."""
    reader = source.reader
    raw_config = reader.read_capped(str(entry["Config"]), MAX_CONFIG)
    config = parse_config(raw_config)
    names = [str(n) for n in entry["Layers"]]  # type: ignore[attr-defined]
    if len(config.diff_ids) != len(names):
        raise InvalidManifest(f"{reader.path}: {len(names)} layers but {len(config.diff_ids)} diff_ids")
    layers = []
    for name, diff_id in zip(names, config.diff_ids, strict=True):
        hasher = Hasher("sha256")
        with reader.open(name) as f:
            kind = sniff(head := f.read(4))
            hasher.update(head)
            while chunk := f.read(_CHUNK):
                hasher.update(chunk)
        digest = hasher.digest()
        if kind == "none" and digest != diff_id:
            raise InvalidLayer(f"{reader.path}: layer {name} hashes to {digest}, config says {diff_id}")
        media_type = {"none": MediaType.DOCKER_LAYER, "zstd": MediaType.OCI_LAYER_ZSTD}.get(
            kind, MediaType.DOCKER_LAYER_GZIP)
        layers.append(Descriptor(media_type, digest, hasher.size))
        source.members[str(digest)] = name
    config_desc = Descriptor(MediaType.DOCKER_CONFIG, Digest.of(raw_config), len(raw_config))
    source.documents[str(config_desc.digest)] = raw_config
    raw = Manifest(config_desc, tuple(layers), MediaType.DOCKER_MANIFEST).to_json()
    source.documents[str(Digest.of(raw))] = raw
    return Descriptor(MediaType.DOCKER_MANIFEST, Digest.of(raw), len(raw), config.platform)
