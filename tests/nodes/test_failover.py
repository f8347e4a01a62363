"""Where a failed node's platforms go (``nodes/schedule.failover``): ``--node-failover`` modes, pure."""

from __future__ import annotations

import pytest

from polyarch.errors import UsageError
from polyarch.nodes.schedule import Assignment, Candidate, failover, schedule
from polyarch.platform import parse

ARM, AMD = parse("linux/arm64"), parse("linux/amd64")
HERE = Candidate("here", (AMD,), (ARM,))  # emulates arm64
PI5B = Candidate("pi5b", (ARM,))


def test_default_moves_a_native_platform_only_to_a_native_node() -> None:
    lost = [Assignment(ARM, "pi5")]
    assert failover(lost, [HERE, PI5B], "native") == [Assignment(ARM, "pi5b")]
    with pytest.raises(UsageError):  # only an emulating node left: not as planned
        failover(lost, [HERE], "native")


def test_default_moves_an_emulated_platform_to_any_node() -> None:
    assert failover([Assignment(ARM, "pi5", emulated=True)], [HERE], "native") == [Assignment(ARM, "here", True)]


def test_node_failover_takes_emulating_nodes_and_off_takes_none() -> None:
    lost = [Assignment(ARM, "pi5"), Assignment(AMD, "pi5", emulated=True)]
    assert failover(lost, [HERE], "any") == [Assignment(ARM, "here", True), Assignment(AMD, "here")]
    assert failover(lost, [HERE, PI5B], "any")[0] == Assignment(ARM, "pi5b")  # native still first
    with pytest.raises(UsageError, match="--no-node-failover"):
        failover(lost, [HERE, PI5B], "off")
    with pytest.raises(UsageError):  # no node left at all
        failover(lost, [], "any")


def test_moved_platforms_spread_over_equal_nodes() -> None:
    lost = [Assignment(ARM, "pi5"), Assignment(parse("linux/arm64"), "pi5")]
    other = Candidate("pi5c", (ARM,))
    assert [a.node for a in failover(lost, [PI5B, other], "native")] == ["pi5b", "pi5c"]


def test_a_platform_only_emulated_is_planned_emulated() -> None:
    assert schedule([ARM], [HERE]) == [Assignment(ARM, "here", True)]
