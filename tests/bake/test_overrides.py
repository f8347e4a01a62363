"""``--set`` as buildx applies it: at every inheritance level (a parent's override reaches its children, requested
or not), ``args.NAME`` without ``=`` from the environment, ``annotations``/``attest`` merging, empty entries
dropped."""

from __future__ import annotations

from typing import Any

import pytest

from polyarch.cli.bake_request import with_dependencies
from polyarch.errors import UsageError
from polyarch.frontend.bake import Evaluator, SourceFile, parse_overrides
from polyarch.frontend.bake.hcl import parse_hcl

FILE = '''
target "webDEP" {
  args = { VAR_INHERITED = "webDEP", VAR_BOTH = "webDEP" }
  no-cache = true
}
target "webapp" {
  inherits = ["webDEP"]
  dockerfile = "Dockerfile.webapp"
  args = { VAR_BOTH = "webapp" }
  annotations = ["index,manifest:org.opencontainers.image.authors=dvdksn"]
  attest = ["type=provenance,mode=max"]
  output = ["", "type=docker"]
  tags = ["a", "a", "b"]
}
target "grandparent" {
  output = ["type=docker"]
  args = { BAR = "fuu" }
}
target "parent" {
  inherits = ["grandparent"]
  args = { FOO = "bar" }
}
target "child1" {
  inherits = ["parent"]
}
target "child2" {
  inherits = ["parent"]
  args = { FOO2 = "bar2" }
}
target "user" {
  contexts = { base = "target:parent" }
}
'''


def resolve(names: list[str], sets: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    ev = Evaluator([SourceFile("t.hcl", FILE, parse_hcl(FILE, "t.hcl"))], env=env or {})
    return {t.name: dict(t.attrs) for t in ev.definition(names, parse_overrides(sets)).targets}


def test_a_parents_override_reaches_the_requested_child() -> None:
    args = resolve(["webapp"], ["webDEP.args.VAR_INHERITED=override", "webDEP.args.VAR_BOTH=override"])["webapp"]["args"]
    assert args == {"VAR_INHERITED": "override", "VAR_BOTH": "webapp"}


@pytest.mark.parametrize(("sets", "child1", "child2"), [
    ([], {"BAR": "fuu", "FOO": "bar"}, {"BAR": "fuu", "FOO": "bar", "FOO2": "bar2"}),
    (["grandparent.args.BAR=fii", "child1.args.FOO=baaar"], {"BAR": "fii", "FOO": "baaar"},
     {"BAR": "fii", "FOO": "bar", "FOO2": "bar2"}),
    (["grandparent.args.BAR=fii", "child2.args.FOO=baaar"], {"BAR": "fii", "FOO": "bar"},
     {"BAR": "fii", "FOO": "baaar", "FOO2": "bar2"}),
])
def test_nested_inherits_with_overrides(sets: list[str], child1: dict[str, str], child2: dict[str, str]) -> None:
    got = resolve(["child1", "child2"], sets)
    assert got["child1"]["args"] == child1 and got["child2"]["args"] == child2
    assert got["child1"]["output"] == got["child2"]["output"] == ("type=docker",)


def test_args_without_a_value_come_from_the_environment() -> None:
    sets = ["webapp.args.VAR_UNSET", "webapp.args.VAR_EMPTY=", "webapp.args.VAR_SET=bananas",
            "webapp.args.VAR_FROMENV", "webapp.args.VAR_INHERITED=override"]
    args = resolve(["webapp"], sets, env={"VAR_FROMENV": "fromEnv"})["webapp"]["args"]
    assert args == {"VAR_INHERITED": "override", "VAR_BOTH": "webapp", "VAR_EMPTY": "", "VAR_SET": "bananas",
                    "VAR_FROMENV": "fromEnv"}
    off = resolve(["webapp"], ["webapp.args.VAR_FROMENV"],
                  env={"VAR_FROMENV": "fromEnv", "BUILDX_BAKE_DISABLE_VARS_ENV_LOOKUP": "1"})["webapp"]["args"]
    assert off["VAR_FROMENV"] == ""


@pytest.mark.parametrize("item", ["webapp.context", "webapp.tags", "webapp"])
def test_only_args_may_omit_the_value(item: str) -> None:
    with pytest.raises(UsageError, match="invalid --set"):
        parse_overrides([item])


@pytest.mark.parametrize("op", ["=", "+="])
def test_annotations_always_append(op: str) -> None:
    got = resolve(["webapp"], [f"webapp.annotations{op}index,manifest:org.opencontainers.image.vendor=docker"])
    assert got["webapp"]["annotations"] == ("index,manifest:org.opencontainers.image.authors=dvdksn",
                                            "index,manifest:org.opencontainers.image.vendor=docker")


@pytest.mark.parametrize(("sets", "expected"), [
    (["webapp.attest=type=sbom"], ("type=provenance,mode=max", "type=sbom")),
    (["webapp.attest+=type=sbom"], ("type=provenance,mode=max", "type=sbom")),
    (["webapp.attest=type=provenance,mode=min"], ("type=provenance,mode=min",)),
    (["webapp.attest="], ("type=provenance,mode=max",)),
])
def test_attest_merges_by_type(sets: list[str], expected: tuple[str, ...]) -> None:
    assert resolve(["webapp"], sets)["webapp"]["attest"] == expected


def test_empty_outputs_are_dropped_and_duplicates_removed() -> None:
    got = resolve(["webapp"], [])["webapp"]
    assert got["output"] == ("type=docker",) and got["tags"] == ("a", "b")
    assert "output" not in resolve(["webapp"], ["webapp.output="])["webapp"]
    assert resolve(["webapp"], ["webapp.output=", "webapp.output=type=oci,dest=x.tar"])["webapp"]["output"] == \
        ("type=oci,dest=x.tar",)
    # an append on parent and child: the inherited value is not doubled
    assert resolve(["child1"], ["*.tags+=x"])["child1"]["tags"] == ("x",)


def test_a_pattern_must_match_some_target_of_the_files() -> None:
    with pytest.raises(UsageError, match="no target matches 'nosuchtarget'"):
        resolve(["webapp"], ["nosuchtarget.context=foo"])
    assert resolve(["webapp"], ["child*.args.X=1"])["webapp"]["args"].get("X") is None  # matched, not selected


def test_dependencies_get_the_overrides_of_their_parents() -> None:
    ev = Evaluator([SourceFile("t.hcl", FILE, parse_hcl(FILE, "t.hcl"))], env={})
    overrides = parse_overrides(["grandparent.args.BAR=fii"])
    definition = ev.definition(["user"], overrides)
    chosen = with_dependencies(ev, definition.targets, overrides)
    assert chosen["parent"].get("args") == {"BAR": "fii", "FOO": "bar"}
