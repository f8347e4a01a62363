"""Test doubles for the frontend: a fixed build platform, a native predicate and a base-image resolver, so
plans do not depend on the machine running the tests."""

from __future__ import annotations

from polyarch.digest import Digest
from polyarch.oci.spec import ContainerConfig, History, ImageConfig
from polyarch.platform import Platform

__all__ = ["AMD64", "ARM64", "ARMV7", "BUILD", "is_native", "resolve_image"]

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
ARMV7 = Platform("linux", "arm", "v7")
BUILD = AMD64
_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_CONFIGS: dict[str, ContainerConfig] = {
    "alpine": ContainerConfig(env=(_PATH,), cmd=("/bin/sh",)),
    "debian": ContainerConfig(env=(_PATH,), cmd=("bash",)),
    "golang": ContainerConfig(env=("PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
                                   ":/sbin:/bin", "GOLANG_VERSION=1.22.5", "GOPATH=/go"),
                              working_dir="/go", cmd=("bash",)),
    "nginx": ContainerConfig(env=(_PATH, "NGINX_VERSION=1.27.0"), entrypoint=("/docker-entrypoint.sh",),
                             cmd=("nginx", "-g", "daemon off;"), exposed_ports=("80/tcp",), stop_signal="SIGQUIT"),
    "node": ContainerConfig(env=(_PATH, "NODE_VERSION=20.15.0"), entrypoint=("docker-entrypoint.sh",),
                            cmd=("node",)),
    "python": ContainerConfig(env=(_PATH, "LANG=C.UTF-8", "PYTHON_VERSION=3.12.4"), cmd=("python3",)),
    "postgres": ContainerConfig(env=(_PATH, "PGDATA=/var/lib/postgresql/data"), cmd=("postgres",),
                                volumes=("/var/lib/postgresql/data",)),
    "example/onbuild-base": ContainerConfig(env=(_PATH,), working_dir="/app",
                                            on_build=("COPY . /app/", "RUN make -C /app")),
}


def _repo(ref: str) -> str:
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    return name


def resolve_image(ref: str, platform: Platform) -> ImageConfig | None:
    """Known images get a config like their Docker Hub namesakes; anything else is unknown (None)."""
    cc = _CONFIGS.get(_repo(ref))
    if cc is None:
        return None
    return ImageConfig(architecture=platform.architecture, os=platform.os, variant=platform.variant, config=cc,
                       diff_ids=(Digest("sha256", "0" * 63 + "1"),),
                       history=(History(created_by=f"base layer of {_repo(ref)}"),))


def is_native(p: Platform) -> bool:
    """The test host is linux/amd64 (it also runs 386)."""
    return p.os == "linux" and p.architecture in ("amd64", "386")
