"""``polyarch builder …`` (and the top-level ``create``/``ls``/``use``/``stop``) through the real CLI: the builders
file each command leaves, buildx's listing, ``--builder``/``POLYARCH_BUILDER`` on build and bake, and every bad input
as one ``error:`` line with a non-zero exit and the file untouched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import run_cli


def _env(cfg: Path, **more: str) -> dict[str, str]:
    return {"POLYARCH_CONFIG_DIR": str(cfg), "POLYARCH_BUILDER": "", **more}


def pa(cfg: Path, *args: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    env = _env(cfg, **kw.pop("env", {}))  # type: ignore[arg-type]
    return run_cli(*args, check=check, env=env, **kw)  # type: ignore[arg-type]


def one_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """The command failed with one ``error:`` line (and at most a hint), no traceback; returns the error line."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert lines and lines[0].startswith("error: "), proc.stderr
    assert all(line.startswith("hint: ") for line in lines[1:]), proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def ls_json(cfg: Path, **kw: object) -> dict[str, dict[str, object]]:
    rows = json.loads(pa(cfg, "builder", "ls", "--format", "json", **kw).stdout)
    return {r["name"]: r for r in rows}


def test_create_ls_inspect_use_rm(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    assert pa(cfg, "builder", "create", "--name", "homelab", "--node", "pi5", "--platform", "linux/arm64",
              "ssh://pi@pi5.lan:2222").stdout == "homelab\n"
    pa(cfg, "builder", "create", "--name", "homelab", "--append", "--node", "mini", "--platform",
       "linux/amd64,linux/arm64/v8", "--node-flags", "--root '/srv/poly arch'", "ssh://mini")
    pa(cfg, "builder", "create", "--name", "homelab", "--append", "--use")  # endpoint default: local
    doc = json.loads((cfg / "builders.json").read_text())
    assert doc == {"version": 1, "current": "homelab", "builders": [{"name": "homelab", "driver": "polyarch", "nodes": [
        {"name": "pi5", "endpoint": "ssh://pi@pi5.lan:2222", "platforms": ["linux/arm64"], "flags": []},
        {"name": "mini", "endpoint": "ssh://mini", "platforms": ["linux/amd64", "linux/arm64"],
         "flags": ["--root", "/srv/poly arch"]},
        {"name": "homelab0", "endpoint": "local", "platforms": [], "flags": []}]}]}
    assert (cfg / "builders.json").stat().st_mode & 0o777 == 0o600
    assert cfg.stat().st_mode & 0o777 == 0o700

    rows = ls_json(cfg)
    assert list(rows) == ["homelab", "default"] and rows["homelab"]["current"] and not rows["default"]["current"]
    nodes = {n["name"]: n for n in rows["homelab"]["nodes"]}  # type: ignore[attr-defined]
    assert nodes["pi5"]["status"] == "inactive" and nodes["pi5"]["platforms"] == ["linux/arm64*"]
    local = nodes["homelab0"]
    assert local["status"] == "running" and "linux/amd64*" in local["platforms"]

    table = pa(cfg, "ls").stdout.splitlines()  # the top-level alias, buildx's layout
    assert table[0].split() == ["NAME/NODE", "DRIVER/ENDPOINT", "STATUS", "POLYARCH", "PLATFORMS"]
    assert table[1].split() == ["homelab*", "polyarch"]
    assert table[2].split() == ["\\_", "pi5", "\\_", "ssh://pi@pi5.lan:2222", "inactive", "linux/arm64*"]
    assert table[5].split()[:2] == ["default", "polyarch"]

    text = pa(cfg, "builder", "inspect").stdout  # the builder in use
    assert text.startswith("Name:          homelab\nDriver:        polyarch\n\nNodes:\n")
    assert "Name:             mini\nEndpoint:         ssh://mini\nStatus:           inactive\n" \
           "Flags:            --root '/srv/poly arch'\nPlatforms:        linux/amd64*, linux/arm64*\n" in text
    pa(cfg, "builder", "create", "--name", "down", "--node", "gone", "--platform", "linux/arm64",
       "ssh://nobody@127.0.0.1:1")  # nothing listens on port 1
    boot = pa(cfg, "builder", "inspect", "--bootstrap", "down", check=False, timeout=60)
    one_error(boot, "builder down: node gone (ssh://nobody@127.0.0.1:1) ")
    assert "Name:             gone\nEndpoint:         ssh://nobody@127.0.0.1:1\nStatus:           error\n" in boot.stdout
    assert "Status:           running" in pa(cfg, "builder", "inspect", "--bootstrap", "default").stdout
    pa(cfg, "builder", "rm", "down")

    assert pa(cfg, "builder", "rm", "homelab", "--node", "mini").stdout == "node mini removed from homelab\n"
    assert [n["name"] for n in ls_json(cfg)["homelab"]["nodes"]] == ["pi5", "homelab0"]  # type: ignore[attr-defined]
    pa(cfg, "use", "default")
    assert pa(cfg, "builder", "rm", "homelab").stdout == "homelab removed\n"
    assert json.loads((cfg / "builders.json").read_text()) == {"version": 1, "current": "default", "builders": []}
    pa(cfg, "builder", "stop")  # default: nothing to stop, and no error


def test_generated_names_and_top_level_aliases(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    assert pa(cfg, "create").stdout == "builder0\n"
    assert pa(cfg, "create", "--use", "ssh://a").stdout == "builder1\n"
    assert [n["name"] for n in ls_json(cfg)["builder1"]["nodes"]] == ["builder10"]  # type: ignore[attr-defined]
    assert ls_json(cfg)["builder1"]["current"]
    pa(cfg, "use", "builder0")
    pa(cfg, "stop", "builder1")
    assert ls_json(cfg)["builder0"]["current"]


def test_rm_and_inspect_stay_image_commands(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    pa(cfg, "create", "--name", "b1")
    image_rm = pa(cfg, "rm", "b1", check=False, root=tmp_path / "store")  # the image command, not the builder
    assert image_rm.returncode != 0 and "builder" not in image_rm.stderr
    image_inspect = pa(cfg, "inspect", "b1", check=False, root=tmp_path / "store")
    assert image_inspect.returncode != 0 and "Driver:" not in image_inspect.stdout
    assert "b1" in ls_json(cfg)


def test_rm_force_of_the_builder_in_use_falls_back_to_default(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    pa(cfg, "create", "--name", "b1", "--use")
    one_error(pa(cfg, "builder", "rm", "b1", check=False), "builder b1 is in use")
    assert "b1" in ls_json(cfg)
    pa(cfg, "builder", "rm", "--force", "b1")
    assert ls_json(cfg)["default"]["current"]


def test_concurrent_appends_keep_every_node(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    pa(cfg, "create", "--name", "b", "--node", "n0")
    env = {**__import__("os").environ, **_env(cfg)}
    procs = [subprocess.Popen([sys.executable, "-m", "polyarch", "create", "--name", "b", "--append", "--node",
                               f"n{i}", f"ssh://host{i}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(1, 5)]
    for p in procs:
        assert p.wait(60) == 0, p.stderr.read() if p.stderr else ""
    names = sorted(n["name"] for n in ls_json(cfg)["b"]["nodes"])  # type: ignore[attr-defined]
    assert names == ["n0", "n1", "n2", "n3", "n4"]


SETUP = (("create", "--name", "b1", "--use"), ("create", "--name", "b2", "--node", "solo", "ssh://h2"))

BAD = {
    "duplicate name": (("create", "--name", "b2"), "builder b2 already exists"),
    "reserved name": (("create", "--name", "default"), "reserved"),
    "bad builder name": (("create", "--name", "-x"), "invalid builder name"),
    "bad builder name 2": (("create", "--name", "a/b"), "invalid builder name"),
    "bad node name": (("create", "--name", "b3", "--node", "a b"), "invalid node name"),
    "append to missing": (("create", "--name", "nope", "--append"), "no builder 'nope' to append"),
    "append without name": (("create", "--append", "ssh://x"), "--append needs --name"),
    "duplicate endpoint": (("create", "--name", "b2", "--append", "--node", "again", "ssh://h2"),
                           "already node solo"),
    "bad endpoint scheme": (("create", "--name", "b3", "tcp://h:1234"), "invalid endpoint"),
    "bad endpoint option": (("create", "--name", "b3", "ssh://-oProxyCommand=x"), "invalid endpoint"),
    "bad endpoint user": (("create", "--name", "b3", "ssh://-l@h"), "bad user"),
    "bad endpoint password": (("create", "--name", "b3", "ssh://u:pw@h"), "invalid endpoint"),
    "bad endpoint port": (("create", "--name", "b3", "ssh://h:99999"), "bad port"),
    "bad endpoint port 2": (("create", "--name", "b3", "ssh://h:2²"), "bad port"),
    "bad endpoint path": (("create", "--name", "b3", "ssh://h/tmp"), "invalid endpoint"),
    "bad endpoint empty host": (("create", "--name", "b3", "ssh://"), "bad host"),
    "bad endpoint ipv6": (("create", "--name", "b3", "ssh://[zz]"), "bad IPv6"),
    "bad platform": (("create", "--name", "b3", "--platform", "linux/nosucharch", "ssh://h"), "nosucharch"),
    "bad node flags": (("create", "--name", "b3", "--node-flags", "'unclosed", "ssh://h"), "--node-flags"),
    "node flags on local": (("create", "--name", "b3", "--node-flags", "--root /x"), "ssh nodes"),
    "use unknown": (("use", "nope"), "no builder 'nope'"),
    "inspect unknown": (("builder", "inspect", "nope"), "no builder 'nope'"),
    "stop unknown": (("builder", "stop", "nope"), "no builder 'nope'"),
    "rm unknown": (("builder", "rm", "nope"), "no builder 'nope'"),
    "rm in use": (("builder", "rm", "b1"), "builder b1 is in use"),
    "rm default": (("builder", "rm", "default"), "cannot be removed"),
    "rm unknown node": (("builder", "rm", "b2", "--node", "nope"), "no node 'nope'"),
    "rm last node": (("builder", "rm", "b2", "--node", "solo"), "last node"),
    "build unknown builder": (("build", "--builder", "nope", "."), "no builder 'nope'"),
    "bake unknown builder": (("bake", "--builder", "nope", "--file", "-"), "no builder 'nope'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_error_line_and_changes_nothing(tmp_path: Path, case: str) -> None:
    cfg = tmp_path / "cfg"
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    for args in SETUP:
        pa(cfg, *args)
    before = (cfg / "builders.json").read_bytes()
    args, words = BAD[case]
    proc = pa(cfg, *args, check=False, cwd=tmp_path, root=tmp_path / "store",
              input=b'target "default" {}\n' if "bake" in args else None)
    one_error(proc, words)
    assert (cfg / "builders.json").read_bytes() == before


def test_polyarch_builder_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    pa(cfg, "create", "--name", "b1")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    one_error(pa(cfg, "build", ".", check=False, cwd=tmp_path, env={"POLYARCH_BUILDER": "nope"}),
              "no builder 'nope'")
    assert "Name:          b1" in pa(cfg, "builder", "inspect", env={"POLYARCH_BUILDER": "b1"}).stdout


CORRUPT = {
    "not json": (b"{nope", "not valid JSON"),
    "not utf-8": (b"\xff\xfe", "not valid JSON"),
    "a list": (b"[]", "expected an object"),
    "newer version": (b'{"version": 2, "current": "default", "builders": []}', "newer polyarch"),
    "version string": (b'{"version": "1", "current": "default", "builders": []}', "version '1'"),
    "unknown key": (b'{"version": 1, "current": "default", "builders": [], "x": 1}', "unknown key 'x'"),
    "missing key": (b'{"version": 1, "builders": []}', "missing key 'current'"),
    "current unknown": (b'{"version": 1, "current": "ghost", "builders": []}', "no builder 'ghost'"),
    "builders not list": (b'{"version": 1, "current": "default", "builders": {}}', "expected a list"),
    "no nodes": (b'{"version": 1, "current": "default", "builders": [{"name": "b", "driver": "polyarch", '
                 b'"nodes": []}]}', "at least one node"),
    "bad endpoint": (b'{"version": 1, "current": "default", "builders": [{"name": "b", "driver": "polyarch", '
                     b'"nodes": [{"name": "n", "endpoint": "ssh://-oProxyCommand=sh", "platforms": [], '
                     b'"flags": []}]}]}', "invalid endpoint"),
    "bad platform": (b'{"version": 1, "current": "default", "builders": [{"name": "b", "driver": "polyarch", '
                     b'"nodes": [{"name": "n", "endpoint": "local", "platforms": ["linux/zz"], "flags": []}]}]}',
                     "zz"),
    "flag not string": (b'{"version": 1, "current": "default", "builders": [{"name": "b", "driver": "polyarch", '
                        b'"nodes": [{"name": "n", "endpoint": "local", "platforms": [], "flags": [1]}]}]}',
                        "flags[0]: expected a string"),
    "duplicate builder": (b'{"version": 1, "current": "default", "builders": [' + b", ".join(
        [b'{"name": "b", "driver": "polyarch", "nodes": [{"name": "n", "endpoint": "local", "platforms": [], '
         b'"flags": []}]}'] * 2) + b"]}", "appears twice"),
    "reserved name": (b'{"version": 1, "current": "default", "builders": [{"name": "default", "driver": '
                      b'"polyarch", "nodes": [{"name": "n", "endpoint": "local", "platforms": [], "flags": []}]}]}',
                      "reserved"),
    "other driver": (b'{"version": 1, "current": "default", "builders": [{"name": "b", "driver": "docker", '
                     b'"nodes": [{"name": "n", "endpoint": "local", "platforms": [], "flags": []}]}]}',
                     "unknown driver"),
    "deep nesting": (b"[" * 100000 + b"]" * 100000, "builders file"),
    "too large": (b" " * ((1 << 20) + 1), "larger than"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_builders_file(tmp_path: Path, case: str) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    data, words = CORRUPT[case]
    (cfg / "builders.json").write_bytes(data)
    line = one_error(pa(cfg, "ls", check=False), "builders file", words)
    assert str(cfg / "builders.json") in line
    one_error(pa(cfg, "create", "--name", "x", check=False), "builders file")
    one_error(pa(cfg, "build", ".", check=False, cwd=tmp_path), "builders file")
    assert (cfg / "builders.json").read_bytes() == data


def test_builders_file_that_is_not_a_regular_file(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "builders.json").mkdir()
    one_error(pa(cfg, "ls", check=False), "builders file")
    (cfg / "builders.json").rmdir()
    (tmp_path / "elsewhere.json").write_text('{"version": 1, "current": "default", "builders": []}')
    (cfg / "builders.json").symlink_to(tmp_path / "elsewhere.json")
    one_error(pa(cfg, "ls", check=False), "builders file")  # never followed


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY hello /hello\n")
    (ctx / "hello").write_text("hi\n")
    return ctx


def test_build_with_a_local_builder_builds_here(tmp_path: Path) -> None:
    cfg, ctx, store = tmp_path / "cfg", _context(tmp_path), tmp_path / "store"
    pa(cfg, "create", "--name", "here", "--node", "me")
    pa(cfg, "build", "--builder", "here", "--platform", "linux/amd64,linux/arm64", "-t", "app:1", "--load",
       "--progress", "plain", str(ctx), root=store)
    out = pa(cfg, "images", root=store).stdout
    assert "app" in out
    pa(cfg, "use", "here")  # the builder in use, no flag
    pa(cfg, "build", "-t", "app:2", "--load", "--progress", "plain", str(ctx), root=store)
    (ctx / "docker-bake.hcl").write_text('target "default" {\n  context = "."\n  tags = ["app:3"]\n}\n')
    pa(cfg, "bake", "--builder", "here", "--load", "--progress", "plain", cwd=ctx, root=store)
    assert "app:3" in pa(cfg, "images", "--format", "{{.Repository}}:{{.Tag}}", root=store).stdout


def test_build_with_an_unreachable_ssh_node_stops_before_any_work(tmp_path: Path) -> None:
    cfg, ctx, store = tmp_path / "cfg", _context(tmp_path), tmp_path / "store"
    pa(cfg, "create", "--name", "farm", "--node", "pi5", "--platform", "linux/arm64", "ssh://pi@pi5")
    one_error(pa(cfg, "build", "--builder", "farm", "-t", "app:1", "--load", str(ctx), root=store, check=False),
              "pi5 (ssh://pi@pi5)")  # remote execution (helper J2) names the node it cannot use
    (ctx / "docker-bake.hcl").write_text('target "default" {\n  context = "."\n  tags = ["app:3"]\n}\n')
    one_error(pa(cfg, "bake", "--load", cwd=ctx, root=store, check=False, env={"POLYARCH_BUILDER": "farm"}),
              "pi5")
    assert not (store / "blobs").exists() or pa(cfg, "images", "-q", root=store).stdout == ""
