"""The conversion's handlers are pure: applying one never changes the state it was given.

Every handler (and ``from_``) is wrapped so that it deep-copies its input state, runs, and asserts the input
still equals the copy; the plans are then built for Dockerfiles from a small grammar (hypothesis) and for every
corpus case. A handler that edits a dict, list or object reachable from its input fails here.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import polyarch.frontend.convert as convert_pkg
from polyarch.errors import PolyarchError
from polyarch.frontend.convert import scope, stage
from polyarch.frontend.convert.plan import plan_build
from polyarch.frontend.convert.state import StageState
from polyarch.frontend.dockerfile import instructions as ins
from tests.frontend.fakes import AMD64, ARM64, is_native, resolve_image

CORPUS = Path(__file__).parent / "corpus"


class Calls:
    """Counts the handler applications the wrappers checked."""

    n = 0


def _checked(handler: Callable[[StageState, Any], StageState]) -> Callable[[StageState, Any], StageState]:
    def wrapper(state: StageState, inst: Any) -> StageState:
        before = copy.deepcopy(state)
        result = handler(state, inst)
        assert state == before, f"{handler.__module__}.{handler.__name__} changed its input state ({inst.src.original})"
        Calls.n += 1
        return result

    return wrapper


@pytest.fixture
def checked_handlers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for kind, handler in list(stage.HANDLERS.items()):
        monkeypatch.setitem(stage.HANDLERS, kind, _checked(handler))
    monkeypatch.setattr(scope, "from_", _checked(scope.from_))
    Calls.n = 0
    yield


def _plan(text: str) -> None:
    try:
        plan_build(text, platforms=[AMD64, ARM64], build_platform=AMD64, is_native=is_native,
                   resolve_image=resolve_image, build_contexts={"ctx": "docker-image://alpine"})
    except PolyarchError:
        pass


_VAR = st.sampled_from(["A", "B", "TARGETARCH", "BUILDPLATFORM", "PATH", "UNSET"])
_WORD = st.one_of(st.sampled_from(["x", "/opt", "a b", "1000", "app", "./src/"]), _VAR.map(lambda v: f"${v}"),
                  _VAR.map(lambda v: f"${{{v}:-d}}"))
_FROM = st.sampled_from(["scratch", "alpine", "debian:12", "example/onbuild-base", "s0", "s1", "ctx",
                         "--platform=$BUILDPLATFORM golang", "--platform=linux/arm64 alpine"])


def _instruction() -> st.SearchStrategy[str]:
    w = _WORD
    return st.one_of(
        st.tuples(_VAR, w).map(lambda t: f"ARG {t[0]}={t[1]}"), _VAR.map(lambda v: f"ARG {v}"),
        st.tuples(_VAR, w).map(lambda t: f"ENV {t[0]}={t[1]!r}"), w.map(lambda x: f"LABEL k={x!r}"),
        w.map(lambda x: f"WORKDIR {x}"), w.map(lambda x: f"USER {x}"),
        st.sampled_from(["EXPOSE 80", "EXPOSE 80-82/udp $A", "VOLUME /data", 'VOLUME ["/v"]', "STOPSIGNAL SIGTERM",
                         "CMD run", 'CMD ["a", "b"]', "ENTRYPOINT x", 'SHELL ["/bin/bash", "-c"]',
                         "HEALTHCHECK --interval=5s CMD true", "ONBUILD RUN echo hi", "MAINTAINER me",
                         "ADD https://example.com/f.tgz /f", "ADD https://example.com/r.git#main:sub /r",
                         "COPY <<EOF /h\nbody $A\nEOF", "RUN <<EOF\n#!/bin/sh\necho\nEOF",
                         "RUN --mount=type=secret,id=s cat /run/secrets/s",
                         "RUN --mount=type=ssh true", "RUN --mount=type=cache,target=/c,from=s0 make"]),
        w.map(lambda x: f"RUN echo {x}"), w.map(lambda x: f"COPY {x} /dst/"),
        st.tuples(st.sampled_from(["s0", "s1", "0", "alpine", "ctx"]), w).map(
            lambda t: f"COPY --from={t[0]} --chown={t[1]} /a /b"),
        w.map(lambda x: f"RUN --mount=type=bind,target=/m,source={x} ls /m"),
    )


_DOCKERFILE = st.lists(
    st.tuples(_FROM, st.lists(_instruction(), max_size=6)), min_size=1, max_size=3,
).map(lambda stages: "ARG A=1\nARG B=$TARGETARCH\n" + "\n".join(
    f"FROM {base} AS s{i}\n" + "\n".join(body) for i, (base, body) in enumerate(stages)))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                                                   HealthCheck.function_scoped_fixture])
@given(_DOCKERFILE)
def test_handlers_never_change_their_input(checked_handlers: None, text: str) -> None:
    _plan(text)


def test_handlers_never_change_their_input_on_the_corpus(checked_handlers: None) -> None:
    for case in sorted(CORPUS.iterdir()):
        if (case / "Dockerfile").is_file():
            _plan((case / "Dockerfile").read_text())
    assert Calls.n > 400  # the wrappers really ran


def test_the_wrapper_catches_a_mutating_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    def mutating(state: StageState, inst: Any) -> StageState:
        state.cfg.env["X"] = "1"  # type: ignore[index]
        return state

    monkeypatch.setitem(stage.HANDLERS, ins.Env, _checked(mutating))
    with pytest.raises(AssertionError, match="changed its input state"):
        plan_build("FROM scratch\nENV A=1\n", build_platform=AMD64, is_native=is_native)


def test_conversion_values_are_frozen() -> None:
    """Every dataclass of the conversion is frozen: no module can edit another's object."""
    seen = 0
    for info in pkgutil.iter_modules(convert_pkg.__path__):
        module = importlib.import_module(f"{convert_pkg.__name__}.{info.name}")
        for obj in vars(module).values():
            if dataclasses.is_dataclass(obj) and isinstance(obj, type) and obj.__module__ == module.__name__:
                seen += 1
                assert obj.__dataclass_params__.frozen, f"{module.__name__}.{obj.__name__} is not frozen"  # type: ignore[attr-defined]
    assert seen >= 8
