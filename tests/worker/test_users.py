"""USER resolution through the rootfs's own /etc/passwd and /etc/group."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyarch.errors import BuildError
from polyarch.worker.users import resolve_user


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1001:\nwheel:x:10:root,app\ndocker:x:999:app\n")
    return root


def test_names_and_numbers(rootfs: Path) -> None:
    assert resolve_user(rootfs, "") == resolve_user(rootfs, "root")
    u = resolve_user(rootfs, "app")
    assert (u.uid, u.gid, u.additional_gids, u.home) == (1000, 1001, (10, 999), "/home/app")
    u = resolve_user(rootfs, "app:wheel")
    assert (u.uid, u.gid, u.additional_gids) == (1000, 10, ())
    u = resolve_user(rootfs, "1000")
    assert (u.uid, u.gid, u.home) == (1000, 1001, "/home/app")
    u = resolve_user(rootfs, "4242:4343")
    assert (u.uid, u.gid, u.additional_gids, u.home) == (4242, 4343, (), "/")


def test_unknown(rootfs: Path) -> None:
    with pytest.raises(BuildError, match="unable to find user ghost"):
        resolve_user(rootfs, "ghost")
    with pytest.raises(BuildError, match="unable to find group ghosts"):
        resolve_user(rootfs, "app:ghosts")


def test_symlinked_passwd_stays_inside(rootfs: Path, tmp_path: Path) -> None:
    host = tmp_path / "host-passwd"
    host.write_text("evil:x:0:0::/:/bin/sh\n")
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").symlink_to(host)  # absolute: resolved inside the rootfs, where it is missing
    with pytest.raises(BuildError):
        resolve_user(rootfs, "evil")
