"""`polyarch run`: each platform of the busybox base runs under runc, natively or through QEMU."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import BASE_NAME, run_cli


@pytest.mark.root
@pytest.mark.binfmt
def test_run_each_platform(store_root: Path) -> None:
    run_cli("binfmt", "--install", "arm64,arm")
    for platform, machine in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64"), ("linux/arm/v7", "armv7l")):
        out = run_cli("run", "--platform", platform, BASE_NAME, "sh", "-c", "uname -m | sed s/^/arch=/",
                      root=store_root).stdout
        assert out.strip() == f"arch={machine}"


@pytest.mark.root
def test_exit_status_and_env(store_root: Path) -> None:
    proc = run_cli("run", "-e", "GREETING=hi", BASE_NAME, "sh", "-c", "echo $GREETING; exit 7", root=store_root,
                   check=False)
    assert proc.returncode == 7 and proc.stdout.strip() == "hi"


def test_run_errors(store_root: Path) -> None:
    proc = run_cli("run", "--pull", "never", "no/such:1", "true", root=store_root, check=False)
    assert proc.returncode == 1 and "no image named" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("run", BASE_NAME, root=store_root, check=False)
    assert proc.returncode == 2 and "no entrypoint or cmd" in proc.stderr
    proc = run_cli("run", "--platform", "linux/s390x", BASE_NAME, "true", root=store_root, check=False)
    assert proc.returncode == 1 and "no image for linux/s390x" in proc.stderr


@pytest.mark.root
@pytest.mark.parametrize("args,reason", [
    (("/nonexistent",), 'runc run failed: unable to start container process: exec: "/nonexistent"'),
    (("-w", "/bin/sh/sub", BASE_NAME, "true"), "cannot create working directory /bin/sh/sub"),
])
def test_container_that_cannot_start_is_one_error_line(store_root: Path, args: tuple[str, ...], reason: str) -> None:
    """runc failing (not the command exiting non-zero) is one ``error:`` line with runc's reason, exit 1, nothing
    on stdout, no container or bundle left; the same as a build's RUN step."""
    argv = ("run", BASE_NAME, *args) if args[0] != "-w" else ("run", *args)
    proc = run_cli(*argv, root=store_root, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and proc.stdout == "", proc
    assert len(errors) == 1 and reason in errors[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not list((store_root / "bundles").iterdir())
