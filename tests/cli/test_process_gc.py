"""``cli.main.ProcessGc``: in the polyarch process (``main()`` without arguments) the cyclic collector is off while
the command's module is imported, the heap is frozen before the command runs, and again at exit; a caller that
passes ``argv`` (tests, embedding) keeps its collector as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Runs ``polyarch --root ROOT images`` in a fresh interpreter and reports the collector's state when the command's
# module is imported (before it runs), when a module the command imports as it runs is imported, and at exit.
PROBE = """
import atexit, gc, json, sys
seen = {}
class Watch:  # a finder that finds nothing: it notes the collector's state when a watched module is first looked up
    def find_spec(self, name, path=None, target=None):
        if name in ("polyarch.cli.images", "polyarch.content.summary") and name not in seen:
            seen[name] = [gc.isenabled(), gc.get_freeze_count() > 0]
sys.meta_path.insert(0, Watch())
atexit.register(lambda: print(json.dumps({**seen, "exit": [gc.isenabled(), gc.get_freeze_count() > 0]})))
from polyarch.cli.main import main
root = sys.argv[2]
if sys.argv[1] == "process":
    sys.argv = ["polyarch", "--root", root, "images"]
    main()
else:
    try:
        main(["--root", root, "images"])
    except SystemExit:
        pass
"""


def _probe(mode: str, root: Path) -> dict[str, list[bool]]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode, str(root)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_process_collector_off_while_importing_then_frozen(tmp_path: Path) -> None:
    seen = _probe("process", tmp_path / "root")
    assert seen["polyarch.cli.images"] == [False, False]  # importing the command: collector off, nothing frozen yet
    assert seen["polyarch.content.summary"] == [True, True]  # the command runs: collector on, the imports frozen
    assert seen["exit"] == [True, True]


def test_main_with_argv_leaves_the_collector_alone(tmp_path: Path) -> None:
    seen = _probe("library", tmp_path / "root")
    assert seen["polyarch.cli.images"] == [True, False]
    assert seen["polyarch.content.summary"] == [True, False]
    assert seen["exit"] == [True, False]
