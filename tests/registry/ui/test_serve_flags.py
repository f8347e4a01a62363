"""``registry serve`` flags of the web page: on by default on loopback, off with ``--no-ui`` and by default
elsewhere; ``--hosts`` needs the page; a bad hosts file is one error line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from tests.registry.server.conftest import cli_env, free_port, start_server


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "polyarch", "registry", "serve", *args], env=cli_env(tmp_path / "s"),
                          capture_output=True, text=True, timeout=60)


def test_page_on_by_default_on_loopback_and_off_with_no_ui(tmp_path: Path) -> None:
    on = start_server(tmp_path / "a" / "store")
    off = start_server(tmp_path / "b" / "store", "--no-ui")
    try:
        r = httpx.get(f"{on.url}/ui/", timeout=10)
        assert r.status_code == 200 and "Repositories" in r.text
        assert "web page: http://" in on.log.read_text()
        assert httpx.get(f"{off.url}/ui/", timeout=10).status_code == 404
        assert httpx.get(f"{off.url}/v2/", timeout=10).status_code == 200
    finally:
        on.stop()
        off.stop()


def test_hosts_needs_the_page_and_a_good_file(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("hosts:\n  pi4: linux/arm64\n")
    r = _serve(tmp_path, "--addr", f"0.0.0.0:{free_port()}", "--hosts", str(hosts))  # not loopback: page off
    assert r.returncode != 0 and r.stderr.strip() == "error: --hosts is for the web page: add --ui"
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts:\n  pi4: linux/notanarch\n")
    r = _serve(tmp_path, "--addr", f"127.0.0.1:{free_port()}", "--hosts", str(bad))
    assert r.returncode != 0 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert "notanarch" in r.stderr
