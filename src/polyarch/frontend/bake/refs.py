"""``target.NAME.ATTR``: one attribute written in NAME's own ``target`` blocks (not inherited, not of a matrix
target), evaluated on demand and once. Cycles are found per attribute, so a target may read its own or a
partner's other attributes (``tags = ["app:${target.app.args.V}"]``); only a real cycle
(``x.tags → y.tags → x.tags``) is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from .expr import Scope, evaluate, located
from .syntax import Block, Pos

__all__ = ["TargetAttrs"]

Merge = Callable[[dict[str, Any], Mapping[str, Any]], None]


class TargetAttrs:
    """The attributes of every ``target`` block, readable one at a time; owns the cache and the cycle stack."""

    def __init__(self, blocks: Mapping[str, Sequence[Block]], scope: Callable[[], Scope], merge: Merge,
                 sources: Mapping[str, str]) -> None:
        self.blocks = blocks
        self.scope = scope
        self.merge = merge
        self.sources = sources
        self._done: dict[tuple[str, str], Any] = {}
        self._stack: list[tuple[str, str]] = []

    def written(self, name: str) -> set[str]:
        return {a.name for b in self.blocks.get(name, ()) for a in b.body.attributes} - {"matrix", "name"}

    def value(self, name: str, attr: str, pos: Pos) -> Any:
        """NAME's ATTR (same-labelled blocks merged). :raises ParseError: a matrix target, a cycle."""
        key = (name, attr)
        if key in self._done:
            return self._done[key]
        blocks = self.blocks[name]
        if any(b.body.attr("matrix") is not None for b in blocks):
            raise located(f"target.{name}: a matrix target cannot be referenced", pos, self.sources)
        with self.guard(name, attr, pos):
            out: dict[str, Any] = {}
            for block in blocks:
                found = block.body.attr(attr)
                if found is not None:
                    self.merge(out, {attr: evaluate(found.expr, self.scope())})
        self._done[key] = out[attr]
        return out[attr]

    @contextmanager
    def guard(self, name: str, attr: str, pos: Pos) -> Iterator[None]:
        """Marks NAME's ATTR as being evaluated (also by the evaluator for a whole target's attributes).

        :raises ParseError: it already is: a reference cycle.
        """
        key = (name, attr)
        if key in self._stack:
            chain = " -> ".join(f"target.{n}.{a}" for n, a in [*self._stack[self._stack.index(key):], key])
            raise located(f"target reference cycle: {chain}", pos, self.sources)
        self._stack.append(key)
        try:
            yield
        finally:
            self._stack.pop()

    def root(self, pos: Pos) -> dict[str, Any]:
        """The value of the name ``target`` at ``pos``."""
        return _Targets(self, pos)


class _Targets(dict[str, Any]):
    def __init__(self, attrs: TargetAttrs, pos: Pos) -> None:
        super().__init__()
        self.attrs = attrs
        self.pos = pos

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.attrs.blocks

    def __getitem__(self, name: str) -> dict[str, Any]:
        return _Target(self.attrs, name, self.pos)


class _Target(dict[str, Any]):
    def __init__(self, attrs: TargetAttrs, name: str, pos: Pos) -> None:
        super().__init__()
        self.attrs = attrs
        self.name = name
        self.pos = pos

    def __contains__(self, attr: object) -> bool:
        return isinstance(attr, str) and attr in self.attrs.written(self.name)

    def __getitem__(self, attr: str) -> Any:
        return self.attrs.value(self.name, attr, self.pos)
