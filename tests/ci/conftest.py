"""What the CI tests share: the htpasswd registry of README's CI test, a venv whose pip installs polyarch for real
(from a copy of this checkout, the ``--pip-spec`` a workflow would name), and a job runner that runs one job's
scripts with bash in its own checkout, store and docker config, as a fresh CI runner would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.cli.test_builder_ci import auth_registry  # noqa: F401  (the registry fixture, reused)
from tests.conftest import REPO

Job = Callable[..., Path]


@pytest.fixture(scope="session")
def pip_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project (what pip builds a wheel from), away from the work tree's egg-info."""
    tree = tmp_path_factory.mktemp("pip-tree")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree / name)
    shutil.copytree(REPO / "src", tree / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    return tree


@pytest.fixture(scope="session")
def venv_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv over this Python's packages (polyarch's dependencies) into which the jobs' pip installs polyarch."""
    venv = tmp_path_factory.mktemp("ci-venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    return venv / "bin"


@pytest.fixture
def run_job(base_root: Path, venv_bin: Path, tmp_path: Path) -> Job:
    """``run_job(name, scripts, env, project, artifacts_in=())`` → the job's checkout: a copy of ``project``
    (plus the files ``artifacts_in``), its own store (the base images preloaded, as a registry would give them)
    and docker config; each script run with ``bash --noprofile --norc -eo pipefail`` as Actions does."""

    def run(name: str, scripts: list[tuple[str, dict[str, str]]], env: dict[str, str], project: Path,
            artifacts_in: tuple[Path, ...] = ()) -> Path:
        checkout = tmp_path / f"job-{name}"
        shutil.copytree(project, checkout)
        for f in artifacts_in:
            shutil.copy(f, checkout)
        store = tmp_path / f"store-{name}"
        shutil.copytree(base_root, store, ignore=shutil.ignore_patterns(".complete", "ingest"))
        job_env = {**os.environ, **env, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
                   "POLYARCH_ROOT": str(store), "POLYARCH_BUILDER": "", "DOCKER_CONFIG": str(tmp_path / f"docker-{name}"),
                   "POLYARCH_CONFIG_DIR": str(tmp_path / f"cfg-{name}"), "VIRTUAL_ENV": str(venv_bin.parent)}
        for script, step_env in scripts:
            proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=checkout,
                                  env={**job_env, **step_env}, capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, f"job {name}: {script}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        return checkout

    return run
