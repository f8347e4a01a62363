"""rooted.RootDir: directories opened by descriptor with symlinks resolved inside the root, the same with openat2
and with the O_NOFOLLOW walk that replaces it where the kernel lacks openat2, and the same as secure_join."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest

from polyarch.errors import InvalidLayer
from polyarch.worker import rooted
from polyarch.worker.rooted import RootDir
from polyarch.worker.securepath import secure_join


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("x")
    (tmp_path / "outside").mkdir()
    links = {"bin": "usr/bin", "abs": "/usr", "up": "../../..", "slash": "/", "host": str(tmp_path / "outside"),
             "rel-out": "../outside", "dangling": "nowhere/deep", "loop": "loop", "file": "etc/passwd",
             "usr/bin/back": "../../etc", "chain": "bin/back"}
    for name, target in links.items():
        os.symlink(target, root / name)
    return root


PATHS = ["usr", "bin", "abs/bin", "up", "up/etc", "slash/usr/bin", "host", "rel-out", "usr/bin/back", "chain",
         "bin/back", "etc", "missing", "missing/deeper", "dangling"]


@pytest.mark.parametrize("use_openat2", [True, False], ids=["openat2", "walk"])
@pytest.mark.parametrize("path", PATHS)
def test_open_dir_matches_secure_join(tree: Path, path: str, use_openat2: bool) -> None:
    assert rooted._OPENAT2.available, "this kernel has openat2 (Linux 5.6+)"
    root = RootDir(tree, use_openat2=use_openat2)
    try:
        fd = root.open_dir(tuple(path.split("/")))
        expected = secure_join(tree, path)
        if not os.path.isdir(expected) or os.path.islink(expected):
            assert fd is None
            return
        assert fd is not None
        try:
            assert os.readlink(f"/proc/self/fd/{fd}") == expected
            assert root.relpath(fd) == ("" if expected == str(tree) else os.path.relpath(expected, tree))
        finally:
            os.close(fd)
    finally:
        root.close()


@pytest.mark.parametrize("use_openat2", [True, False], ids=["openat2", "walk"])
def test_create_makes_missing_directories_inside(tree: Path, use_openat2: bool) -> None:
    root = RootDir(tree, use_openat2=use_openat2)
    try:
        for path, made in (("host/new", f"{str(tree.parent / 'outside').lstrip('/')}/new"),
                           ("up/a/b", "a/b"), ("dangling/x", "nowhere/deep/x"), ("slash/tmp/t", "tmp/t")):
            fd = root.open_dir(tuple(path.split("/")), create=True)
            assert fd is not None
            os.close(fd)
            assert (tree / made).is_dir() and not (tree / made).is_symlink()
        assert os.listdir(tree.parent / "outside") == []
    finally:
        root.close()


@pytest.mark.parametrize("use_openat2", [True, False], ids=["openat2", "walk"])
def test_errors(tree: Path, use_openat2: bool) -> None:
    root = RootDir(tree, use_openat2=use_openat2)
    try:
        with pytest.raises(NotADirectoryError):
            root.open_dir(("file", "x"), create=True)
        with pytest.raises(NotADirectoryError):
            root.open_dir(("etc", "passwd"))
        with pytest.raises(InvalidLayer):
            root.open_dir(("loop", "x"), create=True)
    finally:
        root.close()


def test_walk_is_used_when_openat2_is_missing(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSYS turns openat2 off for good and the walk answers the same."""
    def enosys(*_args: object) -> int:
        ctypes.set_errno(errno.ENOSYS)
        return -1

    monkeypatch.setattr(rooted._OPENAT2, "_syscall", enosys)
    monkeypatch.setattr(rooted._OPENAT2, "available", True)
    root = RootDir(tree)
    try:
        fd = root.open_dir(("bin",))
        assert fd is not None
        assert os.readlink(f"/proc/self/fd/{fd}") == str(tree / "usr" / "bin")
        os.close(fd)
        assert not rooted._OPENAT2.available
    finally:
        root.close()

