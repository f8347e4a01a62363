#!/usr/bin/env python3
"""Benchmark the registry web page: 500 repositories × 20 tags (10 000 rows in the coverage matrix).

    python bench/bench_registry_ui.py [--repos 500] [--tags 20] [--images 1000] [--runs 5]

A store gets ``--images`` distinct 3-platform images (index + 3 manifests + 3 configs, one tiny shared layer);
the registry's metadata rows (repositories, manifests, tags) are written directly in one transaction through
``Metadata.write`` (no push), tags pointing at the images round-robin. The page's verdict worker runs with an
instant verifier and is drained first, so cells show verdicts, as on a server that has been up a while.

Printed: server time (in-process ASGI request, no socket) of the repositories page, the full coverage matrix
(HTML and JSON), a filtered matrix and a tag page; the first matrix after start (digest summaries read from the
store) and the median of ``--runs`` after. Target: < 300 ms for the pages at 500 × 20.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from polyarch.content.images import ImageStore  # noqa: E402
from polyarch.digest import Digest  # noqa: E402
from polyarch.oci.spec import Descriptor, ImageConfig, MediaType  # noqa: E402
from polyarch.platform import parse  # noqa: E402
from polyarch.registry.server import Registry, RegistryConfig, create_app  # noqa: E402
from polyarch.registry.server.metadata import Metadata  # noqa: E402
from polyarch.registry.server.ui import CellVerdict, HostPlatform, UiOptions, WebUi  # noqa: E402

PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")


def make_images(images: ImageStore, count: int) -> list[Descriptor]:
    layer = b"x" * 1024
    digest, size = images.store.write(layer)
    desc = Descriptor(MediaType.OCI_LAYER, digest, size)
    out = []
    for i in range(count):
        manifests = []
        for p_text in PLATFORMS[: 1 + i % 3]:
            p = parse(p_text)
            config = ImageConfig(architecture=p.architecture, os=p.os, variant=p.variant,
                                 diff_ids=(Digest.of(layer),), created=f"2026-01-01T00:00:{i % 60:02d}Z")
            manifests.append(images.put_image(config, [desc]))
        out.append(images.put_index(manifests))
    return out


def fill_metadata(meta: Metadata, images: list[Descriptor], repos: int, tags: int) -> None:
    now = time.time()
    with meta.write() as c:
        c.executemany("INSERT INTO repos VALUES (?,?)", [(f"team{r % 25}/app-{r:03d}", now) for r in range(repos)])
        rows, tag_rows = set(), []
        for r in range(repos):
            name = f"team{r % 25}/app-{r:03d}"
            for t in range(tags):
                img = images[(r * tags + t) % len(images)]
                rows.add((name, str(img.digest), img.media_type, img.size))
                tag_rows.append((name, f"1.{t}.0", str(img.digest), now - t * 3600))
        c.executemany("INSERT INTO manifests VALUES (?,?,?,?,'',NULL,'{}',?)", [(*row, now) for row in rows])
        c.executemany("INSERT INTO tags VALUES (?,?,?,?)", tag_rows)


def timed(client: TestClient, path: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = client.get(path)
    elapsed = time.perf_counter() - t0
    assert r.status_code == 200, (path, r.status_code)
    return elapsed * 1000, len(r.content)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repos", type=int, default=500)
    ap.add_argument("--tags", type=int, default=20)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        reg = Registry(Path(tmp), RegistryConfig(delete_enabled=True))
        t0 = time.perf_counter()
        images = make_images(reg.images, args.images)
        assert isinstance(reg.meta, Metadata)
        fill_metadata(reg.meta, images, args.repos, args.tags)
        print(f"generated {args.images} images, {args.repos} repositories × {args.tags} tags in "
              f"{time.perf_counter() - t0:.1f} s")
        web = WebUi(reg, UiOptions(verifier=lambda e: CellVerdict("native"),
                                   hosts=(HostPlatform("pi4", parse("linux/arm64")),)))
        with TestClient(create_app(reg, ui=web)) as client:
            first, _ = timed(client, "/ui/matrix")  # the start-up warm-up may be reading summaries meanwhile
            assert web.verdicts.wait_idle(600)
            pages = {"repositories": "/ui/", "matrix (HTML, 10 000 rows)": "/ui/matrix",
                     "matrix (JSON)": "/ui/api/matrix", "matrix, emulated on pi4": "/ui/matrix?host=pi4",
                     "search 'app-123'": "/ui/matrix?q=app-123", "tag page": "/ui/r/team0/app-000:1.0.0"}
            results = {}
            for label, path in pages.items():
                times = [timed(client, path) for _ in range(args.runs)]
                results[label] = (statistics.median(t for t, _ in times), times[0][1])
        reg.close()
    print(f"first matrix after start: {first:.0f} ms")
    for label, (ms, size) in results.items():
        print(f"{label:28s} {ms:7.1f} ms  ({size / 1000:.0f} kB)")
    print(json.dumps({k: round(v[0], 1) for k, v in results.items()}))


if __name__ == "__main__":
    main()
