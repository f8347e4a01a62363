"""What a plan learns on the way, for ``--call=outline`` and the unused-build-arg warning: declared and used ARGs,
secrets and SSH ids. A frozen value; each method returns a new one (first declaration wins)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

__all__ = ["ArgInfo", "Capture", "describe"]


def describe(comments: tuple[str, ...], name: str) -> str:
    """BuildKit's description comments: the line ``# <name> <description>`` right above a definition."""
    for line in comments:
        if line.startswith(name + " "):
            return line[len(name) + 1:].strip()
    return ""


@dataclass(frozen=True, slots=True)
class ArgInfo:
    name: str
    value: str | None
    description: str
    line: int


@dataclass(frozen=True, slots=True)
class Capture:
    """``args``: the first declaration of each ARG; ``used``: names some expansion read; ``consumed``: names some
    ARG declared; ``secrets``/``ssh``: id → (required, line) of their first mount."""

    args: Mapping[str, ArgInfo] = field(default_factory=dict)
    used: frozenset[str] = frozenset()
    consumed: frozenset[str] = frozenset()
    secrets: Mapping[str, tuple[bool, int]] = field(default_factory=dict)
    ssh: Mapping[str, tuple[bool, int]] = field(default_factory=dict)

    def declare(self, name: str, value: str | None, comments: tuple[str, ...], line: int) -> Capture:
        consumed = self.consumed if name in self.consumed else self.consumed | {name}
        if name in self.args:
            return self if consumed is self.consumed else replace(self, consumed=consumed)
        return replace(self, consumed=consumed,
                       args={**self.args, name: ArgInfo(name, value, describe(comments, name), line)})

    def use(self, names: Iterable[str]) -> Capture:
        names = frozenset(names)
        if names <= self.used:
            return self
        return replace(self, used=self.used | names)

    def mount(self, kind: str, id: str, required: bool, line: int) -> Capture:
        """Note a ``secret`` or ``ssh`` mount (other kinds are not captured)."""
        if kind not in ("secret", "ssh"):
            return self
        known = self.secrets if kind == "secret" else self.ssh
        if id in known:
            return self
        return replace(self, **{"secrets" if kind == "secret" else "ssh": {**known, id: (required, line)}})
