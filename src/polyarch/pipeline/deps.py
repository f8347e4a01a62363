"""What one build works with, made by its caller: the seams of the pipeline.

The pipeline (plan → solve → assemble) never constructs a registry client, a runtime, a cache database or a lock
itself; the CLI (``polyarch.cli.wiring``) makes them from the command line and environment and hands them over in
one ``BuildDeps`` value. Tests hand over fakes the same way (a recording ``ExecRunnerFactory``, no emulation check).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from polyarch.content.images import Image
    from polyarch.content.store import ContentStore
    from polyarch.digest import Digest
    from polyarch.oci.spec import ImageConfig
    from polyarch.platform import Platform
    from polyarch.progress import Progress
    from polyarch.registry.client import RegistryClient
    from polyarch.solver.cache import BuildCache
    from polyarch.solver.executor import ExecRunner

__all__ = ["BaseImageSource", "BuildDeps", "ExecRunnerFactory"]


class ExecRunnerFactory(Protocol):
    """Makes the RUN executor of one solve; secret values and ssh sockets come from the command line."""

    def __call__(self, secrets: Mapping[str, bytes], ssh: Mapping[str, str]) -> ExecRunner: ...


class BaseImageSource(Protocol):
    """``FROM`` images for one build: the frontend asks for configs, the solver for images."""

    def image(self, ref: str, platform: Platform) -> Image: ...

    def config(self, ref: str, platform: Platform) -> ImageConfig | None: ...

    def pulling(self, ref: str, platform: Platform) -> Digest | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BuildDeps:
    """The collaborators of ``build_many``, all made by the caller.

    ``open_cache(enabled)`` opens the solver's cache (disabled: ``--no-cache``); ``base_images(pull, progress)``
    makes the ``FROM`` resolver of one build; ``check_runnable`` refuses a platform no RUN step could run on
    (before any step runs); ``lock()`` is held while steps run (prune leaves snapshots alone meanwhile);
    ``registry`` makes the registry client that cache import and export use.
    """

    store: ContentStore
    open_cache: Callable[[bool], BuildCache]
    exec_runner: ExecRunnerFactory
    base_images: Callable[[bool, Progress], BaseImageSource]
    check_runnable: Callable[[Platform], object]
    lock: Callable[[], AbstractContextManager[object]]
    registry: Callable[[], RegistryClient]
    snapshotter: str | None = None  # the snapshot driver asked for (POLYARCH_SNAPSHOTTER); None: automatic
