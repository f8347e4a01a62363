"""Registry failures are shown, not slept through in silence: ``pull`` and ``push`` through a fault-injecting
proxy in front of the real docker-registry print each retry with its status, and one progress line per layer
(bytes and rate) in plain mode; in a terminal the bars come from rich. The registry client itself never prints:
it reports to a ``TransferObserver`` (AST test over ``registry/``)."""

from __future__ import annotations

import ast
import os
import pty
import re
import select
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.registry.faultproxy import FaultProxy

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore

pytestmark = [pytest.mark.registry]

ENV = {"POLYARCH_REGISTRY_BACKOFF": "0.01"}
LAYER_LINE = re.compile(r"^(pulled|pushed) sha256:[0-9a-f]{12} \d+(\.\d)? (B|kB|MB) in \d+\.\ds \(\d+(\.\d)? (B|kB|MB)/s\)$")


def _layers(root: Path, name: str) -> list[str]:
    images = ImageStore(ContentStore(root))
    return [str(layer.digest) for image in images.images(images.lookup(name)) for layer in image.manifest.layers]


def test_pull_and_push_show_retries_and_a_line_per_layer(fault_proxy: FaultProxy, ref_registry: object,
                                                         make_image: Callable[..., tuple[Path, str]],
                                                         tmp_path: Path) -> None:
    root, name = make_image("gen/progress:1", platforms=("linux/amd64",), layer_sizes=(300_000, 50_000, 4096),
                            seed=21)
    layers = _layers(root, name)
    fault_proxy.add("POST", r"/blobs/uploads/", "status", status=503, times=2)
    pushed = run_cli("push", "--progress", "plain", name, f"{fault_proxy.host}/gen/progress:1", root=root, env=ENV)
    retries = [line for line in pushed.stderr.splitlines() if ": retrying in " in line]
    assert len(retries) == 2, pushed.stderr
    assert all(line.startswith(f"{fault_proxy.host}: retrying in ") and "503 Service Unavailable" in line
               for line in retries), retries
    lines = [line for line in pushed.stderr.splitlines() if LAYER_LINE.match(line)]
    assert {line.split()[1] for line in lines} >= {d[:19] for d in layers}, pushed.stderr  # every layer, + config
    assert len(lines) == len(layers) + 1

    fault_proxy.add("GET", r"/blobs/sha256:", "status", status=503, times=1)
    fault_proxy.add("GET", r"/manifests/", "status", status=429, retry_after="0", times=1)
    out = tmp_path / "out"
    pulled = run_cli("pull", "--progress", "plain", f"{fault_proxy.host}/gen/progress:1", root=out, env=ENV)
    retries = [line for line in pulled.stderr.splitlines() if ": retrying in " in line]
    assert any("503 Service Unavailable (GET /v2/gen/progress/blobs/sha256:" in line for line in retries), retries
    assert any("retrying in 0.0s (1/5): 429 Too Many Requests (GET /v2/gen/progress/manifests/1)" in line
               for line in retries), retries
    lines = [line for line in pulled.stderr.splitlines() if LAYER_LINE.match(line)]
    config = _config(out, name="gen/progress:1", host=fault_proxy.host)
    assert sorted(line.split()[1] for line in lines) == sorted([d[:19] for d in layers] + [config]), pulled.stderr
    quiet = run_cli("pull", "-q", f"{fault_proxy.host}/gen/progress:1", root=tmp_path / "q", env=ENV)
    assert quiet.stderr == "" and quiet.stdout.startswith("sha256:")


def _config(root: Path, *, name: str, host: str) -> str:
    images = ImageStore(ContentStore(root))
    (image,) = images.images(images.lookup(f"{host}/{name}"))
    return str(image.manifest.config.digest)[:19]


