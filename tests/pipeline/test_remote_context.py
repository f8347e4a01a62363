"""Remote build contexts through the real CLI, as buildx has them: a git repository served by a real ``git daemon``
(and over git's dumb http by python's http.server), http tarballs and files, stdin (a tar or a Dockerfile),
``--build-context`` with ``oci-layout://``, git, https and local paths. Hostile tarballs never write outside the
store's private temp directory, and every fetched thing is gone after the build (also after a failure)."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyarch.pipeline.ctxurl import GitURL, parse_git_url
from polyarch.pipeline.remotectx import archive_kind
from tests.conftest import free_port, port_opens, run_cli

from .conftest import EPOCH, serve_directory, write_tree

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_AUTHOR_DATE": "1700000000 +0000", "GIT_COMMITTER_DATE": "1700000000 +0000"}


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _fails_once(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The build failed with exactly one ``error:`` line (containing every needle) and no traceback."""
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr[-2000:]
    errors = _errors(proc.stderr)
    assert len(errors) == 1, proc.stderr[-2000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _build(root: Path, context: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    if stdin is None:
        return run_cli("build", context, "--progress", "plain", *args, root=root, check=False, env=EPOCH)
    proc = subprocess.run([sys.executable, "-m", "polyarch", "build", context, "--progress", "plain", *args],
                          input=stdin, capture_output=True, timeout=300,
                          env={**os.environ, **EPOCH, "POLYARCH_ROOT": str(root)})
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                       proc.stderr.decode(errors="replace"))


def _no_leftovers(root: Path) -> None:
    """Nothing fetched stays behind: the store's contexts directory is empty, no temporary name remains."""
    contexts = root / "contexts"
    assert not contexts.exists() or list(contexts.iterdir()) == []
    names = run_cli("images", root=root, check=False).stdout if (root / "index.json").exists() else ""
    assert "polyarch-build-context" not in names


def _tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


def _targz(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1700000000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare repository ``repo.git``: ``main`` (tag ``v1``) holds ``sub/Dockerfile``, ``sub/alt.Dockerfile``,
    ``sub/hello.txt``; a later commit on branch ``next`` changes hello.txt. Ready for dumb http too."""
    base = tmp_path_factory.mktemp("git")
    work = write_tree(base / "work", {"sub/Dockerfile": "FROM scratch\nCOPY . /app/\n",
                                      "sub/alt.Dockerfile": "FROM scratch\nCOPY hello.txt /alt/\n",
                                      "sub/hello.txt": "hello v1\n", "top.txt": "top\n"})
    _git(work, "init", "-q", "-b", "main")
    _git(work, "add", ".")
    _git(work, "commit", "-qm", "one")
    _git(work, "tag", "v1")
    _git(work, "checkout", "-qb", "next")
    (work / "sub" / "hello.txt").write_text("hello next\n")
    _git(work, "commit", "-qam", "two")
    _git(work, "checkout", "-q", "main")
    _git(base, "clone", "-q", "--bare", "work", "repo.git")
    _git(base / "repo.git", "update-server-info")
    return base


@pytest.fixture(scope="module")
def git_daemon(repo: Path) -> Iterator[str]:
    """``git://127.0.0.1:PORT`` of a real git daemon exporting ``repo``'s directory."""
    port = free_port()
    proc = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={repo}",
                             "--listen=127.0.0.1", f"--port={port}", str(repo)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not port_opens(port, proc, 10):
            pytest.fail("git daemon did not start")
        yield f"git://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def web(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """http.server on loopback over: the repository (dumb http), tarballs and a plain Dockerfile."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(repo / "repo.git", site / "repo.git")
    (site / "ctx.tar.gz").write_bytes(_targz({"Dockerfile": "FROM scratch\nCOPY data.txt /from-tar/\n",
                                              "data.txt": "from tarball\n",
                                              "docker/other.Dockerfile": "FROM scratch\nCOPY . /all/\n"}))
    (site / "named.tar.gz").write_bytes(_targz({"n.txt": "named tarball\n"}))
    (site / "plain.Dockerfile").write_text("FROM scratch\nCOPY context /df/\n")
    (site / "note.txt").write_text("single file\n")
    (site / "corrupt.tar.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"garbage" * 50)
    server, base = serve_directory(site)
    try:
        yield base
    finally:
        server.shutdown()


# --- what counts as a git URL (buildx's rules) --------------------------------------------------------------------

@pytest.mark.parametrize(("text", "want"), [
    ("https://host/org/repo.git#main:sub/dir", GitURL("https://host/org/repo.git", "main", "sub/dir")),
    ("https://host/org/repo.git", GitURL("https://host/org/repo.git")),
    ("HTTP://host/repo.git#v1", GitURL("HTTP://host/repo.git", "v1")),
    ("git://host/repo#:sub", GitURL("git://host/repo", "", "sub")),
    ("ssh://git@host/repo.git#abc", GitURL("ssh://git@host/repo.git", "abc")),
    ("git@github.com:org/repo.git#dev", GitURL("git@github.com:org/repo.git", "dev")),
    ("github.com/org/repo#v2:x", GitURL("https://github.com/org/repo", "v2", "x")),
    ("https://host/archive.tar.gz", None),  # an http URL without .git: a tarball or file
    ("https://host/repo.git/tree", None),
    ("ftp://host/repo.git", None),
    ("./repo.git", None),
    ("../git@host:x", None),
    ("some/dir", None),
    ("C:/not-a-host", None),
])
def test_git_url_rules(text: str, want: GitURL | None) -> None:
    assert parse_git_url(text) == want


def test_archive_sniffing() -> None:
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.GNU_FORMAT) as tf:
        tf.addfile(tarfile.TarInfo("empty"), io.BytesIO())
    assert archive_kind(plain.getvalue()) == "tar"
    assert archive_kind(gzip.compress(b"x")) == "gzip"
    assert archive_kind(b"FROM scratch\n" * 100) is None
    assert archive_kind(b"") is None


# --- the main context -----------------------------------------------------------------------------------------------

def test_git_daemon_context_ref_and_subdir(empty_root: Path, tmp_path: Path, git_daemon: str) -> None:
    out = tmp_path / "out"
    proc = _build(empty_root, f"{git_daemon}/repo.git#v1:sub", "-o", f"type=local,dest={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _tree(out) == {"app/Dockerfile": "FROM scratch\nCOPY . /app/\n",
                          "app/alt.Dockerfile": "FROM scratch\nCOPY hello.txt /alt/\n", "app/hello.txt": "hello v1\n"}
    out2 = tmp_path / "out2"  # another branch; -f relative to the remote context
    proc = _build(empty_root, f"{git_daemon}/repo.git#next:sub", "-f", "alt.Dockerfile",
                  "-o", f"type=local,dest={out2}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _tree(out2) == {"alt/hello.txt": "hello next\n"}
    _no_leftovers(empty_root)


def test_git_over_dumb_http(empty_root: Path, tmp_path: Path, web: str) -> None:
    out = tmp_path / "out"
    proc = _build(empty_root, f"{web}/repo.git#main:sub", "-f", "alt.Dockerfile", "-o", f"type=local,dest={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _tree(out) == {"alt/hello.txt": "hello v1\n"}
    _no_leftovers(empty_root)


def test_bad_git_inputs_fail_with_one_line(empty_root: Path, git_daemon: str) -> None:
    _fails_once(_build(empty_root, f"{git_daemon}/repo.git#no-such-ref"), "build context", "no-such-ref")
    _fails_once(_build(empty_root, f"{git_daemon}/repo.git#main:no/such/dir"), "no/such/dir")
    _fails_once(_build(empty_root, f"{git_daemon}/missing.git"), "missing.git")
    _fails_once(_build(empty_root, f"git://127.0.0.1:{free_port()}/repo.git"), "build context git://")
    _fails_once(_build(empty_root, f"{git_daemon}/repo.git#main", "-f", "nope.Dockerfile"), "nope.Dockerfile")
    _no_leftovers(empty_root)


def test_http_tarball_and_plain_dockerfile(empty_root: Path, tmp_path: Path, web: str) -> None:
    out = tmp_path / "out"
    proc = _build(empty_root, f"{web}/ctx.tar.gz", "-o", f"type=local,dest={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _tree(out) == {"from-tar/data.txt": "from tarball\n"}
    out2 = tmp_path / "out2"  # -f inside the tarball
    proc = _build(empty_root, f"{web}/ctx.tar.gz", "-f", "docker/other.Dockerfile", "-o", f"type=local,dest={out2}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(_tree(out2)) == {"all/Dockerfile", "all/data.txt", "all/docker/other.Dockerfile"}
    out3 = tmp_path / "out3"  # not an archive: the file is the Dockerfile, alone in its context (BuildKit)
    proc = _build(empty_root, f"{web}/plain.Dockerfile", "-o", f"type=local,dest={out3}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _tree(out3) == {"df/context": "FROM scratch\nCOPY context /df/\n"}
    _no_leftovers(empty_root)


def test_bad_http_inputs_fail_with_one_line(empty_root: Path, web: str) -> None:
    _fails_once(_build(empty_root, f"{web}/missing.tar.gz"), "HTTP 404")
    _fails_once(_build(empty_root, f"http://127.0.0.1:{free_port()}/x.tar"), "build context http://127.0.0.1")
    _fails_once(_build(empty_root, f"{web}/corrupt.tar.gz"), "not a usable")
    failing = _build(empty_root, f"{web}/ctx.tar.gz", "-f", "docker/missing")
    _fails_once(failing, "docker/missing")
    _no_leftovers(empty_root)


def test_stdin_tar_or_dockerfile(empty_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    tar = _targz({"Dockerfile": "FROM scratch\nCOPY a.txt /s/\n", "a.txt": "from stdin\n"})
    proc = _build(empty_root, "-", "-o", f"type=local,dest={out}", stdin=tar)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _tree(out) == {"s/a.txt": "from stdin\n"}
    iid = tmp_path / "iid"
    proc = _build(empty_root, "-", "--iidfile", str(iid), stdin=b"FROM scratch\nLABEL from=stdin\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert iid.read_text().startswith("sha256:")
    # a Dockerfile on stdin has no context: COPY finds nothing
    _fails_once(_build(empty_root, "-", stdin=b"FROM scratch\nCOPY a.txt /\n"), "a.txt")
    _fails_once(_build(empty_root, "-", "-f", "-", stdin=tar), "stdin")
    _fails_once(_build(empty_root, "-", "-f", "Dockerfile", stdin=b"FROM scratch\n"), "ambiguous")
    _fails_once(_build(empty_root, "-", stdin=b""), "stdin is empty")
    _no_leftovers(empty_root)


def _hostile(kind: str, sentinel: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        def add(name: str, data: bytes = b"pwned\n", **attrs: object) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for k, v in attrs.items():
                setattr(info, k, v)
            tf.addfile(info, io.BytesIO(data) if info.isfile() else None)

        add("Dockerfile", b"FROM scratch\nCOPY . /\n")
        if kind == "dotdot":
            add("../" * 12 + str(sentinel).lstrip("/") + "/pwned")
        elif kind == "absolute":
            add(str(sentinel / "pwned"))
        elif kind == "symlink":
            add("esc", b"", type=tarfile.SYMTYPE, linkname=str(sentinel))
            add("esc/pwned")
            add("rel", b"", type=tarfile.SYMTYPE, linkname="../" * 12 + str(sentinel).lstrip("/"))
            add("rel/pwned2")
        elif kind == "hardlink":
            add("hl", b"", type=tarfile.LNKTYPE, linkname=str(sentinel / "keep.txt"))
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
@pytest.mark.parametrize("via", ["http", "stdin"])
def test_hostile_tarball_stays_inside(empty_root: Path, tmp_path: Path, kind: str, via: str) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("keep\n")
    data = _hostile(kind, sentinel)
    if via == "http":
        site = tmp_path / "site"
        site.mkdir()
        (site / "evil.tar").write_bytes(data)
        server, base = serve_directory(site)
        try:
            proc = _build(empty_root, f"{base}/evil.tar", "-o", f"type=local,dest={tmp_path / 'out'}")
        finally:
            server.shutdown()
    else:
        proc = _build(empty_root, "-", "-o", f"type=local,dest={tmp_path / 'out'}", stdin=data)
    assert sorted(p.name for p in sentinel.iterdir()) == ["keep.txt"]
    assert (sentinel / "keep.txt").read_text() == "keep\n"
    if kind == "symlink":  # contained: the links resolve inside the context, the build goes on
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        _fails_once(proc, "not a usable tar archive")
    _no_leftovers(empty_root)


# --- --build-context ------------------------------------------------------------------------------------------------

def test_named_contexts(empty_root: Path, tmp_path: Path, git_daemon: str, web: str) -> None:
    layout_src = write_tree(tmp_path / "img", {"Dockerfile": "FROM scratch\nCOPY i.txt /img/\n",
                                               "i.txt": "from layout\n"})
    layout = tmp_path / "layout"
    proc = run_cli("build", str(layout_src), "--progress", "plain", "-t", "lay:1",
                   "-o", f"type=oci,tar=false,dest={layout}", root=tmp_path / "other-store", check=False, env=EPOCH)
    assert proc.returncode == 0, proc.stderr[-3000:]
    local = write_tree(tmp_path / "local", {"l.txt": "local dir\n"})
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": (
        "FROM scratch\n"
        "COPY --from=lay /img/i.txt /out/\n"
        "COPY --from=repo hello.txt /out/\n"
        "COPY --from=tarball n.txt /out/\n"
        "COPY --from=file note.txt /out/\n"
        "COPY --from=dir l.txt /out/\n")})
    out = tmp_path / "out"
    proc = _build(empty_root, str(ctx), "-o", f"type=local,dest={out}",
                  "--build-context", f"lay=oci-layout://{layout}:lay:1",
                  "--build-context", f"repo={git_daemon}/repo.git#next:sub",
                  "--build-context", f"tarball={web}/named.tar.gz",
                  "--build-context", f"file={web}/note.txt",
                  "--build-context", f"dir={local}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _tree(out) == {"out/i.txt": "from layout\n", "out/hello.txt": "hello next\n",
                          "out/n.txt": "named tarball\n", "out/note.txt": "single file\n", "out/l.txt": "local dir\n"}
    _no_leftovers(empty_root)
    # FROM a layout image, picked by digest
    digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    proc = _build(empty_root, str(write_tree(tmp_path / "ctx2", {"Dockerfile": "FROM lay\nCOPY Dockerfile /d/\n"})),
                  "-o", f"type=local,dest={tmp_path / 'out2'}", "--build-context", f"lay=oci-layout://{layout}@{digest}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(_tree(tmp_path / "out2")) == {"img/i.txt", "d/Dockerfile"}
    _no_leftovers(empty_root)


def test_bad_named_contexts_fail_with_one_line(empty_root: Path, tmp_path: Path, web: str) -> None:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nCOPY --from=x a /\n", "f": "file\n"})
    missing = tmp_path / "no-such-dir"
    _fails_once(_build(empty_root, str(ctx), "--build-context", f"x={missing}"), str(missing), "does not exist")
    _fails_once(_build(empty_root, str(ctx), "--build-context", f"x={ctx / 'f'}"), "not a directory")
    _fails_once(_build(empty_root, str(ctx), "--build-context", "x=target:base"), "bake")
    _fails_once(_build(empty_root, str(ctx), "--build-context", f"x=oci-layout://{missing}"), str(missing))
    _fails_once(_build(empty_root, str(ctx), "--build-context", f"x={web}/missing.tar"), "HTTP 404")
    _no_leftovers(empty_root)


def test_bake_context_path_that_does_not_exist(empty_root: Path, tmp_path: Path) -> None:
    project = write_tree(tmp_path / "proj", {
        "Dockerfile": "FROM scratch\nCOPY --from=x a /\n",
        "docker-bake.hcl": 'target "default" {\n  contexts = { x = "./no-such-dir" }\n}\n'})
    proc = run_cli("bake", "--progress", "plain", root=empty_root, cwd=project, check=False, env=EPOCH)
    _fails_once(proc, "./no-such-dir", "no such directory")


# --- the fetcher's limits and leftovers (the seam the CLI uses) ------------------------------------------------------

def test_limits_are_enforced(tmp_path: Path, web: str) -> None:
    from polyarch.content.images import ImageStore
    from polyarch.content.store import ContentStore
    from polyarch.errors import PolyarchError
    from polyarch.pipeline.remotectx import ContextLimits, RemoteContexts

    images = ImageStore(ContentStore(tmp_path / "store"))
    size = len(_targz({"n.txt": "named tarball\n"}))
    cases = [(ContextLimits(download=size - 1), "more than"), (ContextLimits(unpacked=600), "bytes"),
             (ContextLimits(entries=0), "entries")]
    for limits, needle in cases:
        with RemoteContexts(tmp_path / "store", images, limits=limits) as remote:
            with pytest.raises(PolyarchError) as info:
                remote.http(f"{web}/named.tar.gz", "ctx")
            assert info.value.message.startswith("ctx: ") and needle in info.value.message, info.value.message
        assert list((tmp_path / "store" / "contexts").iterdir()) == []
    big = io.BytesIO(b"x" * 2048)
    with RemoteContexts(tmp_path / "store", images, limits=ContextLimits(download=1024)) as remote, \
            pytest.raises(PolyarchError, match="more than 1024 bytes on stdin"):
        remote.stdin(big, "stdin")


def test_a_killed_builds_leftovers_are_swept(tmp_path: Path) -> None:
    from polyarch.content.images import ImageStore
    from polyarch.content.store import ContentStore
    from polyarch.oci.config import ImageConfig
    from polyarch.pipeline.remotectx import TEMP_REPOSITORY, RemoteContexts

    images = ImageStore(ContentStore(tmp_path / "store"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    contexts = tmp_path / "store" / "contexts"
    (contexts / f"build-{dead.pid}-abc" / "git-x").mkdir(parents=True)
    (contexts / f"build-{os.getpid()}-live").mkdir()
    manifest = images.put_image(ImageConfig(architecture="amd64", os="linux"), [])
    images.set_name(f"{TEMP_REPOSITORY}/0123:{dead.pid}", manifest)
    images.set_name(f"{TEMP_REPOSITORY}/4567:{os.getpid()}", manifest)
    with RemoteContexts(tmp_path / "store", images) as remote:
        remote.stdin(io.BytesIO(b"FROM scratch\n"), "stdin")
        assert sorted(p.name.rsplit("-", 1)[0] for p in contexts.iterdir()) == \
            [f"build-{os.getpid()}"] * 2
        assert [n for n, _ in images.names()] == [f"{TEMP_REPOSITORY}/4567:{os.getpid()}"]
    assert [p.name for p in contexts.iterdir()] == [f"build-{os.getpid()}-live"]



def test_untrusted_archives_are_only_unpacked_contained() -> None:
    """No module extracts with tarfile (``extract``/``extractall`` follow no containment rule); every tar of
    untrusted content goes through ``worker.apply.apply_layer``. Remote contexts are fetched only through a
    ``RemoteContexts`` that the CLI (the composition root) makes."""
    import ast

    src = Path(__file__).resolve().parents[2] / "src" / "polyarch"
    extracting: list[str] = []
    makers: set[str] = set()
    for path in sorted(src.rglob("*.py")):
        rel = str(path.relative_to(src))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("extract", "extractall"):
                extracting.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("RemoteContexts"):
                makers.add(rel)
    assert extracting == []
    assert "cli/buildctx.py" in makers and all(m.startswith("cli/") for m in makers), makers
