"""Issue 13 items reached by a Dockerfile and its context rather than by a layer, through ``polyarch build``,
aimed at the sentinel: heredoc names (2), mount option injection through a context directory name (3), the
store's permissions (4), .dockerignore for RUN bind mounts (5), remote ADD (17, in test_semantics), the RUN
sandbox's network (16), build-arg values in history (18)."""

from __future__ import annotations

import http.server
import json
import os
import stat
import threading
from collections.abc import Iterator

import pytest

from tests.security.cases import UP
from tests.security.conftest import PLATFORM, World, error_lines
from tests.security.sentinel import SENTINEL_FILES

pytestmark = pytest.mark.root


def _build(world: World, dockerfile: str, *extra: str):  # type: ignore[no-untyped-def]
    (world.ctx / "Dockerfile").write_text(dockerfile)
    return world.cli("build", str(world.ctx), "--progress", "plain", "--platform", PLATFORM, *extra)


def _contained(proc) -> None:  # type: ignore[no-untyped-def]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    if proc.returncode != 0:
        assert len(error_lines(proc.stderr)) == 1, proc.stderr


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_item2_copy_heredoc_name_is_a_word(world: World, how: str) -> None:
    s = str(world.sentinel)
    name = UP + s.lstrip("/") + "/pwn" if how == "dotdot" else s + "/pwn"
    proc = _build(world, f"FROM scratch\nCOPY <<{name} /dst\npwned\n{name}\n", "-o", f"type=local,dest={world.out}")
    _contained(proc)
    if proc.returncode == 0:
        assert (world.out / "dst").read_bytes() == b"pwned\n"


def test_item2_run_heredoc_name_is_a_word(world: World) -> None:
    name = UP + str(world.sentinel).lstrip("/") + "/pwn"
    _contained(_build(world, f"FROM base/busybox:1\nRUN <<{name}\n#!/bin/sh\ntrue\n{name}\n"))


def test_item3_context_dir_name_with_colon_adds_no_lower_layer(world: World) -> None:
    """A context directory named ``d:<sentinel>/etc`` bound rw: the sentinel's etc must not show up in the step."""
    weird = world.ctx / ("d:" + str(world.sentinel) + "/etc").lstrip("/")
    weird.mkdir(parents=True)
    (world.ctx / "d").mkdir(exist_ok=True)
    (weird / "mine").write_text("context file\n")
    source = "d:" + str(world.sentinel) + "/etc"
    proc = _build(world, f"FROM base/busybox:1\nRUN --mount=type=bind,source={source},target=/m,rw "
                         "sh -c 'ls /m; cat /m/shadow /m/passwd; true'\n", "--no-cache")
    _contained(proc)
    assert SENTINEL_FILES["etc/shadow"].decode().strip() not in proc.stderr + proc.stdout
    assert SENTINEL_FILES["etc/passwd"].decode().strip() not in proc.stderr + proc.stdout


def test_item4_store_is_private(world: World) -> None:
    os.chmod(world.store, 0o755)
    world.ok("images")
    assert stat.S_IMODE(os.stat(world.store).st_mode) & 0o077 in (0, 0o011)


def test_item5_run_bind_mount_of_context_honours_dockerignore(world: World) -> None:
    (world.ctx / ".env").write_text("TOPSECRET-h6\n")
    (world.ctx / ".dockerignore").write_text(".env\n")
    proc = _build(world, "FROM base/busybox:1\nRUN --mount=type=bind,target=/ctx sh -c 'cat /ctx/.env; true'\n",
                  "--no-cache")
    _contained(proc)
    assert proc.returncode == 0, proc.stderr
    assert "TOPSECRET-h6" not in proc.stderr + proc.stdout


@pytest.fixture
def loopback_service() -> Iterator[str]:
    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"HOST-LOOPBACK-REACHED\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield str(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_item16_run_cannot_reach_the_hosts_loopback(world: World, loopback_service: str) -> None:
    # (busybox-static's wget crashes on name lookup; nc with a numeric address does not)
    proc = _build(world, "FROM base/busybox:1\nRUN printf 'GET / HTTP/1.0\\r\\n\\r\\n' | "
                         f"nc -w 3 127.0.0.1 {loopback_service}; true\n", "--no-cache")
    _contained(proc)
    assert "HOST-LOOPBACK-REACHED" not in proc.stderr + proc.stdout


def test_item18_build_arg_values_not_in_the_arg_history_line(world: World) -> None:
    """BuildKit writes ``ARG TOKEN`` (the RUN line's ``|1 TOKEN=…`` prefix it does write, as Docker documents)."""
    oci = world.tmp / "oci"
    proc = _build(world, "FROM base/busybox:1\nARG TOKEN\nRUN true\n", "--build-arg", "TOKEN=hunter2-h6",
                  "-o", f"type=oci,dest={oci},tar=false")
    assert proc.returncode == 0, proc.stderr
    history = []
    for blob in (oci / "blobs" / "sha256").iterdir():
        try:
            doc = json.loads(blob.read_bytes())
        except ValueError:
            continue
        if isinstance(doc, dict) and "history" in doc:
            history += [h.get("created_by", "") for h in doc["history"]]
    args = [line for line in history if line.startswith("ARG")]
    assert args == ["ARG TOKEN"], history
