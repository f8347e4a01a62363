"""Store permissions (issue 13 item 4, the class of CVE-2021-41091): extracted image trees hold setuid binaries,
so no other local user may reach into the store. Checked through the real CLI (``import`` then ``build`` with a
RUN and a cache mount) on a store whose parent any user can traverse, with ``setpriv`` as ``nobody``.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyarch.content.store import ContentStore
from tests.conftest import run_cli
from tests.worker.conftest import have_runc, is_root

pytestmark = [pytest.mark.root, pytest.mark.skipif(not is_root() or not have_runc() or not shutil.which("setpriv"),
                                                   reason="needs root, runc and setpriv")]

PRIVATE = ["", "ingest", "snapshots", "snapshots/overlay", "snapshots/overlay/tmp", "snapshots/overlay/active",
           "bundles", "runc-state", "cache-mounts"]


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A 0755 directory under /var/tmp: unlike pytest's tmp dirs (0700), other users can traverse it."""
    path = Path(tempfile.mkdtemp(prefix="polyarch-perms-", dir="/var/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def suid_tar(busybox: Path, dest: Path) -> Path:
    """The busybox rootfs plus ``/id``: a setuid-root copy of the busybox binary (its ``id`` applet)."""
    with tarfile.open(busybox) as src, tarfile.open(dest, "w") as out:
        for member in src:
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        data = src.extractfile("bin/busybox").read()  # type: ignore[union-attr]
    info = tarfile.TarInfo("id")
    info.size, info.mode, info.uid, info.gid = len(data), 0o4755, 0, 0
    with tarfile.open(dest, "a") as out:
        out.addfile(info, io.BytesIO(data))
    return dest


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as nobody. Through a shell: setpriv keeps root's capabilities up to its own execve (the
    kernel drops them there), so the path of the program it execs is looked up with CAP_DAC_OVERRIDE."""
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                           "/bin/sh", "-c", 'exec "$@"', "sh", *argv], capture_output=True, text=True, timeout=60)


def setuid_files(root: Path) -> list[Path]:
    found = []
    for dirpath, _dirs, files in os.walk(root / "snapshots"):
        for name in files:
            path = Path(dirpath) / name
            if os.lstat(path).st_mode & stat.S_ISUID:
                found.append(path)
    return found


def assert_private(root: Path) -> None:
    modes = {d: oct(stat.S_IMODE(os.stat(root / d).st_mode)) for d in PRIVATE}
    assert modes == dict.fromkeys(PRIVATE, "0o700")
    for path in setuid_files(root):
        proc = as_nobody(os.fspath(path))
        assert proc.returncode != 0 and "Permission denied" in proc.stderr, (path, proc)
        assert as_nobody("test", "-e", os.fspath(path)).returncode == 1


def test_fresh_and_existing_store_are_private(public_dir: Path, busybox_tars: dict[str, Path]) -> None:
    root = public_dir / "store"
    tar = suid_tar(busybox_tars["linux/amd64"], public_dir / "suid.tar")
    run_cli("import", "-t", "suid/img:1", "--platform", f"linux/amd64={tar}", root=root)
    ctx = public_dir / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM suid/img:1\n"
                                    "RUN --mount=type=cache,target=/c mkdir /made && cp /bin/busybox /made/id && chmod 4755 /made/id\n")
    run_cli("build", os.fspath(ctx), "--platform", "linux/amd64", "-t", "suid/made:1", "--load", root=root)
    suid = setuid_files(root)
    # extracted from the image, committed by the RUN
    base = root / "snapshots" / "overlay"
    assert sorted(os.fspath(p.relative_to(base)).split("/", 1)[1] for p in suid) == ["id", "made/id"]
    assert_private(root)

    # a store made by an older polyarch: everything 0755, the setuid binaries reachable by anyone
    for d in PRIVATE:
        os.chmod(root / d, 0o755)
    proc = as_nobody(os.fspath(suid[0]))
    assert proc.returncode == 0 and proc.stdout.startswith("uid=65534"), proc.stderr
    run_cli("images", root=root)  # any command that opens the store closes the root
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert as_nobody(os.fspath(suid[0])).returncode != 0
    run_cli("build", os.fspath(ctx), "--platform", "linux/amd64", "--no-cache", root=root)  # one with a RUN
    assert_private(root)


def test_other_layouts_keep_their_modes(tmp_path: Path) -> None:
    """Only the store is private: an OCI layout written for the user (``-o type=oci,tar=false``) or read with
    ``create=False`` keeps the mode it has."""
    layout = tmp_path / "layout"
    layout.mkdir(mode=0o755)
    os.chmod(layout, 0o755)
    ContentStore(layout)
    ContentStore(layout, create=False)
    assert stat.S_IMODE(os.stat(layout).st_mode) == 0o755
