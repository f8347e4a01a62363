"""Fixtures of the hostile-input battery: a world per test (store, build context, output dir, TMPDIR, and a
sentinel directory beside them that plays the host), the CLI run as a user runs it, and the checks every
hostile command must pass: the sentinel unchanged, one ``error:`` line and no traceback when it fails, and the
store as it was (no new names, nothing left in ingest, bundles, snapshot temp dirs, TMPDIR, no mount left)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import BASE_NAME
from tests.peakrss import run_peak_rss
from tests.security.hostile import BaseImage, HostileImage, base_image, oci_archive, sha256
from tests.security.sentinel import make_sentinel, snapshot

HOSTILE_NAME = "evil/img:1"
PLATFORM = "linux/amd64"
EPOCH = "1700000000"


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                out.append(point)
    return out


def _listing(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI chain ids (hex) of a list of diff_ids."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d.split(":", 1)[1] if not out else sha256(f"sha256:{out[-1]} {d}".encode()).split(":", 1)[1])
    return out


@dataclass(repr=False)
class World:
    """One test's world: everything under ``tmp``; ``sentinel`` plays the host and must never change."""

    tmp: Path
    store: Path
    ctx: Path
    out: Path
    tmpdir: Path
    sentinel: Path
    base: BaseImage
    sentinel_before: dict[str, tuple[object, ...]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"World({self.tmp})"

    def _repr_pretty_(self, p: object, cycle: bool) -> None:  # hypothesis prints falsifying examples with this
        p.text(repr(self))  # type: ignore[attr-defined]

    # --- running the CLI ---------------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full = {**os.environ, "TMPDIR": str(self.tmpdir), "SOURCE_DATE_EPOCH": EPOCH, **(env or {})}
        full.pop("POLYARCH_ROOT", None)
        full.pop("POLYARCH_DEBUG", None)
        return subprocess.run([sys.executable, "-m", "polyarch", "--root", str(self.store), *args],
                              capture_output=True, text=True, env=full, timeout=timeout, cwd=self.tmp)

    def cli_measured(self, *args: str, timeout: float = 120,
                     env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float, int]:
        """``cli`` plus the wall time in seconds and the peak RSS in bytes of the polyarch process."""
        import tempfile
        import time

        full = {**os.environ, "TMPDIR": str(self.tmpdir), "SOURCE_DATE_EPOCH": EPOCH, **(env or {})}
        full.pop("POLYARCH_ROOT", None)
        full.pop("POLYARCH_DEBUG", None)
        argv = [sys.executable, "-m", "polyarch", "--root", str(self.store), *args]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            start = time.monotonic()
            code, peak = run_peak_rss(argv, timeout=timeout, stdout=out, stderr=err, env=full, cwd=self.tmp)
            elapsed = time.monotonic() - start
            out.seek(0)
            err.seek(0)
            proc = subprocess.CompletedProcess(argv, code, out.read().decode(errors="replace"),
                                               err.read().decode(errors="replace"))
        return proc, elapsed, peak

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.cli(*args)
        assert proc.returncode == 0, f"polyarch {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def load(self, image: HostileImage, name: str = HOSTILE_NAME) -> str:
        """Put ``image`` into the store under ``name`` with ``polyarch load`` (blobs only: nothing is applied)."""
        archive = oci_archive(image, name, self.tmp / "hostile-oci.tar")
        self.ok("load", "-i", str(archive))
        archive.unlink()
        return name

    # --- the state a hostile command must leave as it was ------------------------------------------------

    def names(self) -> set[str]:
        import json

        return {row["name"] for row in json.loads(self.ok("images", "--format", "json").stdout)}

    def leftovers(self) -> dict[str, set[str]]:
        snaps = self.store / "snapshots"
        found = {"ingest": _listing(self.store / "ingest"), "bundles": _listing(self.store / "bundles"),
                 "TMPDIR": _listing(self.tmpdir), "mounts": set(_mounts_under(self.tmp))}
        for driver in _listing(snaps):
            for sub in ("tmp", "active"):
                found[f"snapshots/{driver}/{sub}"] = _listing(snaps / driver / sub)
        return found

    def blobs(self) -> set[str]:
        """Every blob file in the store (``alg/hex``)."""
        top = self.store / "blobs"
        return {f"{alg.name}/{b.name}" for alg in top.iterdir() for b in alg.iterdir()} if top.exists() else set()

    def snapshot_dirs(self) -> set[str]:
        snaps = self.store / "snapshots"
        return {name for driver in _listing(snaps) for name in _listing(snaps / driver)}


@pytest.fixture(scope="session")
def base_amd64(base_root: Path) -> BaseImage:
    return base_image(base_root, BASE_NAME)


@pytest.fixture
def world(base_root: Path, base_amd64: BaseImage, tmp_path: Path) -> Iterator[World]:
    """A fresh store holding the busybox base, empty context/output/TMPDIR dirs and the sentinel; after the test
    the sentinel must be byte-identical and no mount may be left under the test's directory."""
    store = tmp_path / "store"
    shutil.copytree(base_root, store, ignore=shutil.ignore_patterns(".complete", "ingest"))
    (store / "ingest").mkdir(exist_ok=True)
    w = World(tmp=tmp_path, store=store, ctx=tmp_path / "ctx", out=tmp_path / "out", tmpdir=tmp_path / "tmpdir",
              sentinel=make_sentinel(tmp_path / "sentinel"), base=base_amd64)
    w.ctx.mkdir()
    w.tmpdir.mkdir()
    w.sentinel_before = snapshot(w.sentinel)
    yield w
    assert snapshot(w.sentinel) == w.sentinel_before, "the sentinel directory (the 'host') was changed"
    left = _mounts_under(tmp_path)
    for point in sorted(left, key=len, reverse=True):  # leave the machine usable for the next test
        subprocess.run(["umount", "-l", point], check=False)
    assert not left, f"mounts left behind: {left}"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_clean_failure(proc: subprocess.CompletedProcess[str]) -> None:
    """A rejected hostile input: non-zero exit, exactly one ``error:`` line, no traceback."""
    assert proc.returncode != 0, f"hostile input was accepted:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(error_lines(proc.stderr)) == 1, f"expected one error: line:\n{proc.stderr}"
    assert "internal error" not in proc.stderr, proc.stderr
