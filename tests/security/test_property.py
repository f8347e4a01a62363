"""The property that kills the class (issue 13): for ANY sequence of tar entries over a small alphabet of names —
directories, files, symlinks to ``/``, ``..``, siblings and the sentinel, hard links, whiteouts, opaque markers —
applied by a real ``polyarch run``, nothing outside the rootfs changes and the CLI never shows a traceback
(a refused layer gives exactly one ``error:`` line)."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.security.cases import UP
from tests.security.conftest import PLATFORM, World, error_lines
from tests.security.hostile import Dir, Entry, File, HostileImage, Link, Sym, layer_tar
from tests.security.sentinel import make_sentinel, snapshot

pytestmark = [pytest.mark.root, pytest.mark.slow]

NAMES = ("a", "b", "x", "etc")
SENTINEL = "{S}"  # replaced by the sentinel's absolute path
TARGETS = ("/", "..", "../..", UP.rstrip("/"), SENTINEL, SENTINEL + "/etc", "a", "b", "a/b", "x/a", "etc/passwd")

paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
entries = st.one_of(
    st.builds(lambda p: ("dir", p, ""), paths),
    st.builds(lambda p: ("file", p, ""), paths),
    st.builds(lambda p, t: ("symlink", p, t), paths, st.sampled_from(TARGETS)),
    st.builds(lambda p, t: ("link", p, t), paths, st.one_of(paths, st.sampled_from(("etc/passwd", "file")))),
    st.builds(lambda d, n: ("whiteout", d, n), st.one_of(st.just(""), paths), st.sampled_from((*NAMES, "none",
                                                                                             "file", "passwd"))),
    st.builds(lambda d: ("opaque", d, ""), st.one_of(st.just(""), paths)),
)
layers = st.lists(st.lists(entries, min_size=1, max_size=8), min_size=1, max_size=2)


def _entry(kind: str, path: str, arg: str, sentinel: str) -> Entry:
    arg = arg.replace(SENTINEL, sentinel)
    if kind == "dir":
        return Dir(path, mode=0o777, uid=4242)
    if kind == "file":
        return File(path, b"pwn\n", mode=0o4777, uid=4242)
    if kind == "symlink":
        return Sym(path, arg)
    if kind == "link":
        return Link(path, arg)
    prefix = path + "/" if path else ""
    return File(prefix + (".wh..wh..opq" if kind == "opaque" else ".wh." + arg))


@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(layers)
@example([[("whiteout", "x/a", "none"), ("symlink", "x", SENTINEL), ("file", "x/a/file", "")]])
def test_no_entry_sequence_changes_the_host(world: World, layers: list[list[tuple[str, str, str]]]) -> None:
    s = str(world.sentinel)
    tars = [layer_tar([_entry(*e, s) for e in layer]) for layer in layers]
    name = world.load(HostileImage(tars, base=world.base))
    proc = world.cli("run", "--platform", PLATFORM, name, "true")
    changed = snapshot(world.sentinel) != world.sentinel_before
    if changed:  # put the host back so that the next (shrunk) example starts from the same sentinel
        shutil.rmtree(world.sentinel)
        make_sentinel(world.sentinel)
    assert not changed, "the sentinel (the host) was changed"
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    if proc.returncode != 0:
        assert len(error_lines(proc.stderr)) == 1, proc.stderr
