"""Property test (issue 13): no sequence of tar entries, over one to three stacked layers, changes anything outside
the root. Entries are drawn over a small alphabet of names so that they collide: directories, files, symlinks to
``/``, ``..``, ``../..``, siblings and host paths, hardlinks, whiteouts and opaque markers, with modes, owners and
mtimes that would show if they landed on the host. Beside the root: a sentinel directory (files, a symlink,
subdirectories) and host-looking targets (``etc/passwd``, ``a/``) in the temporary directory itself. After every
layer, the temporary directory, the sentinel and the host-looking targets are identical (tree, bytes, modes,
owners, mtimes, link counts), and apply either succeeded or raised InvalidLayer/LimitExceeded."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyarch.errors import InvalidLayer, LimitExceeded
from polyarch.worker import rooted
from polyarch.worker.apply import apply_layer
from tests.worker.conftest import E, make_tar

NAMES = ("a", "b", "x", "etc")
LINK_TARGETS = ("/", "..", "../..", "../../..", "a", "b/x", "../a", "/etc", "etc/passwd", "SENTINEL",
                "SENTINEL/etc", "../sentinel", "../../sentinel/etc", "HOST", "x/a")


def _paths(depth: int = 3) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(NAMES), min_size=1, max_size=depth).map("/".join)


def _entry() -> st.SearchStrategy[E]:
    mode = st.sampled_from([0o755, 0o777, 0o4755, 0o600])
    owner = st.sampled_from([0, 1234])
    mtime = st.sampled_from([1, 1_700_000_000])
    return st.one_of(
        st.builds(lambda p, m, o, t: E(p, kind="dir", mode=m, uid=o, gid=o, mtime=t), _paths(), mode, owner, mtime),
        st.builds(lambda p, m, o, t: E(p, data=b"pwned", mode=m, uid=o, gid=o, mtime=t), _paths(), mode, owner,
                  mtime),
        st.builds(lambda p, link, o: E(p, kind="symlink", link=link, uid=o, gid=o), _paths(),
                  st.sampled_from(LINK_TARGETS), owner),
        st.builds(lambda p, link: E(p, kind="link", link=link), _paths(), _paths()),
        st.builds(lambda p, m: E(p, kind="fifo", mode=m, mtime=1), _paths(), mode),
        st.builds(lambda parent, name: E("/".join([*parent, ".wh." + name])),
                  st.lists(st.sampled_from(NAMES), max_size=2), st.sampled_from((*NAMES, "passwd", "none"))),
        st.builds(lambda parent: E("/".join([*parent, ".wh..wh..opq"])),
                  st.lists(st.sampled_from(NAMES), min_size=1, max_size=2)),
    )


LAYERS = st.lists(st.lists(_entry(), min_size=1, max_size=12), min_size=1, max_size=3)


def _snapshot(tmp: Path) -> dict[str, tuple]:
    """Everything under ``tmp`` except the root's contents: type, mode, owner, link count, mtime, bytes/target."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(tmp):
        if Path(dirpath) == tmp:
            dirnames[:] = [d for d in dirnames if d != "root"]
        for name in [".", *dirnames, *filenames]:
            p = os.path.join(dirpath, name)
            st_ = os.lstat(p)
            if os.path.islink(p):
                extra: object = os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    extra = f.read()
            else:
                extra = None
            out[os.path.relpath(p, tmp)] = (st_.st_mode, st_.st_uid, st_.st_gid, st_.st_nlink, st_.st_mtime_ns, extra)
    return out


def _outside(tmp: Path) -> None:
    """The host side: a sentinel directory and host-looking targets next to the root."""
    sentinel = tmp / "sentinel"
    (sentinel / "etc" / "sub").mkdir(parents=True)
    (sentinel / "passwd").write_text("sentinel\n")
    os.chmod(sentinel / "passwd", 0o400)
    (sentinel / "etc" / "passwd").write_text("root:x:0:0\n")
    (sentinel / "etc" / "sub" / "file").write_text("deep\n")
    (sentinel / "a").mkdir()
    os.symlink("/etc/passwd", sentinel / "link")
    (tmp / "etc").mkdir()
    (tmp / "etc" / "passwd").write_text("host passwd\n")
    (tmp / "a").mkdir()
    (tmp / "a" / "b").write_text("host a/b\n")
    (tmp / "x").write_text("host x\n")


def _materialise(entry: E, tmp: Path) -> E:
    if entry.kind != "symlink":
        return entry
    link = entry.link.replace("SENTINEL", str(tmp / "sentinel")).replace("HOST", str(tmp))
    return E(entry.name, kind="symlink", link=link, uid=entry.uid, gid=entry.gid)


@pytest.mark.parametrize("resolution", ["openat2", "walk"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers=LAYERS)
def test_nothing_outside_the_root_changes(resolution: str, layers: list[list[E]]) -> None:
    saved = rooted._OPENAT2.available
    rooted._OPENAT2.available = saved and resolution == "openat2"
    try:
        with tempfile.TemporaryDirectory(prefix="polyarch-apply-prop-") as name:
            tmp = Path(name)
            (tmp / "root").mkdir()
            _outside(tmp)
            before = _snapshot(tmp)
            for layer in layers:
                blob = make_tar([_materialise(e, tmp) for e in layer])
                try:
                    apply_layer(io.BytesIO(blob), tmp / "root")
                except (InvalidLayer, LimitExceeded):
                    pass
                assert _snapshot(tmp) == before
    finally:
        rooted._OPENAT2.available = saved

