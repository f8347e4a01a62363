"""``polyarch bake`` as a user runs it: --print, --list, file lookup, and bad input → one located error line
(plus source and caret), non-zero exit, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def bake(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "polyarch", "bake", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "POLYARCH_ROOT": str(cwd / ".store"), **(env or {})},
                          timeout=60)


BAKE = '''
variable "TAG" {
  default = "dev"
  description = "image tag"
}
group "default" { targets = ["app"] }
target "app" {
  tags = ["acme/app:${TAG}"]
  platforms = ["linux/amd64"]
}
target "other" {}
'''


def test_print_and_env(tmp_path: Path) -> None:
    (tmp_path / "docker-bake.hcl").write_text(BAKE)
    proc = bake(tmp_path, "--print", "--set", "app.platform=linux/arm64", env={"TAG": "v3"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "group": {"default": {"targets": ["app"]}},
        "target": {"app": {"context": ".", "dockerfile": "Dockerfile", "tags": ["acme/app:v3"],
                           "platforms": ["linux/arm64"]}}}


def test_list(tmp_path: Path) -> None:
    (tmp_path / "docker-bake.hcl").write_text(BAKE)
    assert bake(tmp_path, "--list", "targets").stdout.splitlines() == ["app", "other", "default\t(group: app)"]
    assert bake(tmp_path, "--list", "variables").stdout.splitlines() == ["TAG\tdev\timage tag"]


def test_compose_and_hcl_are_merged_in_lookup_order(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  app:\n    image: acme/app:compose\n    build: .\n")
    (tmp_path / "docker-bake.hcl").write_text('target "app" {\n  args = { FROM_HCL = "1" }\n}\n')
    doc = json.loads(bake(tmp_path, "--print").stdout)
    assert doc["target"]["app"] == {"context": ".", "dockerfile": "Dockerfile", "args": {"FROM_HCL": "1"},
                                    "tags": ["acme/app:compose"]}


@pytest.mark.parametrize(("text", "args", "first_line", "code"), [
    ('target "a" {\n  tags = [\n', (), "error: docker-bake.hcl:3:1: syntax error", 1),
    ('target "a" {\n  tags = [lowr("X")]\n}\n', ("a",), "error: docker-bake.hcl:2:11: unknown function 'lowr'", 1),
    ('target "a" {}\n', ("b",), "error: unknown target 'b'", 2),
    ('target "a" {\n  inherits = ["a"]\n}\n', ("a",), "error: docker-bake.hcl:1:1: inherits cycle: a -> a", 1),
    ('variable "V" {\n  default = "x"\n  validation {\n    condition = V == "y"\n    error_message = "V must be y"\n'
     '  }\n}\ntarget "a" {}\n', ("a",), "error: docker-bake.hcl:4:5: variable 'V' ('x'): V must be y", 1),
    ('target "a" {}\n', ("a", "--set", "a.nope=1"), "error: --set 'a.nope=1': unknown key 'nope'", 2),
    ('target "a" {\n  matrix = { x = range(1000), y = range(2) }\n  name = "a-${x}-${y}"\n}\n', ("a",),
     "error: docker-bake.hcl:2:3: target 'a': matrix has 2000 combinations (limit 1000)", 1),
    ('target "a" {\n  tags = ' + "[" * 3000 + "]" * 3000 + "\n}\n", ("a",),
     "error: docker-bake.hcl:1:1: expressions are nested too deeply", 1),
    ("".join(f'variable "V{i}" {{\n  default = "${{V{i + 1}}}"\n}}\n' for i in range(3000)) +
     'variable "V3000" {\n  default = "end"\n}\ntarget "a" {\n  tags = [V0]\n}\n', ("a",),
     "error: expressions or function calls are nested too deeply", 1),
], ids=["syntax", "unknown-function", "unknown-target", "inherits-cycle", "validation", "set-key", "matrix-limit",
        "deep-expression", "deep-variables"])
def test_bad_input_is_one_located_error(tmp_path: Path, text: str, args: tuple[str, ...], first_line: str,
                                        code: int) -> None:
    (tmp_path / "docker-bake.hcl").write_text(text)
    proc = bake(tmp_path, "--print", *args)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.splitlines()[0].startswith(first_line), proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_file(tmp_path: Path) -> None:
    proc = bake(tmp_path, "--print")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no bake file found")


def test_stdin_file_and_environment_are_read_by_the_cli(tmp_path: Path) -> None:
    """``-f -`` reads stdin; the environment sets variables and interpolates compose files (the CLI reads both)."""
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    build: .\n    image: acme/web:${TAG}\n")
    proc = subprocess.run([sys.executable, "-m", "polyarch", "bake", "-f", "-", "-f", "compose.yaml", "--print",
                           "app", "web"], cwd=tmp_path, input=BAKE, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "POLYARCH_ROOT": str(tmp_path / ".store"), "TAG": "v9"})
    assert proc.returncode == 0, proc.stderr
    targets = json.loads(proc.stdout)["target"]
    assert (targets["app"]["tags"], targets["web"]["tags"]) == (["acme/app:v9"], ["acme/web:v9"])


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "bad.hcl").write_bytes(b"\xff\xfe")
    for name in ("missing.hcl", "bad.hcl"):
        proc = bake(tmp_path, "-f", name, "--print")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"error: cannot read bake file {name}"), proc.stderr
        assert "Traceback" not in proc.stderr


def test_compose_and_inline_targets_build(store_root: Path, tmp_path: Path) -> None:
    """COPY-only targets (no RUN: no root needed): a compose service and an HCL target with dockerfile-inline."""
    proj = tmp_path / "proj"
    (proj / "web").mkdir(parents=True)
    (proj / "web" / "Dockerfile").write_text("FROM base/busybox:1\nARG GREETING=unset\nCOPY index.html /www/\n"
                                             "LABEL greeting=$GREETING\n")
    (proj / "web" / "index.html").write_text("<h1>hi</h1>\n")
    (proj / "compose.yaml").write_text("services:\n  web:\n    image: acme/web:${TAG:-dev}\n    build:\n"
                                       "      context: ./web\n      args:\n        GREETING: hello\n"
                                       "      x-bake:\n        platforms: [linux/amd64, linux/arm64]\n")
    (proj / "docker-bake.hcl").write_text('group "default" {\n  targets = ["web", "inline"]\n}\n'
                                          'target "inline" {\n  context = "./web"\n'
                                          '  dockerfile-inline = "FROM base/busybox:1\\nCOPY index.html /i.html\\n"\n'
                                          '  tags = ["acme/inline:1"]\n}\n')
    proc = subprocess.run([sys.executable, "-m", "polyarch", "bake", "--load", "--progress", "plain"], cwd=proj,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "POLYARCH_ROOT": str(store_root), "TAG": "7",
                               "SOURCE_DATE_EPOCH": "1700000000"})
    assert proc.returncode == 0, proc.stderr
    from polyarch.content.images import ImageStore
    from polyarch.content.store import ContentStore

    images = ImageStore(ContentStore(store_root))
    web = images.images(images.lookup("acme/web:7"))
    assert [str(i.platform) for i in web] == ["linux/amd64", "linux/arm64"]
    assert web[0].config.config.labels == {"greeting": "hello"}
    assert len(images.images(images.lookup("acme/inline:1"))) == 1
