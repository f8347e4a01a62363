"""The concrete collaborators of a build (``pipeline.deps.BuildDeps``), made here and nowhere else.

``polyarch build`` and ``polyarch bake`` call ``build_deps`` with their registry options; the pipeline receives
the result and never constructs a registry client, the runtime, the cache database or the build lock itself.

Rootless mode: for a normal user, ``enter_rootless`` moves the process into its user namespace
(``worker/userns.py``) after the store, configuration and credentials paths were fixed as the user's; ``build``
and ``bake`` (local builders), ``run``, ``prune`` and ``du`` call it before any thread starts (the tty progress
renderer has one), ``build_deps`` too (then a no-op). A missing subordinate range or ``newuidmap`` is one
``error:`` line with the command that fixes it.
Under ``sudo`` it says which store and credentials are used (root's, not the invoking user's): ``sudo_note``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from polyarch.cli.context import AppContext

if TYPE_CHECKING:
    from polyarch.pipeline.deps import BaseImageSource, BuildDeps
    from polyarch.platform import Platform
    from polyarch.progress import Progress
    from polyarch.registry.client import RegistryClient
    from polyarch.solver.cache import BuildCache
    from polyarch.solver.executor import ExecRunner

__all__ = ["build_deps", "enter_rootless", "sudo_note"]


def enter_rootless(app: AppContext, *, required: bool = True) -> None:
    """Make this process able to run RUN steps (and to read and delete the subordinate-owned trees of a rootless
    store): nothing for root (or a process already uid 0 in a namespace), else enter the user's namespace
    (``worker.userns``). Call before any thread is started. ``required=False`` (prune, du): a user without
    rootless mode carries on as itself.

    :raises BuildError: rootless mode lacks something (the fix in the hint).
    """
    if os.geteuid() == 0:
        return
    from polyarch.errors import BuildError
    from polyarch.worker.userns import enter, rootless_plan

    _ = app.store_root  # fixed as the user's before the process becomes 0 in its namespace
    try:
        plan = rootless_plan()
    except BuildError:
        if required:
            raise
        return
    enter(plan)


def sudo_note(app: AppContext) -> str:
    """Under ``sudo``: which store and credentials this root process uses (empty otherwise)."""
    if not app.env.sudo_user or not app.env.is_root():
        return ""
    return (f"running as root under sudo: store {app.store_root}, credentials {app.env.credentials().path} "
            f"(not {app.env.sudo_user}'s; run without sudo for rootless mode with the user's own)")


def build_deps(app: AppContext, registry: Callable[[], RegistryClient]) -> BuildDeps:
    """Everything a build of ``app``'s store works with; ``registry`` makes the client for pulls, pushes and
    cache transfers (built from ``--insecure-registry``/``--tls-ca`` and the environment)."""
    from polyarch.pipeline.bases import BaseImages
    from polyarch.pipeline.deps import BuildDeps
    from polyarch.pipeline.runexec import make_runner
    from polyarch.solver.cache import BuildCache
    from polyarch.worker.snapshot import build_lock

    note = sudo_note(app)
    if note:
        import click

        click.echo(f"note: {note}", err=True)
    enter_rootless(app)
    store = app.store
    images = app.images

    def open_cache(enabled: bool) -> BuildCache:
        return BuildCache.in_store(store.root, enabled=enabled)

    def exec_runner(secrets: Mapping[str, bytes], ssh: Mapping[str, str]) -> ExecRunner:
        return make_runner(store.root, secrets=secrets, ssh=ssh, options=app.env.runtime_options)  # first RUN

    def check_runnable(platform: Platform) -> None:  # only platforms with RUN steps: emulation loads then
        from polyarch.worker.emulation import ensure_runnable

        ensure_runnable(platform, binfmt_dir=app.env.binfmt_dir)

    def base_images(pull: bool, progress: Progress) -> BaseImageSource:
        return BaseImages(images, pull=pull, client_factory=registry, progress=progress,
                          index_store=lambda: BuildCache.in_store(store.root))

    return BuildDeps(store=store, open_cache=open_cache, exec_runner=exec_runner, base_images=base_images,
                     check_runnable=check_runnable,
                     lock=lambda: build_lock(store.root), registry=registry, snapshotter=app.env.snapshotter_driver())
