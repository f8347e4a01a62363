"""Names that are not UTF-8 (RELIABILITY T8: kept as bytes through ``surrogateescape``) in cache keys and layers.

Property: the key functions accept every name a tar or a directory can hold and give distinct keys to distinct
names (``key_json`` is injective); end to end: ``ADD local.tar`` and ``COPY`` of such names build, and the layer
holds the exact bytes.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyarch.errors import InvalidManifest
from polyarch.oci.jsonutil import canonical_json, key_json
from polyarch.solver import cachekey
from polyarch.solver.copylayer import Entry, content_key

from .conftest import build, images_of, layer_members

# bytes of a path component: anything but NUL and '/', invalid UTF-8 (lone continuation bytes, overlongs,
# encoded surrogates) drawn often
_BYTES = st.one_of(st.binary(min_size=1, max_size=12),
                   st.lists(st.sampled_from([b"\xe9", b"\xff", b"\x80", b"\xed\xb3\xa9", b"\xc0\xaf", b"a", b"\xc3\xa9",
                                             b"\\", b'"', b"\x7f", b"\n"]), min_size=1, max_size=6).map(b"".join))
NAMES = _BYTES.map(lambda b: b.replace(b"\0", b"a").replace(b"/", b"b")).filter(lambda b: b not in (b".", b".."))


def _entry(name: bytes) -> Entry:
    return Entry(os.fsdecode(name), "symlink", 0o777, 0, 0, linkname=os.fsdecode(name))


@settings(max_examples=200, deadline=None)
@given(NAMES, NAMES)
def test_keys_of_any_names_are_lossless(a: bytes, b: bytes) -> None:
    ea, eb = _entry(a), _entry(b)
    rows = [[e.rel, e.kind, e.mode, e.uid, e.gid, e.host, e.linkname, e.size, e.mtime] for e in (ea,)]
    ka, kb = cachekey.entries_key(rows, None, "gzip"), cachekey.entries_key(
        [[eb.rel, eb.kind, eb.mode, eb.uid, eb.gid, eb.host, eb.linkname, eb.size, eb.mtime]], None, "gzip")
    assert (ka == kb) == (a == b)
    assert (content_key([ea], lambda *_: "") == content_key([eb], lambda *_: "")) == (a == b)
    assert (cachekey.key_of({"path": ea.rel}) == cachekey.key_of({"path": eb.rel})) == (a == b)
    # lossless: the key bytes give back the very name, and so its bytes
    back = json.loads(key_json([ea.rel]).decode("utf-8", "surrogatepass"))
    assert os.fsencode(back[0]) == a


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_key_json_is_canonical_json_for_valid_text(text: str) -> None:
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        with pytest.raises(InvalidManifest):
            canonical_json({"k": [text]})
    else:
        assert key_json({"k": [text]}) == canonical_json({"k": [text]})


def test_add_local_tar_and_copy_keep_non_utf8_names(store_root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    names = [b"caf\xe9-latin1", b"\xff\xfe", b"ok-\xc3\xa9", b"\xed\xb3\xa9-encoded-surrogate"]
    with tarfile.open(ctx / "local.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        for n in names:
            info = tarfile.TarInfo(os.fsdecode(b"tar/" + n))
            info.size = len(n)
            tar.addfile(info, io.BytesIO(n))
    (ctx / "files").mkdir()
    for n in names:
        (ctx / "files").joinpath(os.fsdecode(n)).write_bytes(n)
    (ctx / "Dockerfile").write_text("FROM base/busybox:1\nADD local.tar /\nCOPY files/ /copied/\n")
    build(store_root, ctx, "--platform", "linux/amd64,linux/arm64", "-t", "names:1", "--load")
    for img in images_of(store_root, "names:1"):
        added = layer_members(store_root, img, -2)
        copied = layer_members(store_root, img, -1)
        assert {os.fsencode(m) for m in added} >= {b"tar/" + n for n in names}
        assert {os.fsencode(m) for m in copied} >= {b"copied/" + n for n in names}
