"""Layer bytes are part of the contract: the same tree gives the same layer digest in every polyarch version.

A fixed tree with every kind of entry (sizes around the 512-byte block, the 1 MiB batch and the 4 MiB piece,
hardlinks, long and non-UTF-8 names, long link targets, ids beyond octal range, xattrs, fifos, devices, overlay
whiteouts and opaque dirs, an excluded path) is written by write_tree, write_upper and write_diff; the sha256 of
each tar and of the sequence of write sizes handed to the output (gzip output depends on those boundaries) must
equal the values recorded when the format was fixed. Changing them breaks every cache key: do it deliberately.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path

import pytest

from polyarch.worker.diff import write_diff, write_tree, write_upper
from tests.worker.conftest import needs_root

EPOCH = 1_650_000_000

pytestmark = needs_root


class Recorder(io.RawIOBase):
    """Keeps the bytes and the size of every write."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.sizes: list[int] = []

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        view = memoryview(b)  # type: ignore[arg-type]
        self.data += view
        self.sizes.append(len(view))
        return len(view)

    def digests(self) -> tuple[str, str]:
        return (hashlib.sha256(self.data).hexdigest()[:16],
                hashlib.sha256(",".join(map(str, self.sizes)).encode()).hexdigest()[:16])


def _file(path: Path, data: bytes, mode: int = 0o644, owner: tuple[int, int] = (0, 0), mtime: int = 1_600_000_000
          ) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)
    os.chown(path, *owner)
    os.utime(path, (mtime, mtime))


def build(root: Path, rnd: random.Random) -> None:
    """The fixed tree. Directory mtimes are set last (creating children changes them)."""
    (root / "bin").mkdir(parents=True)
    (root / "data" / "deep" / "er").mkdir(parents=True)
    (root / "etc").mkdir()
    for i, size in enumerate((0, 1, 511, 512, 513, 70_000, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 5 << 20)):
        _file(root / "data" / f"f{i:02}", rnd.randbytes(size), mtime=1_600_000_000 + i)
    for i in range(300):  # enough small files to cross several 1 MiB batches
        _file(root / "data" / "deep" / f"s{i:03}", rnd.randbytes(rnd.randrange(0, 9000)), mode=0o600 + (i % 3),
              owner=(i % 5, i % 7), mtime=1_600_000_000 + i % 11)
    _file(root / "data" / "deep" / "er" / "big", rnd.randbytes(9 << 20), mtime=EPOCH + 10_000)  # clamped
    _file(root / "bin" / "tool", b"\x7fELF" + rnd.randbytes(3000), mode=0o4755, owner=(7, 8))
    os.link(root / "bin" / "tool", root / "bin" / "z-hard")
    os.setxattr(root / "bin" / "tool", "security.capability",
                bytes.fromhex("0100000200200000000000000000000000000000"))
    os.setxattr(root / "etc", "user.dir", b"attr")
    _file(root / "etc" / "x", b"x", owner=(3_000_000, 9_000_000))  # ids beyond ustar's octal range
    os.setxattr(root / "etc" / "x", "user.k", b"v\x00w")
    os.symlink("/" + "long-target/" * 12, root / "etc" / "link")
    os.symlink("x", root / "etc" / "short")
    os.mkfifo(root / "etc" / "fifo")
    os.mknod(root / "etc" / "null", 0o20666, os.makedev(1, 3))
    _file(root / "etc" / ("n" * 120), b"long name")
    _file(root / "etc" / "caf\u00e9", b"utf-8 name")
    _file(Path(os.fsdecode(os.path.join(os.fsencode(root / "etc"), b"raw\xff"))), b"not utf-8")
    _file(root / "skip-me", b"excluded")
    for name in ("link", "short", "fifo", "null"):
        os.utime(root / "etc" / name, (1_600_000_400, 1_600_000_400), follow_symlinks=False)
    for path in sorted(root.rglob("*"), key=lambda p: -len(p.parts)):
        if path.is_dir() and not path.is_symlink():
            os.utime(path, (1_600_000_500, 1_600_000_500))


def overlay_marks(root: Path) -> None:
    """What overlayfs leaves in an upper dir: a 0:0 char device per deleted name, an opaque dir."""
    os.mknod(root / "gone", 0o20000, os.makedev(0, 0))
    (root / "opaque").mkdir()
    _file(root / "opaque" / "kept", b"new")
    os.setxattr(root / "opaque", "trusted.overlay.opaque", b"y")
    os.utime(root / "opaque", (1_600_000_500, 1_600_000_500))


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("golden")
    lower, upper, changed = base / "lower", base / "upper", base / "changed"
    for root in (lower, upper, changed):
        root.mkdir()
        build(root, random.Random(7))
        os.utime(root, (1_600_000_500, 1_600_000_500))
    overlay_marks(upper)
    # ``changed`` is ``lower`` after a step: one file rewritten, one deleted, one type change, one new dir.
    _file(changed / "data" / "f03", b"rewritten", mtime=1_600_009_999)
    (changed / "data" / "f04").unlink()
    (changed / "etc" / "short").unlink()
    (changed / "etc" / "short").mkdir()
    (changed / "new" / "sub").mkdir(parents=True)
    _file(changed / "new" / "sub" / "file", b"n")
    for path in (changed / "new" / "sub", changed / "new", changed / "etc" / "short", changed / "data", changed / "etc"):
        os.utime(path, (1_600_000_600, 1_600_000_600))
    return lower, upper, changed


EXCLUDE = frozenset({"skip-me"})
GOLDEN = {
    "tree": ("6e04fee101418ec4", "4cfa05cc1d6fef77"),
    "upper": ("2e1a1a7d42eb7be1", "21f72a4d4b70c552"),
    "diff": ("32982ae19b1aaef5", "ed6d0c40cf19a7aa"),
}


@pytest.mark.parametrize("threaded", [False, True])
def test_layer_bytes_and_boundaries_are_stable(trees: tuple[Path, Path, Path], threaded: bool) -> None:
    lower, upper, changed = trees
    got = {}
    for name, call in (
        ("tree", lambda out: write_tree(lower, out, epoch=EPOCH, exclude=EXCLUDE, threaded=threaded)),
        ("upper", lambda out: write_upper(upper, out, epoch=EPOCH, exclude=EXCLUDE, threaded=threaded)),
        ("diff", lambda out: write_diff(lower, changed, out, epoch=EPOCH, exclude=EXCLUDE, threaded=threaded)),
    ):
        rec = Recorder()
        call(rec)
        got[name] = rec.digests()
    assert got == GOLDEN
