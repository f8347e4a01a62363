"""Registry client throughput: polyarch vs skopeo pushing and pulling a 3-layer image to Debian's docker-registry.

The image has three uncompressed layers of random bytes (incompressible; ``--size-mb`` total, default 600). Each
measurement runs against a fresh registry on a loopback port (so no tool can mount or skip blobs it saw before),
as a separate process, for both tools in the same run:

    push:  polyarch push NAME HOST/bench/img:1          vs  skopeo copy --preserve-digests oci:STORE:NAME docker://…
    pull:  polyarch pull HOST/bench/img:1 (fresh store) vs  skopeo copy --preserve-digests docker://… oci:DIR:img

Prints MB/s and the ratio polyarch/skopeo (>= 1.0 means polyarch is at least as fast).

    python bench/bench_registry_client.py [--size-mb 600] [--repeat 2]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from tests.registry.refregistry import start_registry  # noqa: E402

from polyarch.content.images import ImageStore  # noqa: E402
from polyarch.content.store import ContentStore  # noqa: E402
from polyarch.oci.spec import ContainerConfig, Descriptor, ImageConfig, MediaType  # noqa: E402

NAME = "bench/img:1"


def make_image(root: Path, total_mb: int) -> int:
    store = ContentStore(root)
    layers, diff_ids = [], []
    per = total_mb * (1 << 20) // 3
    for i in range(3):
        data = os.urandom(per)
        with store.writer() as w:
            with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                info = tarfile.TarInfo(f"layer{i}.bin")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            digest, size = w.commit()
        layers.append(Descriptor(MediaType.OCI_LAYER, digest, size))
        diff_ids.append(digest)
    images = ImageStore(store)
    config = ImageConfig(architecture="amd64", os="linux", config=ContainerConfig(cmd=("/bin/sh",)),
                         diff_ids=tuple(diff_ids))
    desc = images.put_image(config, layers)
    images.set_name(NAME, desc)
    return sum(layer.size for layer in layers)


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}… failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def polyarch(*args: str, root: Path, dc: Path) -> list[str]:
    return [sys.executable, "-m", "polyarch", "--root", str(root), *args]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=600)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    if not shutil.which("skopeo") or not shutil.which("docker-registry"):
        raise SystemExit("needs skopeo and docker-registry")
    work = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    env = {"DOCKER_CONFIG": str(work / "docker-config"), "PYTHONPATH": str(REPO / "src")}
    try:
        t0 = time.perf_counter()
        src = work / "src-store"
        total = make_image(src, args.size_mb)
        mb = total / 1e6
        print(f"image: 3 uncompressed layers, {mb:.0f} MB, generated in {time.perf_counter() - t0:.1f}s")
        results: dict[str, list[float]] = {k: [] for k in ("polyarch push", "skopeo push", "polyarch pull",
                                                           "skopeo pull")}
        for rep in range(args.repeat):
            for tool in ("skopeo", "polyarch") if rep % 2 else ("polyarch", "skopeo"):
                reg = start_registry(work / f"reg-{tool}-{rep}")
                try:
                    ref = f"{reg.host}/bench/img:1"
                    if tool == "polyarch":
                        push = timed(polyarch("push", NAME, ref, root=src, dc=work), env)
                        dest = work / f"pulled-{rep}"
                        pull = timed(polyarch("pull", "--platform", "linux/amd64", ref, root=dest, dc=work), env)
                    else:
                        push = timed(["skopeo", "copy", "-q", "--preserve-digests", "--dest-tls-verify=false",
                                      f"oci:{src}:{NAME}", f"docker://{ref}"], env)
                        pull = timed(["skopeo", "copy", "-q", "--preserve-digests", "--src-tls-verify=false",
                                      f"docker://{ref}", f"oci:{work / f'skopeo-{rep}'}:img"], env)
                    results[f"{tool} push"].append(push)
                    results[f"{tool} pull"].append(pull)
                finally:
                    reg.stop()
                    shutil.rmtree(reg.root, ignore_errors=True)
                    shutil.rmtree(work / f"pulled-{rep}", ignore_errors=True)
                    shutil.rmtree(work / f"skopeo-{rep}", ignore_errors=True)
        print(f"{'run':<15} {'best s':>8} {'MB/s':>8}   all runs (s)")
        best = {k: min(v) for k, v in results.items()}
        for k, v in results.items():
            print(f"{k:<15} {best[k]:>8.2f} {mb / best[k]:>8.0f}   {', '.join(f'{x:.2f}' for x in v)}")
        for op in ("push", "pull"):
            ratio = best[f"skopeo {op}"] / best[f"polyarch {op}"]
            print(f"{op}: polyarch/skopeo throughput ratio {ratio:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
