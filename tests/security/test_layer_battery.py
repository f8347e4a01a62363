"""RELIABILITY T1–T8 and issue 13 item 1, each case through every real command that applies layers.

For every (case, entry point): the sentinel (the 'host') is byte-identical afterwards (checked by the ``world``
fixture); a layer that must be rejected fails the command with exactly one ``error:`` line and no traceback;
whatever the outcome, no name was added to the store by the command, nothing is left in ingest, bundles,
snapshot temp dirs or TMPDIR, no mount is left, and a rejected layer left no snapshot of itself.
"""

from __future__ import annotations

import pytest

from tests.conftest import BASE_NAME
from tests.security.cases import CASES, Case
from tests.security.conftest import HOSTILE_NAME, World, assert_clean_failure, chain_ids, error_lines
from tests.security.entrypoints import ENTRY_POINTS, EntryPoint
from tests.security.hostile import layer_tar, sha256

pytestmark = pytest.mark.root


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda e: e.name)
@pytest.mark.parametrize("case", CASES.values(), ids=lambda c: c.name)
def test_hostile_layer(world: World, case: Case, entry: EntryPoint) -> None:
    layers = case.layers(str(world.sentinel))
    names_before = {BASE_NAME, *([HOSTILE_NAME] if entry.loads else [])}
    proc = entry.go(world, layers)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr
    if case.expect == "reject" and entry.applies:
        assert_clean_failure(proc)
    elif case.expect == "accept":
        assert proc.returncode == 0, f"a legitimate layer was refused:\n{proc.stderr}"
    elif proc.returncode != 0:
        assert len(error_lines(proc.stderr)) == 1, f"expected one error: line:\n{proc.stderr}"
    assert world.names() == names_before
    left = {k: v for k, v in world.leftovers().items() if v}
    assert not left, f"left behind: {left}"
    if proc.returncode != 0 and entry.snapshots and case.expect == "reject":
        base = [str(d) for d in world.base.config["rootfs"]["diff_ids"]]  # type: ignore[index]
        hostile = chain_ids([*base, *(sha256(layer_tar(layer)) for layer in layers)])[len(base):]
        assert not set(hostile) & world.snapshot_dirs(), "a rejected layer's snapshot was published"
