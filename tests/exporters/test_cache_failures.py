"""Cache failures through the CLI, as buildx: an unreadable ``--cache-from`` (registry down, missing directory, bad
reference, not a cache) is one warning and the build goes on; a failed ``--cache-to`` fails the build with one
``error:`` line unless it says ``ignore-error=true``; ``type=inline`` is refused, never ignored. Real Debian
docker-registry (running and stopped)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_cli
from tests.pipeline.conftest import build
from tests.registry.refregistry import RefRegistry, start_registry

NO_RETRY = {"POLYARCH_REGISTRY_RETRIES": "0"}


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RefRegistry]:
    reg = start_registry(tmp_path / "running")
    yield reg
    reg.stop()


@pytest.fixture
def stopped(tmp_path: Path) -> str:
    """host:port of a docker-registry that was started and stopped (nothing listens there any more)."""
    reg = start_registry(tmp_path / "stopped")
    reg.stop()
    return reg.host


def _lines(stderr: str, prefix: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.lower().startswith(prefix)]


def test_unreadable_cache_sources_warn_and_the_build_goes_on(store_root: Path, ctx: Path, tmp_path: Path,
                                                             running: RefRegistry, stopped: str) -> None:
    # an image that is not a build cache, in a running registry
    build(store_root, ctx, "--platform", "linux/amd64", "-o", f"type=registry,name={running.host}/plain/app:1")
    sources = {
        f"type=registry,ref={stopped}/cache/app:bc": f"type=registry:{stopped}/cache/app:bc",
        f"type=local,src={tmp_path / 'missing'}": f"type=local:{tmp_path / 'missing'}",
        "type=registry,ref=Bad::Ref": "type=registry:Bad::Ref",
        f"{running.host}/plain/app:1": f"type=registry:{running.host}/plain/app:1",
        f"{running.host}/cache/none:bc": f"type=registry:{running.host}/cache/none:bc",
    }
    args = [a for source in sources for a in ("--cache-from", source)]
    proc = build(store_root, ctx, "--platform", "linux/amd64", *args, "--iidfile", str(tmp_path / "iid"),
                 env=NO_RETRY)
    warnings = _lines(proc.stderr, "warning: cache import from")
    assert len(warnings) == len(sources), proc.stderr
    for shown, line in zip(sources.values(), warnings, strict=True):
        assert line.startswith(f"WARNING: cache import from {shown} skipped: "), line
    assert warnings[1].endswith(f"skipped: no directory {tmp_path / 'missing'}")
    assert "not a polyarch build cache" in warnings[3] and "no build cache there" in warnings[4]
    assert not _lines(proc.stderr, "error:") and (tmp_path / "iid").read_text().startswith("sha256:")


def test_a_failed_cache_export_fails_the_build_unless_ignored(store_root: Path, ctx: Path, tmp_path: Path,
                                                             running: RefRegistry, stopped: str) -> None:
    down = f"type=registry,ref={stopped}/cache/app:bc"
    failed = build(store_root, ctx, "--platform", "linux/amd64", "--cache-to", down, "--iidfile",
                   str(tmp_path / "iid1"), check=False, env=NO_RETRY)
    assert failed.returncode == 1, failed.stderr
    errors = _lines(failed.stderr, "error:")
    assert len(errors) == 1 and errors[0].startswith(
        f"error: cache export to type=registry:{stopped}/cache/app:bc failed: "), failed.stderr
    assert "Traceback" not in failed.stderr and not (tmp_path / "iid1").exists()

    ok = build(store_root, ctx, "--platform", "linux/amd64", "--cache-to", f"{down},ignore-error=true",
               "--cache-to", f"type=registry,ref={running.host}/cache/app:bc", "--iidfile", str(tmp_path / "iid2"),
               env=NO_RETRY)
    warned = _lines(ok.stderr, "warning: cache export")
    assert len(warned) == 1 and warned[0].startswith(
        f"WARNING: cache export to type=registry:{stopped}/cache/app:bc failed (ignore-error=true): "), ok.stderr
    assert not _lines(ok.stderr, "error:") and (tmp_path / "iid2").exists()
    # the destination that works still got the cache
    resp = httpx.head(f"{running.url}/v2/cache/app/manifests/bc",
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert resp.status_code == 200


@pytest.mark.parametrize("flag", ["--cache-to", "--cache-from"])
def test_inline_cache_is_refused(store_root: Path, ctx: Path, flag: str) -> None:
    proc = build(store_root, ctx, flag, "type=inline", check=False)
    assert proc.returncode == 2, proc.stderr
    errors = _lines(proc.stderr, "error:")
    assert errors == [f"error: {flag} type=inline is not supported: polyarch does not write cache metadata into "
                      f"the image config"], proc.stderr


def test_bake_refuses_inline_cache(store_root: Path, ctx: Path, tmp_path: Path) -> None:
    (tmp_path / "docker-bake.hcl").write_text(f'target "default" {{\n  context = "{ctx}"\n'
                                              f'  cache-to = ["type=inline"]\n}}\n')
    proc = run_cli("bake", "--progress", "plain", root=store_root, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        "error: --cache-to type=inline is not supported: polyarch does not write cache metadata into the image "
        "config"], proc.stderr
