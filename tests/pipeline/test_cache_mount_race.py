"""The platforms of one build set up the same RUN cache mount at the same moment (the cross-compile pattern:
every target's builder step runs on the build platform with one Go cache): none may fail."""

from __future__ import annotations

import threading
from pathlib import Path

from polyarch.platform import parse
from polyarch.worker.mounts import CacheMount, MountSetup


def test_concurrent_setup_of_one_new_cache_mount(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    for round_ in range(20):  # the race needs the same instant; a few rounds make it near certain before the fix
        store = tmp_path / f"store{round_}"
        start = threading.Barrier(4)

        def setup(n: int, store: Path = store, start: threading.Barrier = start) -> None:
            rootfs = store / f"rootfs{n}"
            rootfs.mkdir(parents=True)
            scratch = store / f"scratch{n}"
            scratch.mkdir()
            try:
                with MountSetup(store, rootfs, scratch, parse("linux/amd64"), {}, {}) as ms:
                    start.wait()
                    ms.add(CacheMount("/root/.cache/go-build"))
                    assert ms.oci_mounts[0]["destination"] == "/root/.cache/go-build"
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

        threads = [threading.Thread(target=setup, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        data = list((store / "cache-mounts").iterdir())
        assert len(data) == 1 and (data[0] / "data").is_dir()
        assert not [p for p in data[0].iterdir() if p.name.startswith("data.tmp")]
    assert not errors, errors[0]
