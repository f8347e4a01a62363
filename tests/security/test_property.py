"""The property that kills the class (issue 13): for ANY sequence of tar entries over a small alphabet of names —
directories, files, symlinks to ``/``, ``..``, siblings and the sentinel, hard links, whiteouts, opaque markers —
applied by a real ``polyarch run``, nothing outside the rootfs changes and the CLI never shows a traceback
(a refused layer gives exactly one ``error:`` line)."""

from __future__ import annotations

import random
import shutil

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from tests.security.cases import UP
from tests.security.conftest import PLATFORM, World, error_lines
from tests.security.hostile import Dir, Entry, File, HostileImage, Link, Sym, layer_tar
from tests.security.sentinel import make_sentinel, snapshot

pytestmark = [pytest.mark.root, pytest.mark.slow]

SENTINEL = "{S}"  # replaced by the sentinel's absolute path
REL = "{R}"  # replaced by the sentinel's path without its leading /
# Few paths, so that entries collide (a parent, then a symlink over it, then its child...). "/" is a target only
# for the name "r", and paths through "r" always go on into the sentinel ("r/{R}/…"): even a polyarch that
# followed symlinks on the host could touch nothing but the sentinel. ".." goes up one level at most (inside the
# test's tmp directory); UP + REL climbs to / and comes down into the sentinel.
SLOTS = ("x", "x/a", "x/a/b", f"r/{REL}/a", f"r/{REL}/a/b")
TARGETS = (SENTINEL, SENTINEL + "/a", UP + REL, "..", "x")

KINDS = ("whiteout", "whiteout", "opaque", "symlink", "symlink", "dir", "file", "file", "link")
DEEP = SLOTS[1:]  # entries other than symlinks go below the top, so that a symlink can come over their parent
WHITEOUT_NAMES = ("none", "file", "a", "b")


def _sequence(rnd: random.Random) -> list[list[tuple[str, str, str]]]:
    """A random entry sequence (1–2 layers of 3–12 entries). Drawn from a Random that hypothesis seeds: uniform
    from the first example (hypothesis's own generation starts from the simplest sequences, which never collide)."""
    out = []
    for _ in range(rnd.choice((1, 1, 2))):
        layer = []
        for _ in range(rnd.randint(3, 12)):
            kind = rnd.choice(KINDS)
            if kind == "whiteout":
                layer.append((kind, rnd.choice(DEEP), rnd.choice(WHITEOUT_NAMES)))
            elif kind == "symlink":
                layer.append(rnd.choice([(kind, "r", "/"), (kind, rnd.choice(("x", "x/a")), rnd.choice(TARGETS))]))
            elif kind == "link":
                layer.append((kind, rnd.choice(DEEP), rnd.choice((*SLOTS, f"r/{REL}/file"))))
            else:
                layer.append((kind, rnd.choice(DEEP), ""))
        out.append(layer)
    return out


sequences = st.randoms(use_true_random=True).map(_sequence)


def _entry(kind: str, path: str, arg: str, sentinel: str) -> Entry:
    rel = sentinel.lstrip("/")
    path = path.replace(REL, rel)
    arg = arg.replace(SENTINEL, sentinel).replace(REL, rel)
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


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sequences)
@example([[("whiteout", "x/a", "none"), ("symlink", "x", SENTINEL), ("file", "x/a/file", "")]])
@example([[("whiteout", f"r/{REL}/a", "none"), ("symlink", "r", "/"), ("file", f"r/{REL}/a/file", "")]])
def test_no_entry_sequence_changes_the_host(world: World, layers: list[list[tuple[str, str, str]]]) -> None:
    note(f"layers: {layers!r}")
    s = str(world.sentinel)
    tars = [layer_tar([_entry(*e, s) for e in layer]) for layer in layers]
    shutil.rmtree(world.store / "snapshots", ignore_errors=True)  # every example applies its layers afresh
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
