"""``RUN --mount`` as BuildKit means it: a mount without ``target=`` (or with a relative one) goes to the working
directory; every option's value is expanded on its own before the mount is validated; BuildKit's validation
rules, no more (cases from BuildKit's dockerfile_mount_test.go and runmount semantics)."""

from __future__ import annotations

import posixpath
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polyarch import ops
from polyarch.errors import ParseError
from polyarch.frontend.convert.plan import plan_build
from polyarch.frontend.dockerfile.mounts import parse_mount, resolve_target
from polyarch.frontend.dockerfile.parse import parse_dockerfile
from tests.frontend.fakes import BUILD, is_native, resolve_image
from tests.pipeline.conftest import build, images_of, layer_file, needs_run, write_tree


def mounts_of(dockerfile: str, **kw: object) -> list[tuple[ops.ExecMount, ...]]:
    """The mounts of every RUN of the target stage (first platform)."""
    plan = plan_build(dockerfile, resolve_image=resolve_image, build_platform=BUILD, is_native=is_native, **kw)
    return [s.vertex.mounts for s in plan.platforms[0].target.steps if isinstance(s.vertex, ops.Exec)]


@pytest.mark.parametrize(("workdir", "target", "want"), [
    ("/src", "", "/src"), ("/src", ".", "/src"), ("/src", "./", "/src"), ("/src", "sub/dir", "/src/sub/dir"),
    ("/src", "../x", "/x"), ("/", "rel", "/rel"), ("", "rel", "/rel"), ("/w", "/abs", "/abs"),
    ("/w", "/abs/", "/abs/"),
])
def test_target_resolution(workdir: str, target: str, want: str) -> None:
    assert resolve_target(target, workdir) == want


@pytest.mark.parametrize(("workdir", "target"), [("/", ""), ("", ""), ("/", "."), ("/a", ".."), ("/", "/")])
def test_target_resolving_to_root_is_refused(workdir: str, target: str) -> None:
    with pytest.raises(ParseError, match='invalid mount target "/"'):
        resolve_target(target, workdir)


_SEG = st.text(alphabet="abc.-_", min_size=1, max_size=4).filter(lambda s: s not in (".", ".."))


@given(st.lists(_SEG, min_size=1, max_size=3), st.lists(st.sampled_from(["x", "y", ".", "z"]), max_size=3))
def test_relative_targets_land_under_the_workdir(wd: list[str], rel: list[str]) -> None:
    workdir = "/" + "/".join(wd)
    target = "/".join(rel)
    got = resolve_target(target, workdir)
    assert got == posixpath.normpath(posixpath.join(workdir, target))
    assert got.startswith(workdir) and posixpath.isabs(got)


def test_bind_mount_without_target_is_the_workdir() -> None:
    # the root Dockerfiles of docker/buildx, docker/cli, docker/compose use this form
    (bind, cache), = mounts_of("FROM golang\nWORKDIR /src\n"
                               "RUN --mount=type=bind --mount=type=cache,target=.cache go build\n")
    assert (bind.type, bind.target, bind.readonly) == ("bind", "/src", True)
    assert isinstance(bind.source, ops.LocalContext)
    assert (cache.target, cache.id, cache.readonly) == ("/src/.cache", ".cache", False)
    (m,), = mounts_of("FROM golang\nWORKDIR /go/src\nRUN --mount=target=. --mount=source=x,target=y ls\n")[:1][0][:1],
    assert m.target == "/go/src"


def test_mount_at_root_workdir_is_an_error() -> None:
    with pytest.raises(ParseError, match='invalid mount target "/"') as info:
        mounts_of("FROM alpine\nRUN --mount=type=bind ls\n")
    assert info.value.span is not None and info.value.span.line == 2


@pytest.mark.parametrize(("dockerfile", "want"), [
    # testMountArg
    ("FROM alpine\nARG MNT_TYPE=cache\nRUN --mount=type=$MNT_TYPE,target=/mycache2 touch /mycache2/foo\n",
     ("cache", "/mycache2", "/mycache2")),
    # testMountEnvAcrossStages: ENV of the parent stage
    ("FROM alpine AS stage1\nENV MNT_ID=mycache\nENV MNT_TYPE2=cache\nFROM stage1\n"
     "RUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/whatever [ -f /whatever/foo ]\n",
     ("cache", "/whatever", "mycache")),
    # an ARG of the parent stage is inherited too
    ("FROM alpine AS stage1\nARG MNT_TYPE2=cache\nFROM stage1\nRUN --mount=type=${MNT_TYPE2},target=/c ls\n",
     ("cache", "/c", "/c")),
    # testMountMetaArg
    ("ARG META_PATH=/tmp/meta\nFROM alpine\nARG META_PATH\n"
     "RUN --mount=type=cache,id=mycache,target=$META_PATH [ -f /tmp/meta/foo ]\n", ("cache", "/tmp/meta", "mycache")),
    ("FROM alpine\nENV T=tmpfs S=64m\nRUN --mount=type=$T,target=/t,size=$S ls\n", ("tmpfs", "/t", "")),
    ("FROM alpine\nARG ID=tok\nRUN --mount=type=secret,id=$ID cat /run/secrets/tok\n",
     ("secret", "/run/secrets/tok", "tok")),
])
def test_option_values_are_expanded_before_validation(dockerfile: str, want: tuple[str, str, str]) -> None:
    (m,), = mounts_of(dockerfile)[-1:]
    assert (m.type, m.target, m.id) == want


