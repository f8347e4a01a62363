"""``--print`` golden tests: every case under corpus/ resolves to its reviewed expected.json, or fails with
its expected one-line error (file:line:col where the error has a place)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .corpus_runner import CORPUS, run_case

CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir())


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Path) -> None:
    kind, out = run_case(case)
    if (case / "expected-error.txt").exists():
        assert kind == "error", f"expected an error, got {out}"
        assert out == (case / "expected-error.txt").read_text().strip()
    else:
        assert kind == "ok", out
        assert out == json.loads((case / "expected.json").read_text())
