"""Golden plans for the Dockerfile corpus (tests/frontend/corpus/NN-name/Dockerfile).

Each case is planned for linux/amd64 and linux/arm64 (or the ``platforms`` of its ``args.json``) on a fixed
linux/amd64 build host; the canonical JSON of the plan (or the rendered error) must equal the checked-in
``plan.json`` (or ``error.txt``). Regenerate with ``POLYARCH_UPDATE_GOLDENS=1 python -m pytest tests/frontend``
and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from polyarch.errors import PolyarchError
from polyarch.frontend.convert.plan import plan_build, plan_to_json
from polyarch.frontend.dockerignore import parse_dockerignore
from polyarch.platform import parse_list
from tests.frontend.fakes import BUILD, is_native, resolve_image

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "Dockerfile").is_file())
UPDATE = os.environ.get("POLYARCH_UPDATE_GOLDENS") == "1"


def run_case(case: Path) -> tuple[str, str]:
    """(golden file name, its expected text) for one corpus directory."""
    args = json.loads((case / "args.json").read_text()) if (case / "args.json").exists() else {}
    ignore = case / ".dockerignore"
    excludes = [str(p) for p in parse_dockerignore(ignore.read_text())] if ignore.exists() else []
    try:
        plan = plan_build((case / "Dockerfile").read_text(), filename="Dockerfile",
                          platforms=parse_list(args.get("platforms", ["linux/amd64,linux/arm64"])),
                          target=args.get("target", ""), build_args=args.get("build_args", {}),
                          build_contexts=args.get("build_contexts", {}), resolve_image=resolve_image,
                          build_platform=BUILD, is_native=is_native, context_excludes=excludes)
    except PolyarchError as exc:
        return "error.txt", exc.render() + "\n"
    return "plan.json", json.dumps(plan_to_json(plan), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    case = CORPUS / name
    golden, text = run_case(case)
    if name.split("-", 2)[1] == "error":
        assert golden == "error.txt", f"{name} should fail to plan"
    else:
        assert golden == "plan.json", f"{name} failed: {text}"
    path = case / golden
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"missing golden {path}; run with POLYARCH_UPDATE_GOLDENS=1"
    assert text == path.read_text()


def test_corpus_is_large_enough() -> None:
    assert len([c for c in CASES if "-error-" not in c]) >= 40


def _all_dockerfiles() -> str:
    return "\n".join((CORPUS / c / "Dockerfile").read_text() for c in CASES)


def test_corpus_covers_every_instruction_flag_and_form() -> None:
    text = _all_dockerfiles()
    keywords = {line.split()[0].upper() for line in text.splitlines() if line and line[0].isalpha()}
    from polyarch.frontend.dockerfile.lexer import INSTRUCTIONS

    assert set(INSTRUCTIONS) <= keywords
    for flag in ("--platform", "--mount=type=bind", "--mount=type=cache", "--mount=type=tmpfs",
                 "--mount=type=secret", "--mount=type=ssh", "--network", "--security", "--from", "--chown",
                 "--chmod", "--link", "--parents", "--exclude", "--checksum", "--keep-git-dir", "--unpack",
                 "--interval", "--timeout", "--start-period", "--start-interval", "--retries", "sharing=",
                 "uid=", "gid=", "mode=", "required", "env=", "size=", "id=", ",rw", ",ro"):
        assert flag in text, flag
    for directive in ("# syntax=", "# escape=", "# check="):
        assert directive in text, directive
    for form in (":-", "-dflt", ":+", "+alt", "#*.", "##*.", "%.*", "%%.*", "/usr/opt", "//usr/opt", "<<-",
                 "<<'", "<<-\"", "<<EOF", "\\$", "'$", "`"):
        assert form in text, form
    assert re.search(r"^ENV \w+ [^=]*$", text, re.M), "legacy ENV form"
