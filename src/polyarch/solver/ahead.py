"""Work ahead of a base pull: which steps on a ``FROM`` image can be written while its layers still download.

A cold build of a COPY-only image waits for its base's pull; the steps stacked on it (WORKDIR, COPY from the
context) need the base only to know which parent directories it already has. ``chain`` names those steps: the
``Mkdir`` and ``Copy`` vertices whose root input is the image (or such a step on it), each with its other
inputs' states, stopping at the first step that needs more of the base than its paths (a RUN; ``--chown``
(names need the base's /etc/passwd); an ADD that unpacks archives; a source that is a stage, not a directory). The executor
(``Executor.ahead``) writes their layers as they would be on a base that has none of the paths they touch.

Why this is safe: a COPY/WORKDIR layer is a pure function of its entries (``copylayer.write_layer``), and the
executor writes each distinct entry list once per build (``_layer_once``, keyed by the entries). When the pull
has finished, each step computes its entries from the real base as always; equal entries (the base lacked those
parents: the common case) take the layer written ahead, other entries write their own. No result ever depends
on the guess. A layer written ahead that no step took is an unnamed blob like any other: ``polyarch prune``
collects it (a failed build deletes it with the rest of what it wrote).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from polyarch import ops

from .state import State
from .unpack import unpacks

__all__ = ["MAX_STEPS", "chain"]

MAX_STEPS = 32  # steps written ahead per image at most
_DIRECTORY_SOURCES = (ops.LocalContext, ops.InlineFiles)  # sources that are directories as soon as they run


def _eligible(v: ops.Vertex, states: Mapping[str, State]) -> list[State] | None:
    """The other inputs' states of ``v`` when it can be written ahead; None when it cannot."""
    if isinstance(v, ops.Mkdir):
        return [] if not v.chown and len(v.inputs) == 1 else None
    if isinstance(v, ops.Copy) and len(v.inputs) == 2 and not v.chown and not unpacks(v):
        source = states.get(v.inputs[1].digest)
        if source is not None and source.directory is not None:
            return [source]
    return None


def chain(image: ops.ImageSource, users: Mapping[str, Sequence[ops.Vertex]], states: Mapping[str, State]
          ) -> list[tuple[ops.Vertex, list[State]]] | None:
    """The steps on ``image`` that can be written ahead, parents before children, each with the states of its
    inputs after the root (its source directory). ``users``: vertex digest → the vertices that take it as an
    input; ``states``: the results known so far. None while the source of such a step has not run yet (ask
    again when it has)."""
    out: list[tuple[ops.Vertex, list[State]]] = []
    todo: list[ops.Vertex] = [image]
    seen: set[str] = set()
    while todo and len(out) < MAX_STEPS:
        parent = todo.pop(0)
        for user in users.get(parent.digest, ()):
            if user.digest in seen or not user.inputs or user.inputs[0].digest != parent.digest:
                continue
            seen.add(user.digest)
            if isinstance(user, ops.Copy) and len(user.inputs) == 2 and user.inputs[1].digest not in states \
                    and isinstance(user.inputs[1], _DIRECTORY_SOURCES):
                return None
            others = _eligible(user, states)
            if others is not None and len(out) < MAX_STEPS:
                out.append((user, others))
                todo.append(user)
    return out
