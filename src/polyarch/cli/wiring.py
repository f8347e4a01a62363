"""The concrete collaborators of a build (``pipeline.deps.BuildDeps``), made here and nowhere else.

``polyarch build`` and ``polyarch bake`` call ``build_deps`` with their registry options; the pipeline receives
the result and never constructs a registry client, the runtime, the cache database or the build lock itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from polyarch.cli.context import AppContext

if TYPE_CHECKING:
    from polyarch.pipeline.deps import BaseImageSource, BuildDeps
    from polyarch.progress import Progress
    from polyarch.registry.client import RegistryClient
    from polyarch.solver.cache import BuildCache
    from polyarch.solver.executor import ExecRunner

__all__ = ["build_deps"]


def build_deps(app: AppContext, registry: Callable[[], RegistryClient]) -> BuildDeps:
    """Everything a build of ``app``'s store works with; ``registry`` makes the client for pulls, pushes and
    cache transfers (built from ``--insecure-registry``/``--tls-ca`` and the environment)."""
    from polyarch.pipeline.bases import BaseImages
    from polyarch.pipeline.deps import BuildDeps
    from polyarch.pipeline.runexec import make_runner
    from polyarch.solver.cache import BuildCache
    from polyarch.worker.emulation import ensure_runnable
    from polyarch.worker.snapshot import build_lock

    store = app.store
    images = app.images

    def open_cache(enabled: bool) -> BuildCache:
        return BuildCache.in_store(store.root, enabled=enabled)

    def exec_runner(secrets: Mapping[str, bytes], ssh: Mapping[str, str]) -> ExecRunner:
        return make_runner(store.root, secrets=secrets, ssh=ssh, options=app.env.runtime_options())

    def base_images(pull: bool, progress: Progress) -> BaseImageSource:
        return BaseImages(images, pull=pull, client_factory=registry, progress=progress)

    return BuildDeps(store=store, open_cache=open_cache, exec_runner=exec_runner, base_images=base_images,
                     check_runnable=lambda p: ensure_runnable(p, binfmt_dir=app.env.binfmt_dir),
                     lock=lambda: build_lock(store.root), registry=registry, snapshotter=app.env.snapshotter_driver())
