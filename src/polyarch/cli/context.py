"""Per-invocation state shared by commands: flags of the top-level group, the environment as read once at
start-up (``environment.Environment``), and lazily opened resources."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from polyarch.cli.environment import Environment

if TYPE_CHECKING:
    from polyarch.content.images import ImageStore
    from polyarch.content.store import ContentStore

__all__ = ["AppContext", "pass_app"]


@dataclass
class AppContext:
    debug: bool = False
    root: str | None = None
    env: Environment = field(default_factory=Environment)
    _store: ContentStore | None = field(default=None, repr=False)

    @property
    def store_root(self) -> Path:
        """``--root`` (or ``POLYARCH_ROOT``), else the environment's default (see ``Environment.default_root``)."""
        return Path(self.root) if self.root else self.env.default_root()

    @property
    def store(self) -> ContentStore:
        if self._store is None:
            from polyarch.content.store import ContentStore

            self._store = ContentStore(self.store_root, private=True)
        return self._store

    @property
    def images(self) -> ImageStore:
        from polyarch.content.images import ImageStore

        return ImageStore(self.store)


pass_app = click.make_pass_decorator(AppContext)
