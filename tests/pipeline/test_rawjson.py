"""``polyarch build --progress rawjson`` through the real CLI: every progress line is one BuildKit ``SolveStatus``
JSON object (``vertexes``, ``statuses``, ``logs``, ``warnings``) with BuildKit's field names, for a build with
cached steps, a RUN with output and a failing RUN."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import build, needs_run, write_tree

pytestmark = [pytest.mark.root]

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _statuses(stderr: str) -> list[dict[str, Any]]:
    """Each line parsed; only the CLI's own closing ``error:``/``hint:`` lines are not JSON."""
    docs = []
    for line in stderr.splitlines():
        if line.startswith(("error: ", "hint: ")):
            continue
        doc = json.loads(line)
        assert isinstance(doc, dict) and doc and set(doc) <= {"vertexes", "statuses", "logs", "warnings"}, line
        docs.append(doc)
    return docs


def _check_shape(docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    vertexes = [v for d in docs for v in d.get("vertexes", [])]
    logs = [x for d in docs for x in d.get("logs", [])]
    for v in vertexes:
        assert set(v) <= {"digest", "inputs", "name", "started", "completed", "cached", "error"}, v
        assert DIGEST.match(v["digest"]) and isinstance(v["name"], str)
        assert all(DIGEST.match(i) for i in v.get("inputs", []))
        assert all(RFC3339.match(v[k]) for k in ("started", "completed") if k in v)
    for x in logs:
        assert set(x) == {"vertex", "stream", "data", "timestamp"} and x["stream"] in (1, 2)
        assert RFC3339.match(x["timestamp"]) and DIGEST.match(x["vertex"])
        base64.b64decode(x["data"], validate=True)
    return vertexes, logs


def _output(logs: list[dict[str, Any]], digest: str) -> str:
    return b"".join(base64.b64decode(x["data"]) for x in logs if x["vertex"] == digest).decode()


@needs_run("linux/amd64")
def test_rawjson_cached_run_output_and_failure(store_root: Path, tmp_path: Path) -> None:
    ctx = write_tree(tmp_path / "ctx", {
        "Dockerfile": "FROM base/busybox:1\nCOPY a.txt /a.txt\nRUN echo hello-out\n",
        "a.txt": "a\n",
    })
    first = build(store_root, ctx, "--progress", "rawjson", "--platform", "linux/amd64")
    vertexes, logs = _check_shape(_statuses(first.stderr))
    run = [v for v in vertexes if v["name"].endswith("RUN echo hello-out")]
    assert run[0]["started"] and "completed" not in run[0] and run[-1]["completed"] and not run[-1].get("cached")
    assert run[0]["inputs"]  # the step it runs on
    assert _output(logs, run[0]["digest"]) == "hello-out\n"

    (ctx / "Dockerfile").write_text("FROM base/busybox:1\nCOPY a.txt /a.txt\nRUN echo hello-out\n"
                                    "RUN echo bad-out && exit 4\n")
    second = build(store_root, ctx, "--progress", "rawjson", "--platform", "linux/amd64", check=False)
    assert second.returncode == 1
    vertexes, logs = _check_shape(_statuses(second.stderr))
    cached = {v["name"] for v in vertexes if v.get("cached")}
    assert any(n.endswith("COPY a.txt /a.txt") for n in cached) and any(n.endswith("RUN echo hello-out")
                                                                       for n in cached)
    failed = [v for v in vertexes if v.get("error")]
    assert len(failed) == 1 and failed[0]["name"].endswith("RUN echo bad-out && exit 4")
    assert "exit code: 4" in failed[0]["error"] and failed[0]["completed"]
    assert _output(logs, failed[0]["digest"]) == "bad-out\n"
    assert second.stderr.splitlines()[-1].startswith("error: ")
