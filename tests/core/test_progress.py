"""Progress renderers: BuildKit's rawjson SolveStatus shape, the failed step's last lines in every mode, and
cancelled steps shown as CANCELED rather than failed."""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any

import pytest

from polyarch.cancel import Cancelled
from polyarch.progress import TAIL_LINES, Progress, QuietRenderer, make_renderer

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
VERTEX_KEYS = {"digest", "inputs", "name", "started", "completed", "cached", "error"}
LOG_KEYS = {"vertex", "stream", "data", "timestamp"}


def _drive(progress: Progress) -> None:
    """A cached step, a RUN with output that succeeds, one that fails after 12 lines, a warning."""
    progress.cached("[1/3] COPY a /a", digest="sha256:" + "a" * 64, inputs=["sha256:" + "0" * 64])
    with progress.vertex("[2/3] RUN echo hi", digest="sha256:" + "b" * 64, inputs=["sha256:" + "a" * 64]) as h:
        h.log("hi")
        h.log("oops", stream="stderr")
    with pytest.raises(RuntimeError), progress.vertex("[3/3] RUN false", digest="sha256:" + "c" * 64) as h:
        for i in range(12):
            h.log(f"line {i}")
        raise RuntimeError("process did not complete successfully: exit code: 1")
    progress.message("something odd")
    progress.close()


def test_rawjson_is_buildkit_solve_status() -> None:
    out = io.StringIO()
    _drive(Progress(make_renderer("rawjson", out)))
    docs: list[dict[str, Any]] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert docs and all(set(d) <= {"vertexes", "statuses", "logs", "warnings"} and d for d in docs)
    vertexes = [v for d in docs for v in d.get("vertexes", [])]
    logs = [x for d in docs for x in d.get("logs", [])]
    for v in vertexes:
        assert set(v) <= VERTEX_KEYS and v["digest"].startswith("sha256:") and v["name"]
        assert all(RFC3339.match(v[k]) for k in ("started", "completed") if k in v)
    cached = [v for v in vertexes if v.get("cached")]
    assert [v["name"] for v in cached] == ["[1/3] COPY a /a"]
    assert cached[0]["inputs"] == ["sha256:" + "0" * 64] and cached[0]["completed"]
    run = [v for v in vertexes if v["digest"] == "sha256:" + "b" * 64]
    assert "completed" not in run[0] and run[-1]["completed"] >= run[-1]["started"] and "error" not in run[-1]
    assert run[0]["inputs"] == ["sha256:" + "a" * 64]
    failed = [v for v in vertexes if v["digest"] == "sha256:" + "c" * 64]
    assert failed[-1]["error"] == "process did not complete successfully: exit code: 1"
    for entry in logs:
        assert set(entry) == LOG_KEYS and RFC3339.match(entry["timestamp"])
    hi = [x for x in logs if x["vertex"] == "sha256:" + "b" * 64]
    assert [(x["stream"], base64.b64decode(x["data"])) for x in hi] == [(1, b"hi\n"), (2, b"oops\n")]
    assert sum(x["vertex"] == "sha256:" + "c" * 64 for x in logs) == 12  # every line of the failed step
    warnings = [w for d in docs for w in d.get("warnings", [])]
    assert [base64.b64decode(w["short"]) for w in warnings] == [b"something odd"]


def _block(text: str) -> list[str]:
    block = text[text.rindex("------\n >"):].split("\n")
    assert block[1] == " > [3/3] RUN false:" and block[-2] == "------"
    return [re.sub(r"^\d+\.\d{3} ", "", line) for line in block[2:-2]]


@pytest.mark.parametrize("mode", ["plain", "quiet", "tty"])
def test_failed_step_tail_printed_when_closing(mode: str) -> None:
    out = io.StringIO()
    _drive(Progress(make_renderer(mode, out)))
    assert _block(out.getvalue()) == [f"line {i}" for i in range(12 - TAIL_LINES, 12)]


def test_quiet_without_stream_prints_nothing() -> None:
    p = Progress(QuietRenderer())
    _drive(p)  # no stream: nowhere to print, no failure


def test_cancelled_step_is_canceled_not_failed() -> None:
    out = io.StringIO()
    p = Progress(make_renderer("plain", out))
    with pytest.raises(Cancelled), p.vertex("[2/2] RUN sleep 600") as h:
        h.log("started")
        raise Cancelled()
    p.close()
    text = out.getvalue()
    assert "#1 CANCELED" in text and "ERROR" not in text and "------" not in text
    raw = io.StringIO()
    p = Progress(make_renderer("rawjson", raw))
    with pytest.raises(Cancelled), p.vertex("[2/2] RUN sleep 600"):
        raise Cancelled()
    last = json.loads(raw.getvalue().splitlines()[-1])
    assert last["vertexes"][0]["error"] == "context canceled"
