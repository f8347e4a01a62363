"""``-o/--output``, ``--load`` and ``--push``: parsed once into typed values, then exported.

Forms (buildx's): ``type=oci,dest=F[,tar=false][,name=N]``, ``type=docker,dest=F[,name=N]`` (one platform),
``type=local,dest=DIR[,platform-split=false]`` (one ``linux_arm64/`` folder per platform with the merged
rootfs; the rootfs itself for a single platform or with ``platform-split=false``), ``type=tar,dest=F`` (the same as a tar), ``type=registry,name=REF[,push-by-digest=true]
[,compression=gzip|zstd|uncompressed][,compression-level=N][,oci-mediatypes=false][,rewrite-timestamp=true]
[,name-canonical=true]``, ``type=image``
(= registry when ``push=true``, else the local store), a bare path (= ``type=local,dest=PATH``) and ``-`` (a tar
on stdout). ``--load`` stores every platform and the index under each ``-t`` name in the local store (unlike
buildx, which keeps one platform); ``--push`` is ``type=registry`` with the ``-t`` names.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from polyarch.content.compression import LayerWriter, decompressed
from polyarch.content.images import ImageStore
from polyarch.errors import UsageError
from polyarch.oci.spec import layer_compression, layer_media_type

from .image import BuildResult, PlatformImage

__all__ = ["ExportReport", "OutputSpec", "build_metadata", "convert", "export", "parse_output", "platform_dirname"]

_TYPES = ("oci", "docker", "local", "tar", "registry", "image", "cacheonly")


@dataclass(frozen=True, slots=True)
class OutputSpec:
    type: str
    dest: str = ""
    attrs: Mapping[str, str] = field(default_factory=dict)

    def flag(self, key: str, default: bool) -> bool:
        value = self.attrs.get(key)
        if value is None:
            return default
        if value.lower() in ("true", "1", "yes", ""):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
        raise UsageError(f"output option {key}={value!r} is not a boolean")


def parse_output(text: str) -> OutputSpec:
    """One ``-o`` value → OutputSpec.

    :raises UsageError: unknown type, missing ``dest``/``name``, malformed ``key=value``.
    """
    text = text.strip()
    if not text:
        raise UsageError("empty --output")
    if "=" not in text:
        return OutputSpec("tar", "-") if text == "-" else OutputSpec("local", text)
    attrs: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            raise UsageError(f"invalid --output {text!r}: expected key=value pairs, got {part!r}")
        attrs[key] = value.strip()
    kind = attrs.pop("type", "")
    if not kind:
        raise UsageError(f"invalid --output {text!r}: type= is required", hint="types: " + ", ".join(_TYPES))
    if kind not in _TYPES:
        raise UsageError(f"unknown output type {kind!r}", hint="types: " + ", ".join(_TYPES))
    dest = attrs.pop("dest", "")
    if kind in ("oci", "docker", "local", "tar") and not dest:
        raise UsageError(f"output type={kind} needs dest=PATH")
    if kind == "image" and attrs.get("push", "false").lower() in ("true", "1"):
        kind = "registry"
    spec = OutputSpec(kind, dest, attrs)
    if kind in ("registry", "image", "oci", "docker"):
        compression = attrs.get("compression", "gzip")
        if compression not in ("gzip", "zstd", "uncompressed", "none"):
            raise UsageError(f"unknown compression {compression!r}", hint="use gzip, zstd or uncompressed")
        spec.flag("push-by-digest", False)
        spec.flag("oci-mediatypes", True)
        spec.flag("name-canonical", False)
        if spec.flag("rewrite-timestamp", False):
            _epoch()  # flag a missing SOURCE_DATE_EPOCH before any work
    return spec


def platform_dirname(platform: object) -> str:
    return str(platform).replace("/", "_")


@dataclass(slots=True)
class ExportReport:
    names: list[str] = field(default_factory=list)  # names written (store, registry)
    pushed: dict[str, str] = field(default_factory=dict)  # name -> root digest pushed
    result: BuildResult | None = None  # the result as exported last (after any conversion)


def build_metadata(result: BuildResult, names: Sequence[str]) -> dict[str, object]:
    """``--metadata-file`` content with buildx's keys: ``containerimage.digest`` (the index, or what was pushed),
    ``containerimage.descriptor``, ``containerimage.config.digest`` (single platform) and ``image.name``."""
    meta: dict[str, object] = {
        "containerimage.digest": str(result.index.digest),
        "containerimage.descriptor": result.index.to_dict(),
    }
    if len(result.images) == 1:
        meta["containerimage.config.digest"] = str(result.images[0].config_descriptor.digest)
    if names:
        meta["image.name"] = ",".join(names)
    return meta


def convert(images: ImageStore, result: BuildResult, *, compression: str = "gzip", level: int | None = None,
            oci: bool = True, force: bool = False) -> BuildResult:
    """The same images with layers in ``compression`` and OCI or Docker media types (diff_ids unchanged)."""
    compression = "none" if compression == "uncompressed" else compression
    if compression == "gzip" and oci and not force and level is None:
        return result
    from .image import PlatformImage as _PI

    done: dict[str, object] = {}
    out: list[PlatformImage] = []
    for img in result.images:
        layers = []
        for layer in img.layers:
            key = str(layer.descriptor.digest)
            if key not in done:
                have = layer_compression(layer.descriptor.media_type)
                if have == compression and not force and level is None:
                    desc = replace(layer.descriptor, media_type=layer_media_type(compression, oci=oci))
                    done[key] = replace(layer, descriptor=desc)
                else:
                    with images.store.open(layer.descriptor.digest) as raw, \
                            LayerWriter(images.store, compression, level=level, oci=oci) as lw:
                        src = decompressed(raw)
                        while chunk := src.read(1 << 20):
                            lw.write(chunk)
                        res = lw.close_layer()
                    done[key] = replace(layer, descriptor=res.descriptor)
            layers.append(done[key])
        notes = dict(images.image(img.descriptor).manifest.annotations)
        desc = images.put_image(img.config, [x.descriptor for x in layers], oci=oci,  # type: ignore[attr-defined]
                                annotations=notes or None)
        if img.descriptor.annotations:
            desc = desc.with_annotations(img.descriptor.annotations)
        cfg = images.put_config(img.config, oci=oci)
        out.append(_PI(img.platform, desc, img.config, cfg, tuple(layers),  # type: ignore[arg-type]
                       img.base_layers))
    index_notes = dict(images.read_document(result.index).document.annotations)
    index = images.put_index([p.descriptor for p in out], oci=oci, annotations=index_notes or None)
    return BuildResult(index, tuple(out))


def _rootfs(images: ImageStore, img: PlatformImage, dest: Path) -> None:
    from polyarch.worker.archive import apply_layer

    dest.mkdir(parents=True, exist_ok=True)
    for layer in img.layers:
        with images.store.open(layer.descriptor.digest) as f:
            apply_layer(f, dest, expected_diff_id=layer.diff_id)


def _local(images: ImageStore, result: BuildResult, dest: Path, *, split: bool = True) -> None:
    """Each platform's merged rootfs under ``dest/linux_arm64/`` (``dest`` itself for one platform, or for all
    of them, one over the other, with ``platform-split=false``)."""
    if len(result.images) == 1 or not split:
        for img in result.images:
            _rootfs(images, img, dest)
        return
    for img in result.images:
        _rootfs(images, img, dest / platform_dirname(img.platform))


def _tar(images: ImageStore, result: BuildResult, dest: str, *, split: bool = True) -> None:
    from polyarch.worker.diff import write_tree

    with tempfile.TemporaryDirectory(prefix="polyarch-tar-") as tmp:
        _local(images, result, Path(tmp) / "root", split=split)
        if dest == "-":
            write_tree(Path(tmp) / "root", sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        part = Path(dest).with_name(Path(dest).name + ".partial")
        with open(part, "wb") as f:
            write_tree(Path(tmp) / "root", f)
        os.replace(part, dest)


def export(images: ImageStore, result: BuildResult, outputs: Sequence[OutputSpec], *, tags: Sequence[str],
           push_client_factory: object = None) -> ExportReport:
    """Write ``result`` to every output in order; returns what was named and pushed."""
    from polyarch.exporters.archive import write_docker_archive, write_oci_archive, write_oci_dir

    report = ExportReport(result=result)
    original = result
    for spec in outputs:
        names = [n for n in spec.attrs.get("name", "").split(",") if n] or list(tags)
        result = original
        if spec.type in ("image", "oci", "docker", "registry") and spec.flag("rewrite-timestamp", False):
            result = report.result = _rewritten(images, original)
        if spec.type in ("image", "oci", "docker") and _converts(spec):
            result = report.result = _converted(images, result, spec)
        if spec.type == "image" or spec.type == "store":
            for name in _with_canonical(names, result, spec):
                images.set_name(name, result.index)
                report.names.append(name)
        elif spec.type == "oci":
            root = result.index
            if spec.flag("tar", True):
                write_oci_archive(images, root, names[0] if names else None, spec.dest)
            else:
                write_oci_dir(images, root, names[0] if names else None, Path(spec.dest))
        elif spec.type == "docker":
            if len(result.images) != 1:
                raise UsageError("type=docker holds one platform; this build has "
                                 f"{len(result.images)}", hint="use type=oci, or build with one --platform")
            img = images.image(result.images[0].descriptor)
            write_docker_archive(images, img, names, spec.dest)
        elif spec.type == "local":
            dest = Path(spec.dest)
            if dest.exists() and not dest.is_dir():
                raise UsageError(f"type=local dest {dest} exists and is not a directory")
            _local(images, result, dest, split=spec.flag("platform-split", True))
        elif spec.type == "tar":
            _tar(images, result, spec.dest, split=spec.flag("platform-split", True))
        elif spec.type == "registry":
            _push(images, result, spec, names, report, push_client_factory)
        elif spec.type == "cacheonly":
            continue
    return report


def _epoch() -> int:
    from polyarch.worker.diff import source_date_epoch

    epoch = source_date_epoch()
    if epoch is None:
        raise UsageError("rewrite-timestamp=true needs SOURCE_DATE_EPOCH",
                         hint="e.g. SOURCE_DATE_EPOCH=$(git log -1 --pretty=%ct) polyarch build …")
    return epoch


def _rewritten(images: ImageStore, result: BuildResult) -> BuildResult:
    from .timestamps import rewrite_timestamps

    return rewrite_timestamps(images, result, _epoch())


def _canonical(name: str, digest: str) -> str:
    """``repo:tag`` → ``repo@digest`` (buildx's ``name-canonical``)."""
    from polyarch.oci import reference

    ref = reference.parse(name)
    return f"{ref.domain}/{ref.path}@{digest}" if ref.domain else f"{ref.path}@{digest}"


def _with_canonical(names: Sequence[str], result: BuildResult, spec: OutputSpec) -> list[str]:
    """The names, each followed by its canonical ``name@digest`` with ``name-canonical=true``."""
    if not spec.flag("name-canonical", False):
        return list(names)
    out: list[str] = []
    for name in names:
        out += [name, _canonical(name, str(result.index.digest))]
    return list(dict.fromkeys(out))


def _converts(spec: OutputSpec) -> bool:
    return any(k in spec.attrs for k in ("compression", "compression-level", "force-compression", "oci-mediatypes"))


def _converted(images: ImageStore, result: BuildResult, spec: OutputSpec) -> BuildResult:
    level = spec.attrs.get("compression-level")
    if level is not None and not level.isdigit():
        raise UsageError(f"compression-level={level!r} is not a number")
    return convert(images, result, compression=spec.attrs.get("compression", "gzip"),
                   level=int(level) if level else None, oci=spec.flag("oci-mediatypes", True),
                   force=spec.flag("force-compression", False))


def _push(images: ImageStore, result: BuildResult, spec: OutputSpec, names: Sequence[str], report: ExportReport,
          client_factory: object) -> None:
    from polyarch.oci import reference
    from polyarch.registry.client import ClientOptions, RegistryClient
    from polyarch.registry.transfer import push_image

    if not names:
        raise UsageError("nothing to push to: give -t NAME or -o type=registry,name=NAME")
    converted = _converted(images, result, spec)
    report.result = converted
    by_digest = spec.flag("push-by-digest", False)
    insecure = spec.flag("registry.insecure", False)
    factory = client_factory or (lambda: RegistryClient(ClientOptions.from_env(
        insecure=[reference.parse(names[0]).domain] if insecure else [])))
    with factory() as client:  # type: ignore[operator]
        for name in names:
            ref = reference.parse(name)
            dest = reference.Reference(ref.domain, ref.path) if by_digest else ref.defaulted()
            pushed = push_image(images, converted.index, dest, client=client)
            report.pushed[name] = str(pushed.descriptor.digest)
            report.names.append(name)
            if spec.flag("name-canonical", False):  # the manifest is addressable by digest once pushed
                report.names.append(_canonical(name, report.pushed[name]))


