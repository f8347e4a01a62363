"""Bake semantics over parsed files: variables, functions, matrix, inherits, groups → a ``Definition``.

Files are merged in order: same-named ``variable`` blocks (last default wins, validations add up), ``function``
blocks (last wins), ``target`` blocks (maps merge by key; ``cache-from``, ``secret``, ``ssh``, ``annotations``
add up, ``attest`` merges by type; every other attribute: last wins — buildx's rules) and ``group`` blocks
(targets add up; a group naming a target of its own name means that target).

* variables (``variables.py``): ``variable`` blocks and top-level ``X = …``, overridden by the environment mapping
  given to ``Evaluator``. Built in: ``BAKE_CMD_CONTEXT``, ``BAKE_LOCAL_PLATFORM`` (both given by the caller).
* ``function "f" { params = [a]  variadic_params = rest  result = … }``.
* ``matrix = { k = [..] }`` + ``name = "app-${k}"``: one target per combination; the block's label selects them all.
* ``inherits = ["a", "b"]``: parents merged in order, then the target itself (later wins); cycles are errors.
* groups may contain groups; a group wins over a target of the same name.
* ``target.NAME.ATTR`` reads an attribute written in a target's own blocks (``refs.py``; cycles per attribute).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from polyarch.errors import ParseError, UsageError

from .expr import Scope, UserFunction, evaluate, located, product
from .functions import FuncError, to_str
from .hcl import Block, Body, Pos, Var
from .model import ATTRIBUTES, MAP_ATTRS, Definition, Group, Target, merge_attest
from .overrides import Override, apply_overrides, from_environment
from .refs import TargetAttrs
from .stdlib import with_home
from .variables import Variables

__all__ = ["Evaluator", "SourceFile"]

_ADDITIVE = frozenset({"cache-from", "secret", "ssh", "annotations", "attest"})
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_MATRIX = 1000  # combinations of one matrix


@dataclass(frozen=True, slots=True)
class SourceFile:
    filename: str
    text: str
    body: Body


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if key in MAP_ATTRS and isinstance(value, dict) and isinstance(into.get(key), dict):
            merged = dict(into[key])
            for k, v in value.items():
                if v is not None or k not in merged:
                    merged[k] = v
            into[key] = merged
        elif key == "attest" and isinstance(value, list) and isinstance(into.get(key), list):
            into[key] = list(merge_attest(tuple(into[key]), tuple(value)))  # by type, as buildx
        elif key in _ADDITIVE and isinstance(value, list) and isinstance(into.get(key), list):
            into[key] = into[key] + [v for v in value if v not in into[key]]
        else:
            into[key] = value


_T = TypeVar("_T")


def _bounded(method: Callable[..., _T]) -> Callable[..., _T]:
    """Deep nesting (expressions, function calls) ends as a ParseError, not Python's RecursionError."""

    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> _T:
        try:
            return method(*args, **kwargs)
        except RecursionError:
            raise ParseError("expressions or function calls are nested too deeply") from None

    return run


def _matches(name: str, pattern: str) -> bool:
    return name == pattern or fnmatch.fnmatchcase(name, pattern)


