"""``polyarch du`` and ``polyarch prune --filter/--keep-storage/--all`` through the CLI, after real builds that
make build cache records, snapshots and cache mounts; and the gc a build runs after itself ([gc] policy)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from polyarch.content.gc import reachable
from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from tests.conftest import run_cli

from .conftest import build, needs_run, write_tree

pytestmark = [pytest.mark.root]


def dockerfile(tag: str) -> str:
    """Two RUN steps: one fills a cache mount (id=cache-TAG), one makes a layer."""
    return ("FROM base/busybox:1\n"
            f"RUN --mount=type=cache,id=cache-{tag},target=/cache head -c 40000 /dev/urandom > /cache/{tag} && echo {tag} > /m\n"
            f"RUN head -c 30000 /dev/urandom > /{tag}\n")


def du_json(root: Path, *args: str) -> dict[str, Any]:
    return json.loads(run_cli("du", "--format", "json", *args, root=root).stdout)  # type: ignore[no-any-return]


def du_sb(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def ids(doc: dict[str, Any], **match: Any) -> set[str]:
    return {r["id"] for r in doc["records"] if all(r[k] == v for k, v in match.items())}


def build_cached(root: Path, ctx_parent: Path, tag: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Build the two-step Dockerfile with no output (its results stay in the build cache only); stderr."""
    ctx = write_tree(ctx_parent / f"ctx-{tag}", {"Dockerfile": dockerfile(tag)})
    return build(root, ctx, "--platform", "linux/amd64", *args, env=env).stderr  # type: ignore[no-any-return]


def named_blobs(root: Path) -> set[str]:
    images = ImageStore(ContentStore(root))
    return {str(d) for d in reachable(images, [d for _, d in images.names()])}


@needs_run("linux/amd64")
def test_du_sizes_match_the_files_on_disk(store_root: Path, tmp_path: Path) -> None:
    build_cached(store_root, tmp_path, "a")
    doc = du_json(store_root)
    kinds = {r["kind"] for r in doc["records"]}
    assert {"result", "snapshot", "cachemount", "blob", "metadata"} <= kinds
    assert doc["total"] == du_sb(store_root)  # every byte under the root belongs to one record
    assert all(r["size"] >= 0 for r in doc["records"])
    for r in doc["records"]:
        if r["kind"] == "snapshot":
            driver = "overlay" if (store_root / "snapshots" / "overlay" / r["id"]).exists() else "copy"
            assert r["size"] == du_sb(store_root / "snapshots" / driver / r["id"])
            assert r["type"] == "regular"
        elif r["kind"] == "cachemount":
            assert r["size"] == du_sb(store_root / "cache-mounts" / r["id"]) > 40000
            assert r["type"] == "exec.cachemount" and "cache-a" in r["description"] and r["reclaimable"]
    blob_files = sum(p.stat().st_size for p in (store_root / "blobs" / "sha256").iterdir())
    assert sum(r["size"] for r in doc["records"] if r["kind"] in ("blob", "result")) == blob_files
    # the layers of the two RUN steps are build cache results no name reaches: reclaimable
    results = [r for r in doc["records"] if r["kind"] == "result" and r["size"]]
    assert len(results) == 2 and all(r["reclaimable"] for r in results)
    # the base image's blobs are in use; the build's unnamed index, manifest and config too, while young
    assert ids(doc, kind="blob", image=True) == {d[7:] for d in named_blobs(store_root)}
    young = [r for r in doc["records"] if r["kind"] == "blob" and not r["image"]]
    assert len(young) == 3 and all(r["inUse"] and r["description"] == "dangling blob" for r in young)
    table = run_cli("du", root=store_root).stdout
    assert "cache mounts" in table and "Total:" in table and "Reclaimable:" in table
    verbose = run_cli("du", "--verbose", root=store_root).stdout
    for r in doc["records"]:
        assert f"ID:\t\t{r['id']}\n" in verbose
    assert "Type:\t\texec.cachemount" in verbose and "Last used:" in verbose
    only = du_json(store_root, "--filter", "type=exec.cachemount")
    assert {r["kind"] for r in only["records"]} == {"cachemount"}


