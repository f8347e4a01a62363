#!/usr/bin/env python3
"""Make small busybox root filesystems for several architectures from Debian's busybox-static packages.

    scripts/busybox_rootfs.py --out DIR [amd64 arm64 armhf ...]

Writes DIR/rootfs-<debarch>.tar for each architecture: /bin/busybox, a symlink per applet (the list comes from
the host's busybox binary, identical across architectures of one Debian version), /etc/passwd, /etc/group,
/tmp, /root. Needs `dpkg --add-architecture` for foreign architectures and `apt-get update` done before.
Deterministic: entries sorted, mtime fixed, uid/gid 0.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"
MTIME = 1_700_000_000


def download(debarch: str, workdir: Path) -> Path:
    existing = sorted(workdir.glob(f"busybox-static_*_{debarch}.deb"))
    if existing:
        return existing[-1]
    result = subprocess.run(["apt-get", "download", f"busybox-static:{debarch}"], cwd=workdir,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: apt-get download busybox-static:{debarch} failed: {result.stderr.strip()}\n"
                 f"hint: run 'dpkg --add-architecture {debarch} && apt-get update' first")
    return sorted(workdir.glob(f"busybox-static_*_{debarch}.deb"))[-1]


def applets(busybox: Path) -> list[str]:
    """Applet install paths (``bin/sh``, ``usr/bin/awk``…) from a busybox binary this host can run."""
    out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True).stdout
    return sorted({line.strip() for line in out.splitlines() if line.strip() and line.strip() != "bin/busybox"})


def make_rootfs(deb: Path, applet_paths: list[str], out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        binary = (Path(tmp) / "bin" / "busybox").read_bytes()
    entries: dict[str, tuple[str, bytes | str, int]] = {}
    dirs = {"bin", "etc", "root", "tmp", "usr", "usr/bin", "usr/sbin", "sbin", "var", "proc", "sys", "dev"}
    for path in applet_paths:
        parent = path.rpartition("/")[0]
        while parent:
            dirs.add(parent)
            parent = parent.rpartition("/")[0]
        entries[path] = ("sym", "/bin/busybox", 0o777)
    for d in dirs:
        entries[d] = ("dir", b"", 0o1777 if d == "tmp" else (0o700 if d == "root" else 0o755))
    entries["bin/busybox"] = ("file", binary, 0o755)
    entries["etc/passwd"] = ("file", PASSWD, 0o644)
    entries["etc/group"] = ("file", GROUP, 0o644)
    tmp_out = out.with_suffix(".tmp")
    with tarfile.open(tmp_out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            kind, data, mode = entries[name]
            info = tarfile.TarInfo(name)
            info.mtime, info.mode, info.uid, info.gid = MTIME, mode, 0, 0
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tar.addfile(info)
            else:
                assert isinstance(data, bytes)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    tmp_out.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("arches", nargs="*", default=["amd64", "arm64", "armhf"])
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    debs = {arch: download(arch, args.out) for arch in args.arches}
    host_deb = debs.get("amd64") or download("amd64", args.out)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(host_deb), tmp], check=True)
        names = applets(Path(tmp) / "bin" / "busybox")
    for arch, deb in debs.items():
        target = args.out / f"rootfs-{arch}.tar"
        if not target.exists():
            make_rootfs(deb, names, target)
        print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
