"""The merged view of layers: whiteouts, opaque dirs, replacement, hardlinks, symlinked parents, bad layers."""

from __future__ import annotations

import io
import tarfile

import pytest

from polyarch.errors import InvalidLayer
from polyarch.verify.fs import MergedView

from .build import Entry, tar_bytes
from .test_elf import EM, elf_header

X86 = elf_header(EM["X86_64"]) + bytes(64)
ARM64 = elf_header(EM["AARCH64"]) + bytes(64)


def merged(*layers: list[Entry] | bytes) -> dict[str, str]:
    view = MergedView()
    for i, layer in enumerate(layers):
        data = layer if isinstance(layer, bytes) else tar_bytes(layer)
        view.apply(io.BytesIO(data), i)
    return {f.path: f.info.describe() for f in view.elf_files()}


def test_files_and_replacement() -> None:
    assert merged([("usr/bin/a", "file", X86), ("usr/bin/b", "file", b"#!/bin/sh\n" * 10)]) == \
        {"/usr/bin/a": "x86-64"}
    assert merged([("usr/bin/a", "file", X86)], [("usr/bin/a", "file", ARM64)]) == {"/usr/bin/a": "aarch64"}
    assert merged([("usr/bin/a", "file", ARM64)], [("usr/bin/a", "file", X86)]) == {"/usr/bin/a": "x86-64"}
    assert merged([("usr/bin/a", "file", X86)], [("usr/bin/a", "file", b"not elf" * 20)]) == {}
    assert merged([("usr/bin/a", "file", X86)], [("usr/bin/a", "sym", "b")]) == {}
    assert merged([("opt/d/a", "file", X86)], [("opt/d", "file", b"x")]) == {}
    assert merged([("opt/d", "file", X86)], [("opt/d", "dir", b""), ("opt/d/a", "file", ARM64)]) == \
        {"/opt/d/a": "aarch64"}
    # last entry wins inside one layer too; names are normalised (./, //)
    assert merged([("./usr//bin/a", "file", X86), ("usr/bin/a", "file", ARM64)]) == {"/usr/bin/a": "aarch64"}


def test_whiteouts() -> None:
    lower = [("usr/bin/tool", "file", X86), ("usr/bin/keep", "file", ARM64), ("opt/x/y/z", "file", X86)]
    assert merged(lower, [("usr/bin/.wh.tool", "file", b"")]) == {"/usr/bin/keep": "aarch64",
                                                                   "/opt/x/y/z": "x86-64"}
    assert merged(lower, [("opt/.wh.x", "file", b"")]) == {"/usr/bin/tool": "x86-64", "/usr/bin/keep": "aarch64"}
    assert merged(lower, [("usr/bin/.wh..wh..opq", "file", b"")]) == {"/opt/x/y/z": "x86-64"}
    # a deleted directory recreated in the next layer does not bring lower content back (T7)
    assert merged(lower, [("opt/.wh.x", "file", b"")], [("opt/x", "dir", b"")]) == \
        {"/usr/bin/tool": "x86-64", "/usr/bin/keep": "aarch64"}
    # whiteout of something absent, and other AUFS metadata, are no-ops
    assert merged(lower, [("nope/.wh.nothing", "file", b""), (".wh..wh.plnk", "dir", b"")]) == \
        merged(lower)


def test_opaque_marker_after_same_layer_entries() -> None:
    """T7: ``a/b/new`` listed before ``a/.wh..wh..opq`` survives; lower ``a/*`` is gone."""
    lower = [("a/b/old", "file", X86), ("a/c", "file", X86), ("z", "file", X86)]
    upper = [("a/b/new", "file", ARM64), ("a/.wh..wh..opq", "file", b"")]
    assert merged(lower, upper) == {"/a/b/new": "aarch64", "/z": "x86-64"}
    upper_dir_listed = [("a", "dir", b""), ("a/b", "dir", b""), ("a/.wh..wh..opq", "file", b"")]
    assert merged(lower, upper_dir_listed) == {"/z": "x86-64"}