@needs_run("linux/amd64")
def test_prune_filters_remove_exactly_the_matching_records(store_root: Path, tmp_path: Path) -> None:
    build_cached(store_root, tmp_path, "old")
    old_done = time.time()
    time.sleep(5)
    start_new = time.time()
    build_cached(store_root, tmp_path, "new")
    before = du_json(store_root)
    mounts = ids(before, kind="cachemount")
    assert len(mounts) == 2
    # type: the cache mounts go, nothing else
    out = run_cli("prune", "--filter", "type=exec.cachemount", root=store_root).stdout
    assert "deleted 2 records" in out, out
    after = du_json(store_root)
    assert ids(after) == ids(before) - mounts
    assert not (store_root / "cache-mounts").exists() or not any((store_root / "cache-mounts").iterdir())
    # until: the records last used before the second build go, the second build's stay
    now = time.time()
    until = now - (old_done + start_new) / 2
    expected = {r["id"] for r in after["records"] if r["reclaimable"] and r["lastUsed"] <= now - until}
    kept_new = {r["id"] for r in after["records"] if r["lastUsed"] >= start_new}
    assert expected and kept_new
    out = run_cli("prune", "--filter", f"until={until:.3f}s", "--verbose", root=store_root).stdout
    final = du_json(store_root)
    assert ids(final) == ids(after) - expected, out
    assert kept_new <= ids(final)
    assert {r["kind"] for r in final["records"] if r["id"] in ids(after) - ids(final)} <= {"result", "snapshot",
                                                                                           "blob"}
    # the second build is still fully cached (its records were kept); the first runs again
    rebuilt = build_cached(store_root, tmp_path, "new")
    assert rebuilt.count("CACHED") >= 2, rebuilt


@needs_run("linux/amd64")
def test_keep_storage_and_all_leave_at_most_that_and_keep_what_names_use(store_root: Path, tmp_path: Path) -> None:
    build_cached(store_root, tmp_path, "a")
    ctx = write_tree(tmp_path / "named", {"Dockerfile": dockerfile("n")})
    build(store_root, ctx, "--platform", "linux/amd64", "-t", "named:1", "--load")
    build_cached(store_root, tmp_path, "b")
    before = du_json(store_root)
    in_use = sum(r["size"] for r in before["records"] if r["inUse"] and not r["image"] and r["kind"] != "metadata")
    limit = in_use + (before["buildCache"] - in_use) // 2
    assert before["buildCache"] > limit
    out = run_cli("prune", "--keep-storage", str(limit), root=store_root).stdout
    after = du_json(store_root)
    assert after["buildCache"] <= limit, out
    assert any(r["reclaimable"] for r in after["records"] if r["kind"] != "blob")  # not everything went
    named = named_blobs(store_root)
    everything = run_cli("prune", "--all", root=store_root).stdout
    assert "records" in everything
    final = du_json(store_root)
    assert not [r for r in final["records"] if r["reclaimable"] and r["kind"] != "leftover"]
    assert named_blobs(store_root) == named  # every blob a name reaches is still there
    for d in named:
        assert (store_root / "blobs" / "sha256" / d[7:]).is_file()
    run_cli("run", "--platform", "linux/amd64", "named:1", "cat", "/n", root=store_root)


@needs_run("linux/amd64")
def test_gc_after_a_build_shrinks_the_cache_to_keep_storage(store_root: Path, tmp_path: Path) -> None:
    build_cached(store_root, tmp_path, "a")
    before = du_json(store_root)
    assert before["buildCache"] > 100000
    config = tmp_path / "config.toml"
    config.write_text('[gc]\nkeep-storage = "1KB"\nkeep-duration = "0s"\n')
    stderr = build_cached(store_root, tmp_path, "b", env={"POLYARCH_CONFIG": str(config)})
    assert "gc: deleted" in stderr, stderr
    after = du_json(store_root)
    assert after["buildCache"] < before["buildCache"]
    assert not [r for r in after["records"] if r["reclaimable"] and r["kind"] in ("result", "cachemount")]
    # disabled: a build leaves the cache alone
    config.write_text('[gc]\nenabled = false\nkeep-storage = "1KB"\n')
    stderr = build_cached(store_root, tmp_path, "c", env={"POLYARCH_CONFIG": str(config)})
    assert "gc:" not in stderr
    assert ids(du_json(store_root), kind="cachemount")


