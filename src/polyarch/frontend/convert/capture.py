"""What a plan learns on the way, for ``--call=outline`` and the unused-build-arg warning: declared and used ARGs,
secrets and SSH ids. A frozen value; each method returns a new one.

ARG declarations are kept per scope (``GLOBAL`` or a stage index), the last declaration of a name in a scope
winning (BuildKit's outline shows an ARG's final value after redefinition); ``outline_args`` picks what BuildKit's
outline lists for a set of converted stages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

__all__ = ["GLOBAL", "ArgInfo", "Capture", "describe"]

GLOBAL = -1  # the scope of ARGs before the first FROM


def describe(comments: tuple[str, ...], name: str) -> str:
    """BuildKit's description comments: the line ``# <name> <description>`` right above a definition."""
    for line in comments:
        if line.startswith(name + " "):
            return line[len(name) + 1:].strip()
    return ""


@dataclass(frozen=True, slots=True)
class ArgInfo:
    """One ARG declaration: its value (``None``: no value), description comment and line. ``inherited``: a stage
    ``ARG NAME`` that took the global ARG's value; ``deps``: the names a global default read."""

    name: str
    value: str | None
    description: str
    line: int
    inherited: bool = False
    deps: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Capture:
    """``args``: (scope, name) → the last declaration there; ``used``: names some expansion read; ``from_used``:
    names a FROM line read; ``consumed``: names some ARG declared; ``secrets``/``ssh``: id → (required, line) of
    their first mount."""

    args: Mapping[tuple[int, str], ArgInfo] = field(default_factory=dict)
    used: frozenset[str] = frozenset()
    from_used: frozenset[str] = frozenset()
    consumed: frozenset[str] = frozenset()
    secrets: Mapping[str, tuple[bool, int]] = field(default_factory=dict)
    ssh: Mapping[str, tuple[bool, int]] = field(default_factory=dict)

    def declare(self, scope: int, info: ArgInfo) -> Capture:
        """Note a declaration; a later line replaces an earlier one of the same scope (the same line planned for
        another platform keeps the first platform's value)."""
        consumed = self.consumed if info.name in self.consumed else self.consumed | {info.name}
        old = self.args.get((scope, info.name))
        if old is not None and old.line >= info.line:
            return self if consumed is self.consumed else replace(self, consumed=consumed)
        return replace(self, consumed=consumed, args={**self.args, (scope, info.name): info})

    def use(self, names: Iterable[str], *, in_from: bool = False) -> Capture:
        names = frozenset(names)
        if names <= self.used and (not in_from or names <= self.from_used):
            return self
        return replace(self, used=self.used | names, from_used=self.from_used | names if in_from else self.from_used)

    def mount(self, kind: str, id: str, required: bool, line: int) -> Capture:
        """Note a ``secret`` or ``ssh`` mount (other kinds are not captured)."""
        if kind not in ("secret", "ssh"):
            return self
        known = self.secrets if kind == "secret" else self.ssh
        if id in known:
            return self
        return replace(self, **{"secrets" if kind == "secret" else "ssh": {**known, id: (required, line)}})

    def outline_args(self, stages: Iterable[int]) -> tuple[ArgInfo, ...]:
        """BuildKit's outline ARGs for the converted ``stages``: every ARG a stage declares (used or not; the
        target's first), and each global ARG a FROM line read or a stage re-declared without a value, with the
        global ARGs its default read; sorted by line."""
        order = list(stages)
        chosen: dict[str, ArgInfo] = {}
        wanted: set[str] = set(self.from_used)
        for scope in order:
            for (s, name), info in self.args.items():
                if s != scope or name in chosen:
                    continue
                if info.inherited:
                    wanted.add(name)
                else:
                    chosen[name] = info
        seen: set[str] = set()
        while wanted:
            name = wanted.pop()
            if name in seen:
                continue
            seen.add(name)
            info = self.args.get((GLOBAL, name))
            if info is None:
                continue
            wanted |= info.deps
            if name not in chosen:
                chosen[name] = info
        return tuple(sorted(chosen.values(), key=lambda a: (a.line, a.name)))
