"""Hostile Dockerfiles and contexts through the real CLI: nothing outside the store and the build's scratch changes.

Each test keeps a *sentinel* directory beside the store and the context (under the test's tmp dir) and checks
that its tree and bytes are identical after the build, whatever the build's outcome. Covered here (issue 13):
heredoc names that are paths (item 2), ``RUN --mount=type=bind`` of the context and ``.dockerignore`` (item 5),
remote ``ADD`` of archives (item 17), ``--build-arg`` values in ``ARG`` history lines (item 18), and other
Dockerfile- or context-controlled strings that name paths (cache ids, mount targets, secret ids, ``COPY --from``
paths through symlinks, ``WORKDIR`` and ``ADD`` destinations through symlinks).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from .conftest import build, images_of, layer_file, layer_members, needs_run, serve_directory, write_tree

ESCAPE = "../" * 24  # more than enough to climb from any scratch directory to /


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under ``root`` (root included) → (mode, content or link target); directories by mode alone."""
    out: dict[str, tuple[int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames]:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                data = os.readlink(path).encode()
            elif stat.S_ISREG(st.st_mode):
                data = Path(path).read_bytes()
            else:
                data = b""
            out[os.path.relpath(path, root)] = (st.st_mode, data)
    return out


@pytest.fixture(name="sentinel")
def sentinel_fixture(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A directory outside store and context; yields it, then checks nothing in it changed."""
    root = write_tree(tmp_path / "sentinel", {"secret.txt": "host secret\n", "sub/keep": "keep\n"})
    (root / "secret.txt").chmod(0o600)
    before = _snapshot(root)
    yield root
    assert _snapshot(root) == before, "the build changed the sentinel directory outside the store"


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- item 2: heredoc names are words, bodies stay in the build's scratch ----------------------------------------


@pytest.mark.parametrize("instruction", ["COPY <<{name} /dst\nowned\n{name}", "RUN <<{name}\n#!/bin/sh\necho hi\n{name}"],
                         ids=["copy", "run-script"])
@pytest.mark.parametrize("base", ["scratch", "base/busybox:1"])
def test_heredoc_name_cannot_write_outside_scratch(store_root: Path, tmp_path: Path, sentinel: Path, base: str,
                                                   instruction: str) -> None:
    name = f"{ESCAPE}{str(sentinel).lstrip('/')}/pwned"
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": f"FROM {base}\n{instruction.format(name=name)}\n"})
    proc = build(store_root, ctx, "--platform", "linux/amd64", "-t", "h:1", "--load", check=False)
    assert proc.returncode != 0
    assert "heredoc" in _error_line(proc.stderr)


def test_heredoc_names_are_rooted_in_scratch_like_buildkit(store_root: Path, tmp_path: Path, sentinel: Path) -> None:
    """``<<../x`` names the file ``x`` at the root of the heredoc's own scratch tree (BuildKit's Mkfile)."""
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nCOPY <<../up <</abs <<EOF /d/\n"
                                                      "one\n../up\ntwo\n/abs\nthree\nEOF\n"})
    env = {"TMPDIR": str(sentinel)}  # the build's scratch lives inside the sentinel; only its own dirs may appear
    os.chmod(sentinel, 0o755)
    before = set(os.listdir(sentinel))
    build(store_root, ctx, "--platform", "linux/amd64", "-t", "h:2", "--load", env=env)
    assert set(os.listdir(sentinel)) == before
    img = images_of(store_root, "h:2")[0]
    assert layer_file(store_root, img, 0, "d/up") == b"one\n"
    assert layer_file(store_root, img, 0, "d/abs") == b"two\n"
    assert layer_file(store_root, img, 0, "d/EOF") == b"three\n"


@pytest.mark.parametrize("name", ["a/b", "..", ".", "/", "x/../y/z"])
def test_heredoc_name_with_directories_is_an_error(store_root: Path, tmp_path: Path, name: str) -> None:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": f"FROM scratch\nCOPY <<{name} /d/\nbody\n{name}\n"})
    before = (store_root / "index.json").read_bytes()
    proc = build(store_root, ctx, "--platform", "linux/amd64", "-t", "h:3", "--load", check=False)
    assert proc.returncode != 0
    assert "heredoc" in _error_line(proc.stderr)
    assert (store_root / "index.json").read_bytes() == before


@needs_run("linux/amd64")
def test_run_heredoc_script_runs_from_dev_pipes(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\n"
                                                      "RUN <<run.sh\n#!/bin/sh\necho \"$0\" > /where\nrun.sh\n"})
    build(store_root, ctx, "--platform", "linux/amd64", "-t", "h:4", "--load")
    img = images_of(store_root, "h:4")[0]
    assert layer_file(store_root, img, -1, "where") == b"/dev/pipes/run.sh\n"


# --- item 5: a bind mount of the context shows what .dockerignore admits ----------------------------------------


def _ignored_context(tmp_path: Path, dockerfile: str) -> Path:
    return write_tree(tmp_path / "ctx", {
        "Dockerfile": dockerfile,
        ".dockerignore": ".env\n.git\nkeys\n*.pem\n!keep.pem\n",
        ".env": "TOKEN=s3cr3t\n",
        ".git/config": "[core]\n",
        "keys/id_ed25519": "PRIVATE\n",
        "server.pem": "PRIVATE\n",
        "keep.pem": "public\n",
        "src/app.txt": "app\n",
    })


@needs_run("linux/amd64")
def test_bind_mount_of_context_applies_dockerignore(store_root: Path, tmp_path: Path, sentinel: Path) -> None:
    ctx = _ignored_context(tmp_path, "FROM base/busybox:1\n"
                           "RUN --mount=type=bind,target=/ctx cd /ctx && find . | sort > /listing\n"
                           "RUN --mount=type=bind,target=/ctx sh -c 'touch /ctx/new 2>/dev/null && echo rw"
                           " || echo ro' > /ro\n"
                           "RUN --mount=type=bind,target=/ctx,rw rm /ctx/src/app.txt && touch /ctx/new2"
                           " && echo done > /rw\n")
    before = _snapshot(ctx)
    build(store_root, ctx, "--platform", "linux/amd64", "-t", "m:1", "--load")
    img = images_of(store_root, "m:1")[0]
    listing = layer_file(store_root, img, -3, "listing").decode().split()
    assert listing == sorted([".", "./.dockerignore", "./Dockerfile", "./keep.pem", "./src", "./src/app.txt"])
    assert layer_file(store_root, img, -2, "ro") == b"ro\n"
    assert layer_file(store_root, img, -1, "rw") == b"done\n"
    assert _snapshot(ctx) == before  # rw changes were discarded


@needs_run("linux/amd64")
def test_bind_mount_of_an_ignored_path_is_not_found(store_root: Path, tmp_path: Path) -> None:
    ctx = _ignored_context(tmp_path, "FROM base/busybox:1\nRUN --mount=type=bind,source=keys,target=/k cat /k/*\n")
    proc = build(store_root, ctx, "--platform", "linux/amd64", "-t", "m:2", "--load", check=False)
    assert proc.returncode != 0
    assert "PRIVATE" not in proc.stderr
    _error_line(proc.stderr)


# --- item 17: remote archives are copied as they are -------------------------------------------------------------


def _tar_bytes(gz: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        data = b"inside\n"
        info = tarfile.TarInfo("pkg/inside.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_add_remote_archive_is_not_unpacked(store_root: Path, tmp_path: Path, sentinel: Path) -> None:
    web = tmp_path / "web"
    web.mkdir()
    plain, gz = _tar_bytes(False), _tar_bytes(True)
    (web / "x.tar").write_bytes(plain)
    (web / "x.tar.gz").write_bytes(gz)
    server, url = serve_directory(web)
    try:
        good = "sha256:" + hashlib.sha256(plain).hexdigest()
        ctx = write_tree(tmp_path / "ctx", {"Dockerfile": f"FROM scratch\nADD {url}/x.tar /d/\n"
                                                          f"ADD {url}/x.tar.gz /d/\n"
                                                          f"ADD --checksum={good} {url}/x.tar /named.tar\n"
                                                          f"ADD --unpack=true {url}/x.tar.gz /u/\n"})
        build(store_root, ctx, "--platform", "linux/amd64", "-t", "a:1", "--load")
    finally:
        server.shutdown()
    img = images_of(store_root, "a:1")[0]
    assert layer_file(store_root, img, 0, "d/x.tar") == plain
    assert layer_file(store_root, img, 1, "d/x.tar.gz") == gz
    assert layer_file(store_root, img, 2, "named.tar") == plain
    assert not any("inside" in name for i in range(3) for name in layer_members(store_root, img, i))
    assert layer_file(store_root, img, 3, "u/pkg/inside.txt") == b"inside\n"  # explicit --unpack=true: BuildKit's


# --- item 18: --build-arg values are not written into ARG history lines ------------------------------------------


def test_build_arg_values_stay_out_of_arg_history(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "ARG GLOBAL\nFROM scratch\nARG TOKEN\nARG GLOBAL\n"
                                                      "ARG DERIVED=${TOKEN}-x PLAIN=default\nCOPY a /a\n",
                                        "a": "a\n"})
    build(store_root, ctx, "--platform", "linux/amd64", "-t", "s:1", "--load", "--build-arg", "TOKEN=s3cr3t",
          "--build-arg", "GLOBAL=s3cr3t", "--build-arg", "PLAIN=s3cr3t")
    history = [h.created_by for h in images_of(store_root, "s:1")[0].config.history]
    args = [h for h in history if h.startswith("ARG")]
    assert args == ["ARG TOKEN", "ARG GLOBAL", "ARG DERIVED=${TOKEN}-x PLAIN=default"]
    assert not any("s3cr3t" in h for h in history)


# --- other Dockerfile-controlled names --------------------------------------------------------------------------


@needs_run("linux/amd64")
def test_mount_ids_and_targets_stay_inside(store_root: Path, tmp_path: Path, sentinel: Path) -> None:
    """Cache ids and secret ids name no host path; mount targets, WORKDIR and ADD destinations through symlinks
    planted by a step resolve inside the rootfs."""
    where = str(sentinel).lstrip("/")
    secret = tmp_path / "secret.txt"
    secret.write_text("value\n")
    for line in (f"RUN --mount=type=cache,id={ESCAPE}{where},target=/c touch /c/pwned",
                 f"RUN --mount=type=cache,id=/{where}/sub,target=/c touch /c/pwned",
                 f"RUN --mount=type=secret,id={ESCAPE}{where}/s,target=/s cat /s",
                 f"RUN --mount=type=tmpfs,target={ESCAPE}{where}/t true",
                 f"RUN --mount=type=bind,source={ESCAPE}{where},target=/b ls /b",
                 f"RUN ln -s /{where} /w\nWORKDIR /w/new\nRUN touch here && ln -s /{where} /x\n"
                 "RUN --mount=type=tmpfs,target=/x/t touch /x/t/y\nADD secret.txt /x/added\n",
                 f"RUN ln -s / /up\nFROM base/busybox:1\n"
                 f"RUN --mount=type=bind,from=0,source=/up/{where},target=/b cat /b/secret.txt\n"
                 f"RUN --mount=type=bind,from=0,source=/up/{where},target=/b,rw touch /b/pwned\n"
                 f"COPY --from=0 /up/{where}/secret.txt /copied\n"):
        ctx = write_tree(tmp_path / "ctx", {"Dockerfile": f"FROM base/busybox:1\n{line}\n", "secret.txt": "x\n"})
        proc = build(store_root, ctx, "--platform", "linux/amd64", "-t", "i:1", "--load",
                     "--secret", f"id={ESCAPE}{where}/s,src={secret}", check=False)
        assert "Traceback" not in proc.stderr
        assert "host secret" not in proc.stderr + proc.stdout


def _symlink_tar(ctx: Path, name: str, entries: dict[str, str]) -> None:
    with tarfile.open(ctx / name, "w") as tf:
        for path, target in entries.items():
            info = tarfile.TarInfo(path)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)


def test_paths_through_symlinks_in_stages_stay_rooted(store_root: Path, tmp_path: Path, sentinel: Path) -> None:
    where = str(sentinel).lstrip("/")
    ctx = write_tree(tmp_path / "ctx", {"a.txt": "a\n"})
    _symlink_tar(ctx, "links.tar", {"up": "/", "w": f"/{where}", "rel": ESCAPE + where})
    cases = [
        f"FROM scratch AS s\nADD links.tar /\nFROM scratch\nCOPY --from=s /up/{where}/secret.txt /x\n",
        "FROM scratch AS s\nADD links.tar /\nFROM scratch\nCOPY --from=s /rel/secret.txt /x\n",
        "FROM scratch AS s\nADD links.tar /\nFROM scratch\nCOPY --from=s /w/ /x/\n",
        "FROM scratch\nADD links.tar /\nWORKDIR /w/new\nCOPY a.txt ./\nADD a.txt /up/added\n"
        "COPY a.txt /rel/copied\n",
    ]
    for dockerfile in cases:
        (ctx / "Dockerfile").write_text(dockerfile)
        proc = build(store_root, ctx, "--platform", "linux/amd64", "-t", "l:1", "--load", check=False)
        assert "Traceback" not in proc.stderr
        if proc.returncode == 0:
            img = images_of(store_root, "l:1")[0]
            for i in range(len(img.manifest.layers)):
                for name, member in layer_members(store_root, img, i).items():
                    if member.isfile():
                        assert layer_file(store_root, img, i, name) != b"host secret\n"
        else:
            assert "not found" in _error_line(proc.stderr)
