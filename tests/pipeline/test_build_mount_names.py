"""``polyarch build`` with RUN mounts aimed at the host (issue 13 items 3 and 11), through the real CLI and runc.

- item 3: an rw bind of a context directory whose name holds ``:`` ``,`` or ``\\`` shows that directory only; an
  overlay option string built from the name would add the host sentinel as a lower layer.
- item 11: a RUN that swaps its mount stubs' parent for a symlink to the host sentinel (holding an empty file and
  an empty dir named like the stubs) does not make the cleanup delete them.

The sentinel (outside store and context) must have the same tree, bytes and mtimes after the build.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from .conftest import build, needs_run, write_tree

pytestmark = [pytest.mark.root]
SECRET = "host-secret-51c9"
BS = "\\"  # the Dockerfile parser unescapes a backslash in a --mount flag


def _picture(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames]:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            data = Path(path).read_bytes() if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_mtime_ns, data)
    return out


@pytest.fixture(name="sentinel")
def sentinel_fixture(tmp_path: Path):  # type: ignore[no-untyped-def]
    top = tmp_path / "host" / "sentinel-XYZ"
    (top / "b" / "stub").mkdir(parents=True)
    (top / "b" / "file").write_bytes(b"")
    (top / "secret.txt").write_text(SECRET + "\n")
    before = _picture(top)
    yield top
    assert _picture(top) == before, "the host sentinel directory was changed"


@needs_run("linux/amd64")
@pytest.mark.parametrize("template,decoy", [
    ("d:{s}", "d"),                 # lowerdir list separator
    ("d\\\\:{s}", "d\\"),           # escaped backslash, then a separator
    ("d=e:{s}", "d=e"),             # '=' and a separator
])
def test_rw_bind_of_context_dir_with_separators(store_root: Path, tmp_path: Path, sentinel: Path, template: str,
                                                decoy: str) -> None:
    """(A ',' in a source cannot be written in a --mount flag of polyarch's Dockerfile parser; the worker tests
    cover it.)"""
    name = template.format(s=sentinel)
    ctx = write_tree(tmp_path / "ctx", {
        "Dockerfile": f"FROM base/busybox:1\nRUN --mount=type=bind,source={name.replace(BS, BS * 2)},target=/m,rw "
                      "ls -a /m; cat /m/secret.txt; echo w > /m/new; echo end\n",
    })
    Path(f"{ctx}/{name}").mkdir(parents=True)
    Path(f"{ctx}/{name}/intended").write_text("ok\n")
    Path(f"{ctx}/{decoy}").mkdir(parents=True, exist_ok=True)
    proc = build(store_root, ctx, "--platform", "linux/amd64", "--no-cache", check=False)
    assert proc.returncode == 0, proc.stderr
    output = [m.group(1) for m in re.finditer(r"^#\d+ \d+\.\d+ (.*)$", proc.stderr, re.M)]
    assert sorted(output) == sorted([".", "..", "intended", "cat: can't open '/m/secret.txt': No such file or directory",
                                     "end"])
    assert SECRET not in proc.stderr
    assert sorted(os.listdir(f"{ctx}/{name}")) == ["intended"]


@needs_run("linux/amd64")
def test_run_swapping_stub_parent_for_host_symlink(store_root: Path, tmp_path: Path, sentinel: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {
        "Dockerfile": "FROM base/busybox:1\n"
                      "RUN --mount=type=tmpfs,target=/a/b/stub --mount=type=bind,source=f,target=/a/b/file "
                      f"mv /a /gone && ln -s {sentinel} /a && echo swapped\n",
        "f": "",
    })
    proc = build(store_root, ctx, "--platform", "linux/amd64", "--no-cache", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "swapped" in proc.stderr