def test_each_value_is_expanded_on_its_own() -> None:
    # a value is not split again after expansion: "cache,id=x" is one (unknown) type
    with pytest.raises(ParseError, match='unsupported mount type "cache,id=x"'):
        mounts_of('FROM alpine\nARG T="cache,id=x"\nRUN --mount=type=$T,target=/c ls\n')


def test_from_with_a_variable_is_refused_at_parse_time() -> None:
    # testMountFromError
    with pytest.raises(ParseError, match="'from' doesn't support variable expansion, define alias stage instead"):
        parse_dockerfile("FROM busybox AS test\nRUN touch /tmp/test\nFROM busybox\nENV ttt=test\n"
                         "RUN --mount=from=$ttt,type=cache,target=/tmp ls\n")
    parse_dockerfile("FROM busybox\nRUN --mount=from=a$,target=/x ls\n")  # a trailing '$' is no variable


@pytest.mark.parametrize(("spec", "message"), [
    ("typ=tmpfs", "unexpected key 'typ' in 'typ=tmpfs', did you mean type?"),
    ("type=tmp", 'unsupported mount type "tmp", did you mean tmpfs?'),
    ("target=/x,required", "unexpected key 'required' for mount type 'bind'"),
    ("required,type=secret,id=x", "unexpected key 'required' for mount type 'bind'"),  # order matters
    ("type=cache,target=/x,size=1m", "unexpected key 'size' for mount type 'cache'"),
    ("size=1m,type=tmpfs,target=/x", "unexpected key 'size' for mount type 'bind'"),
    ("target=/x,mode=0700", "mode not allowed for 'bind' type mounts"),
    ("type=tmpfs,target=/x,uid=1", "uid not allowed for 'tmpfs' type mounts"),
    ("target=/x,sharing=locked", "invalid cache sharing set for bind mount"),
    ("type=cache,target=/x,sharing=nope", "unsupported sharing value"),
    ("type=secret,id=a,from=b", "secret mount should not have a from"),
    ("type=secret", "invalid secret mount. one of source, target required"),
    ("type=secret,source=a,id=b", "both source and id can't be set"),
    ("type=ssh,source=a", "ssh does not support source"),
    ("type=cache,target=/x,uid=abc", "invalid value abc for uid"),
    ("type=cache,target=/x,mode=9", "invalid value 9 for mode"),
    ("target=/x,ro=yes", "invalid value for ro: yes"),
    ("target=/x,source", "invalid field 'source' must be a key=value pair"),
    ('"target=/x', "failed to parse csv mounts"),
])
def test_invalid_mounts(spec: str, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_mount(spec)
    assert message in info.value.message


@pytest.mark.parametrize(("spec", "want"), [
    ("target=/x,id=ignored", {"type": "bind", "id": "ignored", "readonly": True}),  # BuildKit ignores id on bind
    ("type=tmpfs,target=/x,rw=false", {"type": "tmpfs", "readonly": True}),
    ("type=secret,id=tok,required", {"type": "secret", "required": True, "target": "/run/secrets/tok"}),
    ("type=secret,source=tok,target=/t", {"id": "tok", "target": "/t", "source": ""}),
    ("type=secret,target=/etc/tok", {"id": "tok"}),
    ("type=secret,id=tok,env=TOKEN", {"target": "", "env": "TOKEN"}),
    ("type=ssh,required=true", {"id": "default", "target": "/run/buildkit/ssh_agent.0", "required": True}),
    ("type=cache,target=/root/.cache/", {"id": "/root/.cache", "sharing": "shared", "mode": 0o755}),
    ("type=cache,target=/c,rw=0,ro=T", {"readonly": True}),
    ("type=bind,target=/c,readwrite", {"readonly": False}),
])
def test_valid_mounts(spec: str, want: dict[str, object]) -> None:
    m = parse_mount(spec)
    got = {k: getattr(m, k) for k in want}
    assert got == want


@needs_run("linux/amd64")
def test_bind_mount_without_target_builds_at_the_workdir(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {
        "Dockerfile": "FROM base/busybox:1\nWORKDIR /src\nRUN --mount=type=bind cat data.txt > /copied && "
                      "ls /src > /listing\n",
        "data.txt": "from the context\n",
    })
    build(store_root, ctx, "--platform", "linux/amd64", "-t", "m:1", "--load")
    img = images_of(store_root, "m:1")[0]
    assert layer_file(store_root, img, -1, "copied") == b"from the context\n"
    assert b"data.txt" in layer_file(store_root, img, -1, "listing")