def test_tty_pull_shows_rich_progress(fault_proxy: FaultProxy, make_image: Callable[..., tuple[Path, str]],
                                      tmp_path: Path) -> None:
    root, name = make_image("gen/ttyprog:1", platforms=("linux/amd64",), layer_sizes=(200_000,), seed=22)
    run_cli("push", name, f"{fault_proxy.host}/gen/ttyprog:1", root=root, env=ENV)
    fault_proxy.add("GET", r"/blobs/sha256:", "status", status=503, times=1)
    pid, fd = pty.fork()
    if pid == 0:  # the child: polyarch on a terminal
        os.environ.update({**ENV, "POLYARCH_ROOT": str(tmp_path / "out"), "COLUMNS": "120"})
        os.execv(sys.executable, [sys.executable, "-m", "polyarch", "pull", f"{fault_proxy.host}/gen/ttyprog:1"])
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    _, status = os.waitpid(pid, 0)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode("utf-8", "replace"))
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "retrying in" in text and "503 Service Unavailable" in text
    done = re.search(r"pulled sha256:[0-9a-f]{12} ━+ (\d+\.\d)/(\d+\.\d) kB \d+\.\d [kMG]?B/s", text)
    assert done and done.group(1) == done.group(2), text  # a rich bar with bytes and rate
    assert not any(LAYER_LINE.match(line.strip()) for line in text.splitlines())


REGISTRY = Path(__file__).resolve().parents[2] / "src" / "polyarch" / "registry"


def test_the_registry_client_never_prints() -> None:
    """No module of the client side of ``registry/`` writes to stdout/stderr or imports click or rich: what a
    transfer does goes to its ``TransferObserver``."""
    offenders = []
    for path in sorted(REGISTRY.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            bad = (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print") or (
                isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr")
                and isinstance(node.value, ast.Name) and node.value.id == "sys") or (
                isinstance(node, ast.Import | ast.ImportFrom) and any(
                    (alias.name if isinstance(node, ast.Import) else node.module or "").split(".")[0]
                    in ("click", "rich") for alias in node.names))
            if bad:
                offenders.append(f"{path.name}:{node.lineno}")  # type: ignore[attr-defined]
    assert offenders == []


def test_push_json_unchanged_stdout(make_image: Callable[..., tuple[Path, str]], fault_proxy: FaultProxy) -> None:
    """Progress goes to stderr: push's stdout is what it was."""
    root, name = make_image("gen/stdout:1", platforms=("linux/amd64",), layer_sizes=(1000,), seed=23)
    proc = run_cli("push", name, f"{fault_proxy.host}/gen/stdout:1", root=root, env=ENV)
    assert proc.stdout.splitlines()[0] == f"{fault_proxy.host}/gen/stdout:1: pushed (2 uploaded, 0 mounted, " \
                                          "0 already present)"
    assert [line.split()[0] for line in proc.stderr.splitlines()] == ["pushed", "pushed"], proc.stderr


def test_build_reports_retries_and_blobs_in_its_progress(fault_proxy: FaultProxy,
                                                         make_image: Callable[..., tuple[Path, str]],
                                                         tmp_path: Path) -> None:
    """A build's FROM pull and --push report through the build's progress: retries as warnings, blobs as info."""
    root, name = make_image("gen/buildbase:1", platforms=("linux/amd64",), layer_sizes=(5000,), seed=24)
    run_cli("push", name, f"{fault_proxy.host}/gen/buildbase:1", root=root, env=ENV)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a").write_text("a\n")
    (ctx / "Dockerfile").write_text(f"FROM {fault_proxy.host}/gen/buildbase:1\nCOPY a /a\n")
    fault_proxy.add("GET", r"/blobs/sha256:", "status", status=503, times=1)
    fault_proxy.add("POST", r"/blobs/uploads/", "status", status=502, times=1)
    proc = run_cli("build", str(ctx), "--progress", "plain", "--platform", "linux/amd64", "--push",
                   "-t", f"{fault_proxy.host}/gen/built:1", root=tmp_path / "fresh", env=ENV)
    lines = proc.stderr.splitlines()
    assert any(line.startswith(f"WARNING: {fault_proxy.host}: retrying in ") and "503 Service Unavailable" in line
               for line in lines), proc.stderr
    assert any("502 Bad Gateway (POST /v2/gen/built/blobs/uploads/)" in line for line in lines), proc.stderr
    assert any(re.match(r"INFO: pulled sha256:[0-9a-f]{12} .* in \d+\.\ds \(", line) for line in lines), proc.stderr
    assert any(re.match(r"INFO: pushed sha256:[0-9a-f]{12} .* in \d+\.\ds \(", line) for line in lines), proc.stderr
