"""Run one corpus case: tests/bake/corpus/NN-name/ holds bake files, an optional args.json
(``names``, ``set``, ``env``, ``files``), and expected.json (``--print`` output) or expected-error.txt
(the error as the CLI prints it: message, source line and caret, hint). ``python -m tests.bake.corpus_runner --regen`` rewrites the
expectations from the current code (review the diff before committing)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from polyarch.cli.bake import read_bake_files
from polyarch.errors import PolyarchError
from polyarch.frontend.bake import Evaluator, parse_files, parse_overrides

CORPUS = Path(__file__).parent / "corpus"


def run_case(case: Path) -> tuple[str, Any]:
    """("ok", print json) or ("error", the rendered error); paths are relative to the case."""
    args = json.loads((case / "args.json").read_text()) if (case / "args.json").exists() else {}
    old = Path.cwd()
    os.chdir(case)
    try:
        env = args.get("env", {})
        ev = Evaluator(parse_files(read_bake_files(args.get("files", []), Path(".")), env), env, cmd_context=".")
        definition = ev.definition(args.get("names") or ["default"], parse_overrides(args.get("set", [])))
        doc = definition.to_print_json()
        # timestamp() changes every run: the corpus checks its length only
        return "ok", doc
    except PolyarchError as exc:
        return "error", exc.render()
    finally:
        os.chdir(old)


def regen() -> None:
    for case in sorted(p for p in CORPUS.iterdir() if p.is_dir()):
        kind, out = run_case(case)
        (case / "expected.json").unlink(missing_ok=True)
        (case / "expected-error.txt").unlink(missing_ok=True)
        if kind == "ok":
            (case / "expected.json").write_text(json.dumps(out, indent=2) + "\n")
        else:
            (case / "expected-error.txt").write_text(out + "\n")
        print(case.name, kind)


if __name__ == "__main__":
    if "--regen" in sys.argv:
        regen()