class Evaluator:
    """All bake files merged; targets, groups and variables evaluated on demand. Pure: the environment
    (``env``), the command context and the local platform are given by the caller."""

    def __init__(self, files: Sequence[SourceFile], env: Mapping[str, str], *, cmd_context: str = ".",
                 local_platform: str = "linux/amd64") -> None:
        self.sources = {f.filename: f.text for f in files}
        self.vars = Variables(env, self.sources)
        self.functions: dict[str, UserFunction] = {}
        self.target_blocks: dict[str, list[Block]] = {}
        self.group_blocks: dict[str, list[Block]] = {}
        self.builtins = {"BAKE_CMD_CONTEXT": cmd_context, "BAKE_LOCAL_PLATFORM": local_platform}
        for f in files:
            for attr in f.body.attributes:
                self.vars.add_attr(attr)
            for block in f.body.blocks:
                self._collect(block)
        self.scope = Scope(self._lookup, self.functions, {}, self.sources, builtins=with_home(env.get("HOME", "")))
        self._raw: dict[str, dict[str, Any]] | None = None
        self._labels: dict[str, list[tuple[str, dict[str, Any], Pos]]] = {}
        self.refs = TargetAttrs(self.target_blocks, lambda: self.scope, _merge, self.sources)
        self._expanded: dict[str, list[str]] = {}
        self._pos: dict[str, Pos] = {}

    def _collect(self, block: Block) -> None:
        kind = block.type
        if kind not in ("variable", "function", "target", "group"):
            raise located(f"unknown block type {kind!r}", block.pos, self.sources,
                          hint="bake files hold variable, function, target and group blocks")
        if len(block.labels) != 1:
            raise located(f"{kind} block needs exactly one name", block.pos, self.sources)
        name = block.labels[0]
        if kind == "function":
            self.functions[name] = self._function(name, block)
        elif kind == "variable":
            self.vars.add_block(name, block)
        elif kind == "target":
            if not _NAME.match(name):
                raise located(f"invalid target name {name!r}", block.pos, self.sources,
                              hint="names may use letters, digits, '_' and '-'")
            self.target_blocks.setdefault(name, []).append(block)
        else:
            self.group_blocks.setdefault(name, []).append(block)

    def _function(self, name: str, block: Block) -> UserFunction:
        body = block.body
        params = body.attr("params")
        result = body.attr("result")
        if result is None:
            raise located(f"function {name!r} has no result", block.pos, self.sources)
        names: list[str] = []
        if params is not None:
            items = getattr(params.expr, "items", None)
            if items is None or not all(isinstance(i, Var) for i in items):
                raise located(f"function {name!r}: params must be a list of names", params.pos, self.sources)
            names = [i.name for i in items]
        variadic = body.attr("variadic_params")
        vname = variadic.expr.name if variadic is not None and isinstance(variadic.expr, Var) else None
        return UserFunction(name, tuple(names), vname, result.expr, block.pos)

    # ---- variables ---------------------------------------------------------------------------------------
    def _lookup(self, name: str, pos: Pos) -> Any:
        if self.vars.declares(name):
            return self.vars.get(name, pos, self.scope)
        if name in self.builtins:
            return self.builtins[name]
        if name == "target":
            return self.refs.root(pos)
        close = difflib.get_close_matches(name, self.vars.names() + list(self.builtins), n=1)
        raise located(f"unknown variable {name!r}", pos, self.sources,
                      hint=f"did you mean {close[0]!r}?" if close else None)

    @_bounded
    def variables(self) -> list[tuple[str, Any, str]]:
        """(name, value, description) of every declared variable, for ``--list variables``."""
        return self.vars.described(self.scope)

    @_bounded
    def validate(self) -> None:
        """Every ``validation`` block of every variable. :raises ParseError: the first one failing."""
        self.vars.validate(self.scope)

    # ---- targets -----------------------------------------------------------------------------------------
    def _block_attrs(self, block: Block, scope: Scope) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for attr in block.body.attributes:
            if attr.name in ("matrix", "name"):
                continue
            key = attr.name
            if key not in ATTRIBUTES and key != "inherits":
                close = difflib.get_close_matches(key, list(ATTRIBUTES), n=1)
                raise located(f"target {block.labels[0]!r}: unsupported attribute {key!r}", attr.pos, self.sources,
                              hint=f"did you mean {close[0]!r}?" if close else None)
            with self.refs.guard(block.labels[0], key, attr.pos):
                value = evaluate(attr.expr, scope)
            if key == "inherits" and isinstance(value, str):
                value = [value]
            out[key] = value
        return out

    def _label(self, label: str) -> list[tuple[str, dict[str, Any], Pos]]:
        """The targets of every block labelled ``label`` (several when it has a matrix), evaluated once."""
        done = self._labels.get(label)
        if done is not None:
            return done
        out = [(name, attrs, block.pos) for block in self.target_blocks[label]
               for name, attrs in self._expand_block(label, block)]
        self._labels[label] = out
        return out

    def _expand(self) -> dict[str, dict[str, Any]]:
        if self._raw is not None:
            return self._raw
        raw: dict[str, dict[str, Any]] = {}
        for label in self.target_blocks:
            for name, attrs, pos in self._label(label):
                if name in raw and label != name and name not in self._expanded.get(label, []):
                    raise located(f"matrix name {name!r} is already a target", pos, self.sources)
                _merge(raw.setdefault(name, {}), attrs)
                self._pos.setdefault(name, pos)
                if name != label:
                    names = self._expanded.setdefault(label, [])
                    if name not in names:
                        names.append(name)
        self._raw = raw
        return raw

    def _expand_block(self, label: str, block: Block) -> list[tuple[str, dict[str, Any]]]:
        matrix_attr = block.body.attr("matrix")
        if matrix_attr is None:
            return [(label, self._block_attrs(block, self.scope))]
        matrix = evaluate(matrix_attr.expr, self.scope)
        if not isinstance(matrix, dict) or not all(isinstance(v, list) for v in matrix.values()):
            raise located(f"target {label!r}: matrix must be a map of lists", matrix_attr.pos, self.sources)
        name_attr = block.body.attr("name")
        size = 1
        for values in matrix.values():
            size *= len(values)
        if size > MAX_MATRIX:
            raise located(f"target {label!r}: matrix has {size} combinations (limit {MAX_MATRIX})",
                          matrix_attr.pos, self.sources)
        combos = product(matrix)
        if name_attr is None and len(combos) > 1:
            raise located(f"target {label!r}: a matrix needs a name template", matrix_attr.pos, self.sources,
                          hint='add e.g. name = "' + label + '-${' + next(iter(matrix)) + '}"')
        out = []
        for combo in combos:
            scope = self.scope.child(combo)
            name = to_str(evaluate(name_attr.expr, scope)) if name_attr is not None else label
            if not _NAME.match(name):
                raise located(f"target {label!r}: matrix name {name!r} is not a valid target name",
                              name_attr.pos if name_attr else block.pos, self.sources,
                              hint="wrap it in sanitize(…)")
            out.append((name, self._block_attrs(block, scope)))
        return out

    @_bounded
    def target_names(self) -> list[str]:
        raw = self._expand()
        return [n for n in raw if n not in self._expanded]

    def _resolve(self, name: str, chain: tuple[str, ...], pos: Pos | None,
                 overrides: Sequence[Override] = ()) -> dict[str, Any]:
        raw = self._expand()
        if name in chain:
            raise located("inherits cycle: " + " -> ".join([*chain[chain.index(name):], name]),
                          self._pos.get(chain[-1]), self.sources)
        if name not in raw:
            if name in self._expanded:
                raise located(f"cannot inherit from matrix target {name!r}; name one of "
                              + ", ".join(self._expanded[name]), pos, self.sources)
            close = difflib.get_close_matches(name, list(raw), n=1)
            raise located(f"{chain[-1]!r} inherits from unknown target {name!r}", pos, self.sources,
                          hint=f"did you mean {close[0]!r}?" if close else None)
        own = raw[name]
        parents = own.get("inherits") or []
        if not isinstance(parents, list):
            raise located(f"target {name!r}: inherits must be a list", self._pos.get(name), self.sources)
        out: dict[str, Any] = {}
        for parent in parents:
            _merge(out, self._resolve(to_str(parent), (*chain, name), self._pos.get(name), overrides))
        _merge(out, {k: v for k, v in own.items() if k != "inherits"})
        mine = [o for o in overrides if _matches(name, o.pattern)]
        if mine:  # buildx overrides every level, so a parent's override reaches its children
            try:
                done = apply_overrides(Target.from_attrs(name, out), mine)
            except FuncError as exc:
                raise located(f"target {name!r}: {exc}", self._pos.get(name), self.sources) from None
            out = {k: list(v) if isinstance(v, tuple) else v for k, v in done.attrs.items()}
        return out

    @_bounded
    def target(self, name: str, overrides: Sequence[Override] = ()) -> Target:
        """The resolved target ``name`` (inherits merged, ``--set`` applied at every level).

        :raises UsageError: no such target.
        """
        raw = self._expand()
        if name not in raw:
            close = difflib.get_close_matches(name, list(raw), n=1)
            raise UsageError(f"unknown target {name!r}", hint=f"did you mean {close[0]!r}?" if close else None)
        resolved = from_environment(overrides, self.vars.env, lookup=self.vars.env_lookup)
        attrs = self._resolve(name, (), None, resolved)
        try:
            return Target.from_attrs(name, attrs)
        except FuncError as exc:
            raise located(f"target {name!r}: {exc}", self._pos.get(name), self.sources) from None

    # ---- groups and selection ----------------------------------------------------------------------------
    @_bounded
    def group(self, name: str) -> Group | None:
        blocks = self.group_blocks.get(name)
        if not blocks:
            return None
        targets: list[str] = []
        desc = ""
        for b in blocks:
            for attr in b.body.attributes:
                if attr.name not in ("targets", "description"):
                    raise located(f"group {name!r}: unsupported attribute {attr.name!r}", attr.pos, self.sources)
            t = b.body.attr("targets")
            if t is not None:
                value = evaluate(t.expr, self.scope)
                if not isinstance(value, list):
                    raise located(f"group {name!r}: targets must be a list", t.pos, self.sources)
                targets += [to_str(v) for v in value if to_str(v) not in targets]
            d = b.body.attr("description")
            if d is not None:
                desc = to_str(evaluate(d.expr, self.scope))
        return Group(name, tuple(targets), desc)

    @_bounded
    def select(self, names: Sequence[str]) -> tuple[list[Group], list[str]]:
        """Requested names → (groups reached, target names in order). :raises: unknown names, group cycles."""
        raw = self._expand()
        groups: list[Group] = []
        targets: list[str] = []

        def visit(name: str, chain: tuple[str, ...]) -> None:
            group = self.group(name)
            if group is not None and name in chain and (name in raw or name in self._expanded):
                group = None  # buildx: a group naming itself means the target of that name
            if group is not None:
                if name in chain:
                    raise ParseError("group cycle: " + " -> ".join([*chain[chain.index(name):], name]))
                if group not in groups:
                    groups.append(group)
                for member in group.targets:
                    visit(member, (*chain, name))
                return
            members = self._expanded.get(name) or ([name] if name in raw else [])
            if not members:
                known = list(raw) + list(self._expanded) + list(self.group_blocks)
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else (
                    "targets: " + ", ".join(self.target_names()) if raw else "the bake files define no targets")
                where = f" (in group {chain[-1]!r})" if chain else ""
                pos = self.group_blocks[chain[-1]][0].pos if chain else None
                if pos is not None:
                    raise located(f"unknown target {name!r}{where}", pos, self.sources, hint=hint)
                raise UsageError(f"unknown target {name!r}", hint=hint)
            for m in members:
                if m not in targets:
                    targets.append(m)

        for n in names:
            visit(n, ())
        return groups, targets

    @_bounded
    def definition(self, names: Sequence[str], overrides: Sequence[Override] = ()) -> Definition:
        self.validate()
        groups, selected = self.select(names)
        raw = self._expand()
        for ov in overrides:
            if not any(_matches(n, ov.pattern) for n in raw):
                raise UsageError(f"--set: no target matches {ov.pattern!r}",
                                 hint="targets: " + ", ".join(self.target_names()))
        targets = {n: self.target(n, overrides) for n in selected}
        if list(names) != ["default"] or self.group("default") is None:
            groups = [Group("default", tuple(names)), *[g for g in groups if g.name != "default"]]
        return Definition(tuple(groups), tuple(targets.values()))