def test_hardlinks_count_as_their_target() -> None:
    assert merged([("bin/app", "file", X86), ("bin/app2", "link", "bin/app")]) == \
        {"/bin/app": "x86-64", "/bin/app2": "x86-64"}
    # to a lower layer's file, and surviving the target's deletion
    assert merged([("bin/app", "file", X86)], [("sbin/app", "link", "bin/app"), ("bin/.wh.app", "file", b"")]) \
        == {"/sbin/app": "x86-64"}
    # to something that is not ELF, or does not exist
    assert merged([("bin/sh", "file", b"#!" * 40), ("bin/x", "link", "bin/sh"), ("bin/y", "link", "nope")]) == {}


def test_parents_resolve_through_symlinks() -> None:
    """T2/T6: writes and whiteouts through a symlinked parent land inside the image root."""
    assert merged([("usr/bin", "dir", b""), ("bin", "sym", "usr/bin"), ("bin/app", "file", X86)]) == \
        {"/usr/bin/app": "x86-64"}
    assert merged([("foo", "sym", "/"), ("foo/tmp/pwn", "file", X86)]) == {"/tmp/pwn": "x86-64"}
    assert merged([("foo", "sym", "../../.."), ("foo/tmp/pwn", "file", X86)]) == {"/tmp/pwn": "x86-64"}
    assert merged([("etc/passwd", "file", X86), ("localetc", "sym", "/etc")], [("localetc/.wh.passwd", "file", b"")]) \
        == {}
    # a real ``bin/`` replaces a ``bin -> usr/bin`` symlink
    assert merged([("usr/bin", "dir", b""), ("bin", "sym", "usr/bin")], [("bin", "dir", b""), ("bin/a", "file", X86)]) \
        == {"/bin/a": "x86-64"}
    # a symlink loop is not followed forever (ELOOP)
    for entry in (("a/.wh.x", "file", b""), ("a/x", "file", X86), ("a/x", "dir", b"")):
        with pytest.raises(InvalidLayer, match="symbolic links"):
            merged([("a", "sym", "b"), ("b", "sym", "a")], [entry])


@pytest.mark.parametrize("name", ["../../x", "/abs/x", "a/../../x"])
def test_traversal_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidLayer):
        merged([(name, "file", X86)])


@pytest.mark.parametrize(("pax_path", "match"), [("../x", "escapes"), ("a\x00b", "NUL")])
def test_pax_path_overrides_benign_name_and_is_checked(pax_path: str, match: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("benign")
        info.pax_headers = {"path": pax_path}
        info.size = len(X86)
        tar.addfile(info, io.BytesIO(X86))
    with pytest.raises(InvalidLayer, match=match):
        merged(buf.getvalue())


@pytest.mark.parametrize("name", [".wh..", ".wh...", "etc/.wh..", ".wh.", "etc/.wh."])
def test_invalid_whiteouts_are_rejected(name: str) -> None:
    with pytest.raises(InvalidLayer, match="whiteout"):
        merged([("etc/passwd", "file", b"x")], [(name, "file", b"")])


def test_corrupt_and_truncated_tars() -> None:
    data = tar_bytes([("bin/app", "file", X86 * 100)])
    with pytest.raises(InvalidLayer):
        merged(data[:1500])
    with pytest.raises(InvalidLayer):
        merged(b"\x01" * 2048)


def test_oversized_pax_header_is_refused_before_reading() -> None:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = 1 << 30  # claims 1 GiB of PAX records
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    with pytest.raises(InvalidLayer, match="metadata header"):
        merged(header + bytes(4096))


def test_plain_files_and_dirs_cost_no_memory() -> None:
    view = MergedView()
    entries: list[Entry] = [(f"d{i}/", "dir", b"") for i in range(2000)]
    entries += [(f"d{i % 100}/f{i}", "file", b"") for i in range(3000)]
    view.apply(io.BytesIO(tar_bytes(entries)), 0)
    assert view._nodes == 0 and not view._root.children


def test_entry_and_node_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    from polyarch.errors import LimitExceeded
    from polyarch.verify import fs

    monkeypatch.setattr(fs, "MAX_ENTRIES", 100)
    with pytest.raises(LimitExceeded, match="more than 100 entries"):
        merged([(f"f{i}", "file", b"") for i in range(101)])
    monkeypatch.setattr(fs, "MAX_ENTRIES", 10_000)
    monkeypatch.setattr(fs, "MAX_NODES", 50)
    with pytest.raises(LimitExceeded, match="more than 50"):
        merged([(f"l{i}", "sym", "x") for i in range(51)])
