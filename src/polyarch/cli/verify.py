"""``polyarch verify REF|LAYOUT``: prove each platform of an image is native before a Raspberry Pi finds out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from polyarch.cli.context import AppContext, pass_app
from polyarch.cli.registry_cmds import client_options

if TYPE_CHECKING:
    from polyarch.oci.spec import Descriptor
    from polyarch.verify.source import BlobSource

__all__ = ["resolve_target", "verify"]

LAYOUT_SCHEME = "oci-layout://"


@click.command("verify")
@click.argument("ref")
@click.option("--platform", "platforms", multiple=True, metavar="P[,P…]",
              help="Verify only these platforms (default: every platform of the index).")
@click.option("--require", "required", multiple=True, metavar="P[,P…]",
              help="Platforms that must be in the index.")
@click.option("--ignore", "ignores", multiple=True, metavar="GLOB",
              help="Do not check ELF files whose absolute path matches (e.g. '/usr/aarch64-linux-gnu/*' for a "
                   "cross sysroot); repeatable. Firmware dirs are always ignored.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--jobs", type=click.IntRange(1, 64), default=None, envvar="POLYARCH_VERIFY_JOBS",
              help="Platforms verified at once (default: up to 4, at most the CPU count).")
@client_options
@pass_app
def verify(app: AppContext, ref: str, platforms: tuple[str, ...], required: tuple[str, ...],
           ignores: tuple[str, ...], fmt: str, jobs: int | None, insecure: tuple[str, ...],
           tls_ca: str | None) -> None:
    """Check every platform of REF: present when required, config matching the index, and every ELF file of
    its merged filesystem built for it (an amd64 binary in an arm64 image, an ARMv7 one in arm/v6).

    REF is a name in the local store, an OCI layout directory (PATH, PATH:TAG or oci-layout://PATH[:TAG]), or a
    registry reference. Exit status: 0 clean, 1 with one line per problem.
    """
    from polyarch import platform as plat
    from polyarch.verify import render_json, render_text, verify_image
    from polyarch.verify.checks import DEFAULT_IGNORE

    selected = plat.parse_list(platforms)
    require = plat.parse_list(required)
    source, descriptor, subject = resolve_target(app, ref, insecure=insecure, tls_ca=tls_ca)
    try:
        report = verify_image(source, descriptor, platforms=selected, require=require,
                              ignore=(*DEFAULT_IGNORE, *ignores), subject=subject, jobs=jobs)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    if fmt == "json":
        click.echo(render_json(report), nl=False)
    else:
        out, summary = render_text(report)
        if out:
            click.echo(out, nl=False)
        click.echo(summary, err=True)
    if not report.ok:
        sys.exit(1)


def _layout_parts(ref: str) -> tuple[Path, str] | None:
    """(layout dir, tag) when ``ref`` names an OCI layout directory, else None."""
    explicit = ref.startswith(LAYOUT_SCHEME)
    text = ref[len(LAYOUT_SCHEME):] if explicit else ref
    if (Path(text) / "oci-layout").is_file():
        return Path(text), ""
    # PATH:TAG, where the tag may hold colons of its own (a layout's ref.name can be a full image name)
    start = 0
    while (i := text.find(":", start)) > 0:
        path, tag = text[:i], text[i + 1:]
        if tag and (Path(path) / "oci-layout").is_file():
            return Path(path), tag
        start = i + 1
    if explicit:
        from polyarch.errors import NotFound

        raise NotFound(f"{text!r} is not an OCI layout directory (no oci-layout file)")
    return None


def resolve_target(app: AppContext, ref: str, *, insecure: tuple[str, ...] = (),
                   tls_ca: str | None = None) -> tuple[BlobSource | object, Descriptor, str]:
    """What ``ref`` names: (blob source, descriptor, how to call it in messages): an OCI layout, else a name of
    the local store, else a registry reference."""
    from polyarch.errors import NotFound

    layout = _layout_parts(ref)
    if layout is not None:
        return _from_layout(*layout)
    images = app.images
    try:
        return images, images.lookup(ref), ref
    except NotFound as exc:
        remote = _from_registry(ref, insecure, tls_ca)
        if remote is None:
            raise NotFound(f"no image named {ref!r} in the local store, and {ref!r} is not an OCI layout "
                           "directory", hint=exc.hint) from None
        return remote


def _from_layout(path: Path, tag: str) -> tuple[BlobSource | object, Descriptor, str]:
    from polyarch.content.images import REF_NAME, ImageStore
    from polyarch.content.store import ContentStore
    from polyarch.errors import NotFound
    from polyarch.verify.source import StoreSource

    store = ContentStore(path, create=False)
    images = ImageStore(store)
    if tag:
        return images, images.lookup(tag), f"{path}:{tag}"
    entries = images.entries()
    if not entries:
        raise NotFound(f"OCI layout {path} has no image (index.json is empty)")
    if len(entries) == 1:
        return images, entries[0], str(path)
    names = sorted({e.annotations[REF_NAME] for e in entries if e.annotations.get(REF_NAME)})
    if len(names) > 1:
        raise NotFound(f"OCI layout {path} holds several images: {', '.join(names)}",
                       hint=f"name one: {path}:{names[0]}")
    # index.json itself lists the platforms of one image: verify it as the index
    from polyarch.digest import Digest
    from polyarch.oci.spec import Descriptor, Index, MediaType

    raw = Index(tuple(e.with_annotations({k: v for k, v in e.annotations.items() if k != REF_NAME})
                      for e in entries)).to_json()
    desc = Descriptor(MediaType.OCI_INDEX, Digest.of(raw), len(raw))
    return _WithDocument(StoreSource(store), desc, raw), desc, f"{path} (index.json)"


class _WithDocument:
    """A blob source that also serves one in-memory document (a layout's index.json read as an index)."""

    def __init__(self, inner: BlobSource, desc: Descriptor, raw: bytes) -> None:
        self._inner, self._desc, self._raw = inner, desc, raw

    def read(self, desc: Descriptor, *, limit: int) -> bytes:
        return self._raw if desc.digest == self._desc.digest else self._inner.read(desc, limit=limit)

    def open(self, desc: Descriptor):  # type: ignore[no-untyped-def]
        return self._inner.open(desc)


def _from_registry(ref: str, insecure: tuple[str, ...], tls_ca: str | None
                   ) -> tuple[BlobSource | object, Descriptor, str] | None:
    """A registry reference, resolved with the user's credentials; None when ``ref`` is not a reference."""
    from polyarch.cli.registry_cmds import make_client
    from polyarch.errors import InvalidReference, NotFound, RegistryError
    from polyarch.oci import reference
    from polyarch.verify.source import RegistryBlobSource

    try:
        parsed = reference.parse(ref).defaulted()
    except InvalidReference:
        return None
    client = make_client(insecure, tls_ca)
    try:
        fetched = client.get_manifest(parsed)
    except RegistryError as exc:
        client.close()
        if exc.status == 404:
            raise NotFound(f"no image named {ref!r} in the local store nor at {parsed.domain}") from exc
        raise RegistryError(f"no image named {ref!r} in the local store, and {parsed.domain} cannot be asked: "
                            f"{exc.message}", hint=exc.hint, status=exc.status, code=exc.code) from exc
    except BaseException:
        client.close()
        raise
    source = RegistryBlobSource(client, parsed, {str(fetched.digest): fetched.raw}, owns_client=True)
    return source, fetched.descriptor, ref
