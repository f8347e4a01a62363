"""Fixtures of the attestation tests: a Debian-like 2-platform base and app (``debianish``), the embedded registry
(referrers API) and Debian's docker-registry (none: the referrers tag schema)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli, serve_registry
from tests.registry.refregistry import RefRegistry, start_registry

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
PLATFORMS = "linux/amd64,linux/arm64"
STATUS = ("Package: base-files\nStatus: install ok installed\nVersion: 12.4+deb12u5\nArchitecture: amd64\n"
          "Description: Debian base system\n miscellaneous files\n\n"
          "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u4\nArchitecture: amd64\n\n"
          "Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\nArchitecture: amd64\n\n"
          "Package: removed-one\nStatus: deinstall ok config-files\nVersion: 1.0\n")
CURL = "\nPackage: curl\nStatus: install ok installed\nVersion: 7.88.1-10+deb12u5\nArchitecture: amd64\n"
METADATA = ("Metadata-Version: 2.1\nName: Requests\nVersion: 2.31.0\nLicense: Apache 2.0\n\n# requests\n")


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def debianish(store_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The store with ``base/debianish:1`` (busybox + dpkg status + os-release, 2 platforms) and the app's
    context: it adds a Python package and the curl package (a new dpkg status in its own layer)."""
    base = _write(tmp_path / "base", {"Dockerfile": "FROM base/busybox:1\nCOPY status /var/lib/dpkg/status\n"
                                                    "COPY os-release /etc/os-release\n",
                                      "status": STATUS, "os-release": 'ID=debian\nVERSION_ID="12"\n'})
    run_cli("build", "--platform", PLATFORMS, "-t", "base/debianish:1", "--load", str(base), root=store_root,
            env=EPOCH)
    app = _write(tmp_path / "app", {
        "Dockerfile": "FROM base/debianish:1\n"
                      "COPY METADATA /usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA\n"
                      "COPY status /var/lib/dpkg/status\n",
        "METADATA": METADATA, "status": STATUS + CURL})
    return store_root, app


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[str]:
    """``polyarch registry serve`` (it has the referrers API); yields ``host:port``."""
    with serve_registry(tmp_path / "reg") as address:
        yield address


@pytest.fixture(scope="module")
def docker_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefRegistry]:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed")
    reg = start_registry(tmp_path_factory.mktemp("attest-registry"))
    yield reg
    reg.stop()
