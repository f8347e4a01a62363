"""``polyarch build``'s context argument and ``--build-context`` values, as buildx reads them.

CONTEXT: a git URL (``pipeline.ctxurl.parse_git_url``: ``https://host/repo.git#ref:subdir``, ``git@host:repo``,
``git://…``), an http(s) URL (a tarball, or a plain file that is the Dockerfile), ``-`` (stdin: a tar archive as
the context, or a Dockerfile with an empty context; buildx sniffs which), else a local directory (handled by
``cli/build.py`` as before). For a remote context, a relative ``-f`` is read inside it (symlinks resolved inside
it), an absolute one from the host, ``-f -`` from stdin.

``--build-context NAME=VALUE``: ``docker-image://REF`` (unchanged), ``oci-layout://PATH[:TAG|@DIGEST]`` (copied
into the store for the build, then ``docker-image://`` of a temporary name), a git URL, an http(s) URL (a tarball
unpacked, else a directory holding the one file), else a local directory, which must exist. ``target:`` is
bake's.

Everything remote is fetched by one ``pipeline.remotectx.RemoteContexts``, closed when the click command ends
(also on failure).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from polyarch.cli.context import AppContext
from polyarch.errors import PolyarchError, UsageError
from polyarch.pipeline.ctxurl import is_http_url, parse_git_url

if TYPE_CHECKING:  # fetching code is loaded only when a context is remote (a local rebuild stays quick)
    from polyarch.pipeline.remotectx import Fetched, RemoteContexts

__all__ = ["MainContext", "RemoteArgs"]


@dataclass(frozen=True, slots=True)
class MainContext:
    """A remote main context: its local directory, the Dockerfile's text and path (name and ignore file)."""

    directory: Path
    dockerfile: Path
    text: str


class RemoteArgs:
    """Resolves a build's context argument and named contexts; fetches through one ``RemoteContexts``."""

    def __init__(self, app: AppContext) -> None:
        self._app = app
        self._remote: RemoteContexts | None = None

    @property
    def remote(self) -> RemoteContexts:
        """Made on first use (a local build never opens the store for it); closed with the click command."""
        if self._remote is None:
            app = self._app
            from polyarch.pipeline.remotectx import RemoteContexts

            self._remote = RemoteContexts(app.store.root, lambda: app.images)
            click.get_current_context().call_on_close(self._remote.close)
        return self._remote

    def main(self, context: str, dockerfile: str | None) -> MainContext | None:
        """The fetched main context, or None when ``context`` is a local path."""
        what = f"build context {context}"
        if context == "-":
            if dockerfile == "-":
                raise UsageError("can't use stdin for both build context and dockerfile")
            fetched = self.remote.stdin(click.get_binary_stream("stdin"), "build context from stdin")
            if fetched.dockerfile is not None and dockerfile:
                raise UsageError("ambiguous Dockerfile source: both stdin and flag correspond to Dockerfiles")
            return self._dockerfile(fetched, dockerfile, what)
        git = parse_git_url(context)
        if git is not None:
            from polyarch.pipeline.remotectx import Fetched

            return self._dockerfile(Fetched(self.remote.git(git, what)), dockerfile, what)
        if is_http_url(context):
            # BuildKit: a plain file is the Dockerfile, named "context" in a context of its own
            return self._dockerfile(self.remote.http(context, what, filename="context"), dockerfile, what)
        return None

    def _dockerfile(self, fetched: Fetched, dockerfile: str | None, what: str) -> MainContext:
        if dockerfile == "-":
            return MainContext(fetched.directory, Path("Dockerfile"),
                               click.get_text_stream("stdin").read())
        if dockerfile and os.path.isabs(dockerfile):
            path = Path(dockerfile)
            return MainContext(fetched.directory, path, _read(path, dockerfile))
        if fetched.dockerfile is not None and not dockerfile:
            return MainContext(fetched.directory, fetched.dockerfile, _read(fetched.dockerfile, what))
        from polyarch.worker.securepath import secure_join

        rel = dockerfile or "Dockerfile"
        try:
            path = Path(secure_join(fetched.directory, os.path.normpath("/" + rel).lstrip("/")))
        except (PolyarchError, OSError) as exc:
            raise UsageError(f"{what}: cannot read {rel}: {exc}") from None
        return MainContext(fetched.directory, path, _read(path, f"{what}: {rel}"))

    def named(self, contexts: Mapping[str, str]) -> dict[str, str]:
        """``--build-context`` values → what the build takes: a local directory or ``docker-image://REF``."""
        from polyarch.sources.location import Scheme, explicit_scheme

        out: dict[str, str] = {}
        for name, value in contexts.items():
            what = f"--build-context {name}={value}"
            if value.startswith("docker-image://"):
                out[name] = value
            elif explicit_scheme(value) is Scheme.LAYOUT:
                out[name] = "docker-image://" + self.remote.layout_image(value, what)
            elif value.startswith("target:"):
                raise UsageError(f"{what}: target: contexts exist only in bake", hint="use polyarch bake")
            elif (git := parse_git_url(value)) is not None:
                out[name] = str(self.remote.git(git, what))
            elif is_http_url(value):
                out[name] = str(self.remote.http(value, what).directory)
            else:
                path = Path(value)
                if not path.exists():
                    raise UsageError(f"{what}: {value} does not exist")
                if not path.is_dir():
                    raise UsageError(f"{what}: {value} is not a directory")
                out[name] = value
        return out


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{what}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what}: not UTF-8 text (byte {exc.start})") from None
