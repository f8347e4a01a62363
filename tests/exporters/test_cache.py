"""``--cache-to``/``--cache-from`` (``polyarch.exporters.cache``): the build cache as an OCI artifact in a local
layout or a registry, exported by one build and imported by a fresh store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from polyarch.errors import UsageError
from polyarch.exporters.cache import LocalCache, RegistryCache, location, parse_cache_spec
from tests.pipeline.conftest import build, by_name

TWO = "linux/amd64,linux/arm64"


def test_cache_export_and_import_local_and_registry(base_root: Path, store_root: Path, ctx: Path, tmp_path: Path,
                                                    registry: str) -> None:
    (ctx / "Dockerfile").write_text("FROM base/busybox:1 AS tools\nCOPY app.sh /tools/\n"
                                    "FROM base/busybox:1\nWORKDIR /srv\nCOPY --from=tools /tools/app.sh ./\n")
    cache_dir = tmp_path / "cache"
    first = build(store_root, ctx, "--platform", TWO, "--iidfile", str(tmp_path / "iid1"),
                  "--cache-to", f"type=local,dest={cache_dir},mode=max",
                  "--cache-to", f"type=registry,ref={registry}/cache/app:buildcache")
    assert by_name(first.stderr, "COPY --from=tools") == ["DONE"] * 2
    for n, source in enumerate([f"type=local,src={cache_dir}", f"{registry}/cache/app:buildcache"]):
        fresh = tmp_path / f"fresh{n}"
        shutil.copytree(base_root, fresh, ignore=shutil.ignore_patterns(".complete", "ingest", "buildcache.db*"))
        again = build(fresh, ctx, "--platform", TWO, "--cache-from", source, "--iidfile", str(tmp_path / "iid2"))
        for needle in ("COPY app.sh", "WORKDIR /srv", "COPY --from=tools"):
            assert by_name(again.stderr, needle) == ["CACHED"] * 2, again.stderr
        assert (tmp_path / "iid1").read_text() == (tmp_path / "iid2").read_text()
    # a cache source that does not exist yet is a warning, not an error (the first CI run)
    first_run = build(store_root, ctx, "--cache-from", f"type=local,src={tmp_path / 'none'}")
    assert f"WARNING: cache import from type=local:{tmp_path / 'none'} skipped" in first_run.stderr
    bad = build(store_root, ctx, "--cache-to", "type=gha", check=False)
    assert bad.returncode == 2 and "unsupported --cache-to type" in bad.stderr


def test_cache_locations_receive_their_client_factory() -> None:
    def factory():  # type: ignore[no-untyped-def]
        raise AssertionError("not called while resolving a location")

    assert location(parse_cache_spec("type=local,dest=/c,tag=t", export=True), None) == LocalCache(Path("/c"), "t")
    remote = location(parse_cache_spec("r.example/app:cache", export=False), factory)
    assert remote == RegistryCache("r.example/app:cache", factory)
    with pytest.raises(UsageError, match="type=inline is not supported"):
        parse_cache_spec("type=inline", export=True)
    with pytest.raises(UsageError, match="ignore-error"):
        parse_cache_spec("type=local,dest=/c,ignore-error=maybe", export=True)
    assert parse_cache_spec("type=local,dest=/c,ignore-error=true", export=True).ignore_error
    with pytest.raises(UsageError, match="needs a registry client"):
        location(parse_cache_spec("type=registry,ref=r.example/app:cache", export=True), None)