def test_prune_removes_what_interrupted_builds_left(store_root: Path) -> None:
    old = time.time() - 7200
    tmp = store_root / "snapshots" / "overlay" / "tmp" / "abc123-dead"
    (tmp / "fs").mkdir(parents=True)
    (tmp / "fs" / "f").write_bytes(b"x" * 5000)
    ingest = store_root / "ingest" / "partial-blob"
    ingest.write_bytes(b"y" * 3000)
    bundle = store_root / "bundles" / "polyarch-999999-abcdef"
    bundle.mkdir(parents=True)
    (bundle / "config.json").write_text("{}")
    for p in (tmp / "fs" / "f", tmp / "fs", tmp, ingest, bundle / "config.json", bundle):
        os.utime(p, (old, old))
    doc = du_json(store_root, "--filter", "type=leftover")
    assert {r["id"] for r in doc["records"]} == {"overlay/tmp/abc123-dead", "ingest/partial-blob",
                                                 "bundles/polyarch-999999-abcdef"}
    assert all(r["reclaimable"] and r["type"] == "internal" for r in doc["records"])
    assert next(r for r in doc["records"] if r["id"] == "ingest/partial-blob")["size"] == 3000
    blobs = named_blobs(store_root)
    out = run_cli("prune", "--filter", "type=leftover", root=store_root).stdout
    assert "deleted 3 records" in out, out
    assert not tmp.exists() and not ingest.exists() and not bundle.exists()
    assert named_blobs(store_root) == blobs and du_json(store_root, "--filter", "type=leftover")["records"] == []


@pytest.mark.parametrize(("args", "fragment"), [
    (("prune", "--filter", "until=soon"), "invalid until filter 'soon'"),
    (("prune", "--filter", "colour=red"), "invalid filter 'colour=red'"),
    (("prune", "--filter", "type=layers"), "unknown type 'layers'"),
    (("prune", "--keep-storage", "12XB"), "invalid --keep-storage '12XB'"),
    (("prune", "--keep-storage", "-5"), "invalid --keep-storage '-5'"),
    (("du", "--filter", "until"), "invalid filter 'until'"),
    (("du", "--filter", "type=nope"), "unknown type 'nope'"),
])
def test_bad_filters_and_sizes_are_one_error_line(store_root: Path, args: tuple[str, ...], fragment: str) -> None:
    before = sorted(p.name for p in (store_root / "blobs" / "sha256").iterdir())
    proc = run_cli(*args, root=store_root, check=False)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and fragment in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in (store_root / "blobs" / "sha256").iterdir()) == before


@pytest.mark.parametrize(("text", "fragment"), [
    ('[gc]\nkeep-storage = "lots"\n', ":2: invalid keep-storage 'lots'"),
    ('[gc]\nkeep-duration = "2 days"\n', ":2: invalid keep-duration '2 days'"),
    ('[gc]\nenabled = "yes"\n', ":2: enabled must be true or false"),
    ('[gc]\nkeep-bytes = 5\n', ":2: unknown key 'keep-bytes' in [gc]"),
])
def test_a_bad_gc_section_fails_the_build_before_any_work(store_root: Path, tmp_path: Path, text: str,
                                                          fragment: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\nRUN true\n"})
    proc = build(store_root, ctx, "--platform", "linux/amd64", check=False, env={"POLYARCH_CONFIG": str(config)})
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and fragment in errors[0], proc.stderr
    assert not (store_root / "snapshots").exists() or not list((store_root / "snapshots").glob("*/active/*"))
