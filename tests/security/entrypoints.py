"""The real commands through which hostile layers reach the layer apply.

Each entry point takes a world and the hostile layers (lists of entries, bottom to top) and returns the finished
``polyarch`` process. Image entry points ``load`` the layers stacked on the busybox base first (``load`` only
stores blobs); archive entry points put the layers' entries, in order, into one tar in the build context or
behind a loopback HTTP server. ``APPLIES`` says whether the command must read the layers at all (a build with
no RUN and no output never needs the base's files).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tests.pipeline.conftest import serve_directory
from tests.security.conftest import PLATFORM, World
from tests.security.hostile import Entry, HostileImage, layer_tar

Layers = Sequence[Sequence[Entry]]


def _image(world: World, layers: Layers) -> str:
    return world.load(HostileImage([layer_tar(layer) for layer in layers], base=world.base))


def _build(world: World, dockerfile: str, *extra: str) -> subprocess.CompletedProcess[str]:
    (world.ctx / "Dockerfile").write_text(dockerfile)
    (world.ctx / "f").write_text("context file\n")
    return world.cli("build", str(world.ctx), "--progress", "plain", "--platform", PLATFORM, *extra)


def run(world: World, layers: Layers) -> subprocess.CompletedProcess[str]:
    return world.cli("run", "--platform", PLATFORM, _image(world, layers), "true")


def build_from(world: World, layers: Layers) -> subprocess.CompletedProcess[str]:
    return _build(world, f"FROM {_image(world, layers)}\nCOPY f /copied\n")


def build_run(world: World, layers: Layers) -> subprocess.CompletedProcess[str]:
    return _build(world, f"FROM {_image(world, layers)}\nRUN true\n")


def build_local(world: World, layers: Layers) -> subprocess.CompletedProcess[str]:
    return _build(world, f"FROM {_image(world, layers)}\nCOPY f /copied\n", "-o", f"type=local,dest={world.out}")


def _flat(layers: Layers) -> bytes:
    return layer_tar([e for layer in layers for e in layer])


def add_local(world: World, layers: Layers) -> subprocess.CompletedProcess[str]:
    (world.ctx / "evil.tar").write_bytes(_flat(layers))
    return _build(world, "FROM base/busybox:1\nADD evil.tar /dst/\n", "-o", f"type=local,dest={world.out}")


def add_http(world: World, layers: Layers) -> subprocess.CompletedProcess[str]:
    served = world.tmp / "served"
    served.mkdir(exist_ok=True)
    (served / "evil.tar").write_bytes(_flat(layers))
    server, url = serve_directory(served)
    try:
        return _build(world, f"FROM base/busybox:1\nADD {url}/evil.tar /dst/\n",
                      "-o", f"type=local,dest={world.out}")
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class EntryPoint:
    name: str
    go: Callable[[World, Layers], subprocess.CompletedProcess[str]]
    applies: bool  # the command must read the hostile layers (so a layer that must be rejected fails it)
    loads: bool  # the layers come as an image loaded into the store (named HOSTILE_NAME) before the command
    snapshots: bool  # the command applies the image's layers as snapshots of the store


ENTRY_POINTS = (
    EntryPoint("run", run, applies=True, loads=True, snapshots=True),
    EntryPoint("build-from", build_from, applies=False, loads=True, snapshots=False),
    EntryPoint("build-run", build_run, applies=True, loads=True, snapshots=True),
    EntryPoint("build-local", build_local, applies=True, loads=True, snapshots=False),
    EntryPoint("add-local", add_local, applies=True, loads=False, snapshots=False),
    # a remote ADD is not extracted (as in Docker and BuildKit): the tar lands as a plain file
    EntryPoint("add-http", add_http, applies=False, loads=False, snapshots=False),
)
