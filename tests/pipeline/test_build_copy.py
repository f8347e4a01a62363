"""End-to-end COPY/WORKDIR/config builds on the three-platform busybox base."""

from __future__ import annotations

import json
from pathlib import Path

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore

from .conftest import (
    PLATFORMS,
    build,
    by_name,
    images_of,
    layer_file,
    layer_members,
    serve_directory,
    write_tree,
)

DOCKERFILE = """\
FROM base/busybox:1
WORKDIR /app
COPY src/ ./
COPY --chmod=755 bin/run.sh /usr/local/bin/run
ENV GREETING=hello MODE=prod
LABEL org.example.team=homelab
EXPOSE 8080/tcp
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/run"]
CMD ["--serve"]
"""


def _context(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "ctx", {
        "Dockerfile": DOCKERFILE,
        ".dockerignore": "**/*.secret\nsrc/tmp\n",
        "src/app.sh": "echo app\n",
        "src/lib/util.sh": "echo util\n",
        "src/key.secret": "do not ship\n",
        "src/tmp/junk": "junk\n",
        "bin/run.sh": "#!/bin/sh\nexec sh /app/app.sh \"$@\"\n",
    })


def test_multiplatform_copy_build_shares_layers_and_writes_config(store_root: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    build(store_root, ctx, "--platform", PLATFORMS, "-t", "app:1", "--load", "--label", "extra=1")
    imgs = images_of(store_root, "app:1")
    assert [str(i.platform) for i in imgs] == PLATFORMS.split(",")
    base = images_of(store_root, "base/busybox:1")
    for img, b in zip(imgs, base, strict=True):
        assert img.manifest.layers[: len(b.manifest.layers)] == b.manifest.layers
        assert len(img.manifest.layers) == len(b.manifest.layers) + 3
    # every layer the build added is the same blob for every platform; the base layers differ
    n = len(base[0].manifest.layers)
    added = {tuple(str(d.digest) for d in i.manifest.layers[n:]) for i in imgs}
    assert len(added) == 1
    assert len({str(i.manifest.layers[0].digest) for i in imgs}) == 3
    cfg = imgs[1].config
    assert (cfg.architecture, cfg.os) == ("arm64", "linux")
    assert imgs[2].config.variant == "v7"
    cc = cfg.config
    assert cc.working_dir == "/app" and cc.user == "1000:1000"
    assert "GREETING=hello" in cc.env and "MODE=prod" in cc.env
    assert cc.labels == {"org.example.team": "homelab", "extra": "1"}
    assert tuple(cc.entrypoint or ()) == ("/usr/local/bin/run",) and tuple(cc.cmd or ()) == ("--serve",)
    assert "8080/tcp" in cc.exposed_ports
    assert cfg.created == "2023-11-14T22:13:20Z"
    assert len(cfg.diff_ids) == len(imgs[1].manifest.layers)
    created_by = [h.created_by for h in cfg.history]
    assert "WORKDIR /app" in created_by and "CMD [\"--serve\"]" in created_by
    assert sum(not h.empty_layer for h in cfg.history) == len(cfg.diff_ids)
    # files: .dockerignore honoured, modes, owners, clamped mtimes
    copy_src = layer_members(store_root, imgs[0], n + 1)
    assert {"app/app.sh", "app/lib", "app/lib/util.sh"} <= set(copy_src)
    assert not any(name.endswith(".secret") or "tmp" in name for name in copy_src)
    run = layer_members(store_root, imgs[0], n + 2)["usr/local/bin/run"]
    assert run.mode == 0o755 and run.uid == 0 and run.mtime <= 1700000000
    assert layer_file(store_root, imgs[0], n + 1, "app/app.sh") == b"echo app\n"


def test_rebuild_is_cached_and_a_change_reruns_only_dependent_steps(store_root: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    first = build(store_root, ctx, "--platform", PLATFORMS, "-t", "app:1", "--load", "--iidfile",
                  str(tmp_path / "iid1"))
    assert by_name(first.stderr, "COPY src/") == ["DONE"] * 3
    again = build(store_root, ctx, "--platform", PLATFORMS, "-t", "app:1", "--load", "--iidfile",
                  str(tmp_path / "iid2"))
    for needle in ("WORKDIR /app", "COPY src/", "COPY --chmod=755"):
        assert by_name(again.stderr, needle) == ["CACHED"] * 3, again.stderr
    assert (tmp_path / "iid1").read_text() == (tmp_path / "iid2").read_text()
    (ctx / "bin" / "run.sh").write_text("#!/bin/sh\necho changed\n")
    changed = build(store_root, ctx, "--platform", PLATFORMS, "-t", "app:2", "--load")
    assert by_name(changed.stderr, "COPY src/") == ["CACHED"] * 3
    assert by_name(changed.stderr, "COPY --chmod=755") == ["DONE"] * 3
    old, new = images_of(store_root, "app:1")[0], images_of(store_root, "app:2")[0]
    assert old.manifest.layers[:-1] == new.manifest.layers[:-1]
    assert old.manifest.layers[-1] != new.manifest.layers[-1]
    nocache = build(store_root, ctx, "--platform", "linux/amd64", "--no-cache")
    assert by_name(nocache.stderr, "COPY src/") == ["DONE"]


def test_two_clean_builds_give_the_same_index_digest(base_root: Path, tmp_path: Path) -> None:
    import shutil

    ctx = _context(tmp_path)
    digests = []
    for i in range(2):
        root = tmp_path / f"store{i}"
        shutil.copytree(base_root, root, ignore=shutil.ignore_patterns(".complete", "ingest", "buildcache.db*"))
        build(root, ctx, "--platform", PLATFORMS, "-t", "app:1", "--load", "--metadata-file",
              str(tmp_path / f"meta{i}.json"))
        digests.append(json.loads((tmp_path / f"meta{i}.json").read_text()))
    assert digests[0]["containerimage.digest"] == digests[1]["containerimage.digest"]
    assert digests[0]["image.name"] == "app:1"
    assert digests[0]["containerimage.descriptor"]["mediaType"] == "application/vnd.oci.image.index.v1+json"


def test_scratch_multistage_and_target(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {
        "Dockerfile": "FROM base/busybox:1 AS tools\nCOPY hello.txt /opt/hello.txt\n\n"
                      "FROM scratch AS final\nCOPY --from=tools /opt/hello.txt /hello.txt\n"
                      "COPY --from=tools /bin/busybox /busybox\n",
        "hello.txt": "hi\n",
    })
    build(store_root, ctx, "--platform", "linux/amd64,linux/arm64", "-t", "final:1", "--load")
    imgs = images_of(store_root, "final:1")
    assert [len(i.manifest.layers) for i in imgs] == [2, 2]
    assert layer_file(store_root, imgs[0], 0, "hello.txt") == b"hi\n"
    assert imgs[0].manifest.layers[0] == imgs[1].manifest.layers[0]  # same file: one blob
    assert imgs[0].manifest.layers[1] != imgs[1].manifest.layers[1]  # busybox differs per platform
    build(store_root, ctx, "--platform", "linux/amd64", "--target", "tools", "-t", "tools:1", "--load")
    tools = images_of(store_root, "tools:1")[0]
    assert "opt/hello.txt" in layer_members(store_root, tools, -1)


def test_missing_base_and_missing_source_are_one_line_errors(store_root: Path, tmp_path: Path) -> None:
    before = (store_root / "index.json").read_bytes()
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM nothere/img:1\nCOPY a /a\n", "a": "a"})
    proc = build(store_root, ctx, "-t", "x:1", "--load", check=False,
                 env={"POLYARCH_REGISTRY_RETRIES": "0", "POLYARCH_REGISTRY_TIMEOUT": "3"})
    assert proc.returncode == 1
    assert "nothere/img:1" in proc.stderr and "Traceback" not in proc.stderr
    (ctx / "Dockerfile").write_text("FROM base/busybox:1\nCOPY missing.txt /m\n")
    proc = build(store_root, ctx, "-t", "x:1", "--load", check=False)
    assert proc.returncode == 1 and "'missing.txt' not found" in proc.stderr
    assert "(Dockerfile:2)" in proc.stderr
    assert (store_root / "index.json").read_bytes() == before
    assert ImageStore(ContentStore(store_root)).names()


def test_add_unpacks_local_archives(store_root: Path, tmp_path: Path) -> None:
    import tarfile

    ctx = write_tree(tmp_path / "ctx", {"pkg/a.txt": "a\n", "pkg/sub/b.txt": "b\n",
                                        "Dockerfile": "FROM base/busybox:1\nADD pkg.tar.gz /opt/\n"
                                                      "ADD --unpack=false pkg.tar.gz /raw/\n"})
    with tarfile.open(ctx / "pkg.tar.gz", "w:gz") as tf:
        tf.add(ctx / "pkg", "pkg")
    out = tmp_path / "out"
    build(store_root, ctx, "--platform", "linux/arm64", "-o", f"type=local,dest={out}")
    assert (out / "opt" / "pkg" / "sub" / "b.txt").read_text() == "b\n"
    assert (out / "raw" / "pkg.tar.gz").is_file()


def test_add_from_url_with_checksum(store_root: Path, tmp_path: Path) -> None:
    import hashlib

    web = tmp_path / "web"
    web.mkdir()
    (web / "tool.sh").write_text("echo tool\n")
    good = "sha256:" + hashlib.sha256(b"echo tool\n").hexdigest()
    server, base_url = serve_directory(web)
    url = f"{base_url}/tool.sh"
    try:
        ctx = write_tree(tmp_path / "ctx", {"Dockerfile": f"FROM base/busybox:1\nADD --checksum={good} {url} /opt/\n"})
        out = tmp_path / "out"
        build(store_root, ctx, "--platform", "linux/amd64,linux/arm64", "-o", f"type=local,dest={out}")
        assert (out / "linux_arm64" / "opt" / "tool.sh").read_text() == "echo tool\n"
        bad = "sha256:" + "0" * 64
        (ctx / "Dockerfile").write_text(f"FROM base/busybox:1\nADD --checksum={bad} {url} /opt/\n")
        proc = build(store_root, ctx, check=False)
        assert proc.returncode == 1 and "checksum mismatch" in proc.stderr
        (ctx / "Dockerfile").write_text(f"FROM base/busybox:1\nADD {url}.missing /opt/\n")
        proc = build(store_root, ctx, check=False)
        assert proc.returncode == 1 and "HTTP 404" in proc.stderr
    finally:
        server.shutdown()


def test_copy_parents_and_symbolic_chmod(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {"x/y/a.txt": "a\n", "src/pkg/m.go": "package m\n",
                                        "Dockerfile": "FROM base/busybox:1\n"
                                                      "COPY --parents x/y/a.txt ./src/./pkg /out/\n"
                                                      "COPY --chmod=u+x,go-r x/y/a.txt /sym\n"
                                                      "COPY --chmod=a=rX x /dirs/\n"})
    (ctx / "x" / "y" / "a.txt").chmod(0o644)
    out = tmp_path / "out"
    build(store_root, ctx, "--platform", "linux/amd64", "-o", f"type=local,dest={out}")
    assert (out / "out" / "x" / "y" / "a.txt").read_text() == "a\n"
    assert (out / "out" / "pkg" / "m.go").is_file() and not (out / "out" / "src").exists()
    assert (out / "sym").stat().st_mode & 0o7777 == 0o700
    assert (out / "dirs" / "y").stat().st_mode & 0o777 == 0o555
    assert (out / "dirs" / "y" / "a.txt").stat().st_mode & 0o777 == 0o444
    (ctx / "Dockerfile").write_text("FROM base/busybox:1\nCOPY --chmod=u+q x /x\n")
    proc = build(store_root, ctx, check=False)
    assert proc.returncode != 0 and "chmod" in proc.stderr


def test_add_from_git_repository(store_root: Path, tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("git") is None:
        import pytest

        pytest.skip("needs git")
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "GIT_AUTHOR_DATE": "2023-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2023-01-01T00:00:00Z", "PATH": "/usr/bin:/bin"}
    work = write_tree(tmp_path / "work", {"sub/tool.sh": "echo tool\n", "README": "r\n"})

    def git(*args: str, cwd: Path) -> str:
        return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout

    git("init", "-q", "-b", "main", cwd=work)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    commit = git("rev-parse", "HEAD", cwd=work).strip()
    web = tmp_path / "web"
    web.mkdir()
    git("clone", "-q", "--bare", str(work), str(web / "repo.git"), cwd=tmp_path)
    git("update-server-info", cwd=web / "repo.git")
    server, base_url = serve_directory(web)
    url = f"{base_url}/repo.git"
    try:
        ctx = write_tree(tmp_path / "ctx", {"Dockerfile": f"FROM base/busybox:1\nADD {url}#main:sub /opt/\n"
                                                          f"ADD --checksum={commit[:12]} {url} /full/\n"})
        out = tmp_path / "out"
        build(store_root, ctx, "--platform", "linux/amd64", "-o", f"type=local,dest={out}")
        assert (out / "opt" / "tool.sh").read_text() == "echo tool\n"
        assert (out / "full" / "README").is_file() and not (out / "full" / ".git").exists()
        assert int((out / "opt" / "tool.sh").stat().st_mtime) == 1672531200
        (ctx / "Dockerfile").write_text(f"FROM base/busybox:1\nADD --checksum={'0' * 12} {url} /full/\n")
        proc = build(store_root, ctx, check=False)
        assert proc.returncode == 1 and "checksum mismatch" in proc.stderr
    finally:
        server.shutdown()


def test_context_symlinks_never_reach_the_host(store_root: Path, tmp_path: Path) -> None:
    import os

    ctx = write_tree(tmp_path / "ctx", {"app/real.txt": "real\n"})
    os.symlink("/etc", ctx / "evil")  # resolves inside the context, where there is no etc/
    os.symlink("../../../../../../etc/passwd", ctx / "app" / "up")
    os.symlink("/nix/store/abc-passwd", ctx / "app" / "abs")
    (ctx / "Dockerfile").write_text("FROM base/busybox:1\nCOPY evil/passwd /x\n")
    proc = build(store_root, ctx, check=False)
    assert proc.returncode == 1 and "not found" in proc.stderr
    (ctx / "Dockerfile").write_text("FROM base/busybox:1\nCOPY app/up /up\n")
    proc = build(store_root, ctx, check=False)
    assert proc.returncode == 1 and "not found" in proc.stderr
    (ctx / "Dockerfile").write_text("FROM base/busybox:1\nCOPY app /app/\n")
    build(store_root, ctx, "--platform", "linux/amd64", "-t", "links:1", "--load")
    img = images_of(store_root, "links:1")[0]
    members = layer_members(store_root, img, -1)
    assert members["app/abs"].issym() and members["app/abs"].linkname == "/nix/store/abc-passwd"
    assert members["app/up"].issym() and members["app/up"].linkname == "../../../../../../etc/passwd"
    assert members["app/real.txt"].isfile()


def test_copy_globs_match_as_go_filepath_match(store_root: Path, tmp_path: Path) -> None:
    """COPY sources use .dockerignore's matcher: ``[^a]`` negates, ``[!a]`` is the class of '!' and 'a'."""
    ctx = write_tree(tmp_path / "ctx", {"a.txt": "a\n", "b.txt": "b\n", "!.txt": "bang\n",
                                        "Dockerfile": "FROM base/busybox:1\nCOPY [^a]*.txt /neg/\n"
                                                      "COPY [!a].txt /bang/\n"})
    out = tmp_path / "out"
    build(store_root, ctx, "--platform", "linux/amd64", "-o", f"type=local,dest={out}")
    assert sorted(p.name for p in (out / "neg").iterdir()) == ["!.txt", "b.txt"]
    assert sorted(p.name for p in (out / "bang").iterdir()) == ["!.txt", "a.txt"]
