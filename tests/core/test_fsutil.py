"""polyarch.fsutil: atomic file replacement, directory fsync, private directories, writeback hint."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest

from polyarch import fsutil
from polyarch.fsutil import atomic_file, atomic_write, fsync_dir, private_dir, start_writeback

SRC = Path(fsutil.__file__)


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    target.write_bytes(b"old")
    atomic_write(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


def test_atomic_file_is_invisible_until_the_block_ends(tmp_path: Path) -> None:
    target = tmp_path / "out.tar"
    with atomic_file(target) as f:
        f.write(b"part one")
        assert not target.exists()
        f.write(b", part two")
    assert target.read_bytes() == b"part one, part two"


def test_atomic_file_failure_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_bytes(b"keep me")
    with pytest.raises(RuntimeError), atomic_file(target) as f:
        f.write(b"half written")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_atomic_file_in_a_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), atomic_file(tmp_path / "missing" / "x"):
        pass


def test_fsync_dir_syncs_a_directory_and_ignores_a_missing_one(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
    fsync_dir(tmp_path / "does-not-exist")
    fsync_dir(Path("/dev/null"))  # not a directory: ignored


def test_private_dir_creates_0700_with_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    private_dir(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700
    assert target.parent.is_dir()


def test_private_dir_tightens_an_open_directory_and_leaves_a_closed_one(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o755)
    private_dir(loose)
    assert stat.S_IMODE(os.stat(loose).st_mode) == 0o700
    tight = tmp_path / "tight"
    tight.mkdir()
    os.chmod(tight, 0o500)
    private_dir(tight)
    assert stat.S_IMODE(os.stat(tight).st_mode) == 0o500


def test_start_writeback_accepts_a_written_range(tmp_path: Path) -> None:
    with open(tmp_path / "f", "wb", buffering=0) as f:
        f.write(b"x" * 8192)
        start_writeback(f.fileno(), 0, 8192)
    assert (tmp_path / "f").stat().st_size == 8192


def test_fsutil_imports_nothing_from_polyarch() -> None:
    """Any layer may use it: it must sit below all of them."""
    tree = ast.parse(SRC.read_text(encoding="utf-8"))
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "." for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert [m for m in imported if m.startswith(("polyarch", "."))] == []


def test_content_store_keeps_no_copy_of_the_file_helpers() -> None:
    from polyarch.content import store

    tree = ast.parse(Path(store.__file__).read_text(encoding="utf-8"))
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert defined & {"atomic_file", "atomic_write", "fsync_dir", "private_dir", "start_writeback"} == set()


def test_lock_held_sees_shared_and_exclusive_locks_of_others(tmp_path: Path) -> None:
    import fcntl

    from polyarch.fsutil import lock_held

    path = tmp_path / "owner.lock"
    assert lock_held(path) is None
    path.write_bytes(b"")
    assert lock_held(path) is False
    for mode in (fcntl.LOCK_SH, fcntl.LOCK_EX):
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, mode)
            assert lock_held(path) is True
        finally:
            os.close(fd)
        assert lock_held(path) is False
