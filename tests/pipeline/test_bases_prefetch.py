"""``BaseImages``: a config read from the registry while planning starts that image's pull at once, on a thread
of its own, so the pull overlaps the rest of planning; the solver's ``image`` waits for it and pulls nothing
more; ``close`` waits for a pull still running; a failed background pull is raised where the solver asks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from polyarch import platform as plat
from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import BuildError, RegistryError
from polyarch.pipeline.bases import BaseImages
from polyarch.sources import transfer
from tests.conftest import BASE_NAME

AMD64 = plat.parse("linux/amd64")


class _Client:
    def close(self) -> None:
        pass


def _bases(base_root: Path, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False
           ) -> tuple[BaseImages, list[str], threading.Event]:
    images = ImageStore(ContentStore(base_root, create=False))
    local = images.images(images.lookup(BASE_NAME))[0]
    events: list[str] = []
    release = threading.Event()

    def remote_config(client, ref, platform, *, documents=None):  # type: ignore[no-untyped-def]
        events.append("config")
        return transfer.RemoteConfig(local.config, Digest.of(b"index"), local.descriptor.digest)

    def pull_image(client, ref, images, **kw):  # type: ignore[no-untyped-def]
        events.append("pull start")
        release.wait(10)
        events.append("pull end")
        if fail:
            raise RegistryError("the registry went away")

    monkeypatch.setattr(transfer, "remote_config", remote_config)
    monkeypatch.setattr(transfer, "pull_image", pull_image)
    bases = BaseImages(images, client_factory=_Client, pull=True)  # type: ignore[arg-type]
    return bases, events, release


def test_config_starts_the_pull_and_image_waits_for_it(base_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bases, events, release = _bases(base_root, monkeypatch)
    try:
        assert bases.config(BASE_NAME, AMD64) is not None
        deadline = time.monotonic() + 5
        while "pull start" not in events and time.monotonic() < deadline:
            time.sleep(0.01)
        assert events == ["config", "pull start"]  # planning has its answer; the pull runs meanwhile
        got: list[object] = []
        solver = threading.Thread(target=lambda: got.append(bases.image(BASE_NAME, AMD64)))
        solver.start()
        time.sleep(0.1)
        assert not got  # the solver waits for the running pull
        local = ImageStore(ContentStore(base_root, create=False))
        manifest = local.images(local.lookup(BASE_NAME))[0].descriptor.digest
        assert bases.pulling(BASE_NAME, AMD64) == manifest  # what the solver may write ahead on
        assert bases.pulling(BASE_NAME, plat.parse("linux/arm64")) is None  # no pull of that one runs
        release.set()
        solver.join(5)
        assert got and got[0].platform.architecture == "amd64"  # type: ignore[attr-defined]
        assert events == ["config", "pull start", "pull end"]  # pulled once
        deadline = time.monotonic() + 5
        while bases.pulling(BASE_NAME, AMD64) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bases.pulling(BASE_NAME, AMD64) is None  # the pull ended
    finally:
        release.set()
        bases.close()


def test_close_waits_and_a_failed_pull_is_raised_by_image(base_root: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    bases, events, release = _bases(base_root, monkeypatch, fail=True)
    bases.config(BASE_NAME, AMD64)
    threading.Timer(0.2, release.set).start()
    with pytest.raises(BuildError, match="the registry went away"):
        bases.image(BASE_NAME, AMD64)
    bases.close()
    assert events == ["config", "pull start", "pull end"]

    bases, events, release = _bases(base_root, monkeypatch)
    bases.config(BASE_NAME, AMD64)
    threading.Timer(0.2, release.set).start()
    bases.close()  # planning failed, say: close returns once the pull it started is done
    assert events[-1] == "pull end"
