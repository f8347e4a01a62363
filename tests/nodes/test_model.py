"""Builder values (nodes/model.py) and the builders file format (nodes/store.py) without the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyarch.errors import NotFound, StoreError, UsageError
from polyarch.nodes.model import DEFAULT_BUILDER, Builder, BuilderState, Endpoint, Node, parse_endpoint
from polyarch.nodes.store import BuilderStore, dump_state, parse_state
from polyarch.platform import parse


@pytest.mark.parametrize(("text", "want", "target"), [
    ("local", Endpoint("local"), ""),
    ("ssh://pi5", Endpoint("ssh", "", "pi5"), "pi5"),
    ("ssh://pi@pi5.lan:2222", Endpoint("ssh", "pi", "pi5.lan", 2222), "pi@pi5.lan"),
    ("ssh://root@10.0.0.7", Endpoint("ssh", "root", "10.0.0.7"), "root@10.0.0.7"),
    ("ssh://u@[fe80::1]:22", Endpoint("ssh", "u", "fe80::1", 22), "u@fe80::1"),
])
def test_endpoints_round_trip(text: str, want: Endpoint, target: str) -> None:
    got = parse_endpoint(text)
    assert got == want and str(got) == text
    if target:
        assert got.ssh_target == target


@pytest.mark.parametrize("text", ["", "LOCAL", "ssh:/h", "ssh://", "ssh://-h", "ssh://-l@h", "ssh://u:p@h",
                                  "ssh://h:0", "ssh://h:65536", "ssh://h:1e3", "ssh://h/x", "ssh://h?x",
                                  "ssh://h#x", "ssh://a b", "ssh://h;id", "ssh://[::1", "ssh://[h]", "tcp://h",
                                  "ssh://h\n", "ssh://ｈ"])
def test_bad_endpoints(text: str) -> None:
    with pytest.raises(UsageError):
        parse_endpoint(text)


def test_builder_updates() -> None:
    b = Builder("b", ())
    b = b.with_node(Node(b.next_node_name(), parse_endpoint("local")))
    b = b.with_node(Node(b.next_node_name(), parse_endpoint("ssh://x"), (parse("linux/arm64"),)))
    assert [n.name for n in b.nodes] == ["b0", "b1"] and not b.is_local and b.remote_nodes == (b.nodes[1],)
    replaced = b.with_node(Node("b1", parse_endpoint("ssh://y")))  # same name: replaced, as buildx
    assert [str(n.endpoint) for n in replaced.nodes] == ["local", "ssh://y"]
    with pytest.raises(UsageError, match="already node b1"):
        b.with_node(Node("other", parse_endpoint("ssh://x")))
    assert b.with_node(Node("other", parse_endpoint("ssh://x"), flags=("--root", "/o"))).nodes[-1].name == "other"
    with pytest.raises(UsageError, match="last node"):
        b.without_node("b0").without_node("b1")
    with pytest.raises(NotFound):
        b.node("zz")

    s = BuilderState().with_builder(b).using("b")
    assert s.get("default") is DEFAULT_BUILDER and s.all()[-1] is DEFAULT_BUILDER and s.next_name() == "builder0"
    assert s.without("b") == BuilderState()
    with pytest.raises(UsageError):
        s.with_builder(Builder("default", DEFAULT_BUILDER.nodes))
    with pytest.raises(NotFound):
        s.using("zz")


def test_store_round_trip_and_no_write_when_unchanged(tmp_path: Path) -> None:
    store = BuilderStore.in_dir(tmp_path / "cfg")
    assert store.load() == BuilderState()
    b = Builder("b", (Node("n", parse_endpoint("ssh://u@h:2"), (parse("linux/arm/v7"),), ("--root", "/r")),))
    state = store.update(lambda s: s.with_builder(b).using("b"))
    assert store.load() == state == parse_state(dump_state(state))
    assert json.loads(store.path.read_text())["builders"][0]["nodes"][0]["platforms"] == \
        ["linux/arm/v7"]
    mtime = store.path.stat().st_mtime_ns
    store.update(lambda s: s)
    assert store.path.stat().st_mtime_ns == mtime

    def boom(s: BuilderState) -> BuilderState:
        raise UsageError("no")

    with pytest.raises(UsageError):
        store.update(boom)
    assert store.load() == state


def test_unreadable_directory_is_one_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    store = BuilderStore.in_dir(tmp_path / "file")  # the "directory" is a file
    with pytest.raises(StoreError, match="builders file"):
        store.update(lambda s: s.with_builder(DEFAULT_BUILDER.__class__("b", DEFAULT_BUILDER.nodes)))
