#!/usr/bin/env python3
"""Make ``base/golang:1.19`` (linux/amd64) in the local store from Debian packages: busybox-static + libc6 +
golang-1.19-go + golang-1.19-src. It is the builder image of the cross-compile example: it runs on the build
platform only, and Go cross-compiles for every target platform.

    python3 examples/go-app/make_base.py [--root STORE] [--debs DIR]

Needs ``apt-get`` (Debian) to download the packages into DIR (default ~/.cache/polyarch-examples/debs) and
``dpkg-deb`` to unpack them. Deterministic: entries sorted, mtimes fixed, owned by root.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("busybox-static", "libc6", "golang-1.19-go", "golang-1.19-src")
MTIME = 1_700_000_000
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def download(debs: Path) -> list[Path]:
    debs.mkdir(parents=True, exist_ok=True)
    out = []
    for pkg in PACKAGES:
        found = sorted(debs.glob(f"{pkg}_*.deb"))
        if not found:
            subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True, capture_output=True)
            found = sorted(debs.glob(f"{pkg}_*.deb"))
        out.append(found[-1])
    return out


def rootfs(debs: list[Path], tar_path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        for d in ("tmp", "root", "etc", "proc", "sys", "dev"):
            (root / d).mkdir(exist_ok=True)
        os.chmod(root / "tmp", 0o1777)
        (root / "etc" / "passwd").write_bytes(PASSWD)
        (root / "etc" / "group").write_bytes(GROUP)
        bb = root / "bin" / "busybox"
        for applet in ("sh", "ls", "cat", "mkdir", "rm", "cp", "mv", "env", "uname", "echo", "test", "tar"):
            if not (root / "bin" / applet).exists():
                os.symlink("busybox", root / "bin" / applet)
        (root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
        os.symlink("../lib/go-1.19/bin/go", root / "usr" / "bin" / "go")
        assert bb.exists()
        with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tf:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(dirnames + filenames):
                    full = Path(dirpath) / name
                    info = tf.gettarinfo(str(full), str(full.relative_to(root)))
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mtime = MTIME
                    if info.isreg():
                        with open(full, "rb") as f:
                            tf.addfile(info, f)
                    else:
                        tf.addfile(info)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", help="polyarch store root (default: $POLYARCH_ROOT or polyarch's default)")
    ap.add_argument("--debs", default=str(Path.home() / ".cache" / "polyarch-examples" / "debs"))
    ap.add_argument("-t", "--tag", default="base/golang:1.19")
    args = ap.parse_args()
    debs = download(Path(args.debs))
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "golang-amd64.tar"
        rootfs(debs, tar)
        cmd = [sys.executable, "-m", "polyarch", *(["--root", args.root] if args.root else []), "import",
               "--platform", f"linux/amd64={tar}", "-t", args.tag]
        subprocess.run(cmd, check=True, env={**os.environ, "SOURCE_DATE_EPOCH": str(MTIME)})
    print(f"made {args.tag} (linux/amd64)")


if __name__ == "__main__":
    main()
