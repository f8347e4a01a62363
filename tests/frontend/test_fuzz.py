"""Property: the parser and the planner raise nothing but the project's errors, whatever the input."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyarch.errors import PolyarchError
from polyarch.frontend.convert.plan import plan_build
from polyarch.frontend.dockerfile.parse import parse_dockerfile
from polyarch.frontend.dockerfile.shell import expand_word
from tests.frontend.fakes import AMD64, ARM64, is_native, resolve_image

_KEYWORDS = ["FROM", "RUN", "COPY", "ADD", "ARG", "ENV", "LABEL", "WORKDIR", "USER", "EXPOSE", "VOLUME", "CMD",
             "ENTRYPOINT", "SHELL", "HEALTHCHECK", "ONBUILD", "STOPSIGNAL", "MAINTAINER", "from", "AS", "as"]
_PIECES = ["alpine", "scratch", "a", "b", "$X", "${X:-y}", "${", "}", "'", '"', "\\", "`", "<<EOF", "<<-'E'",
           "EOF", "E", "--platform=$BUILDPLATFORM", "--from=a", "--mount=type=cache,target=/c", "--chmod=755",
           "[\"x\"]", "[", "]", "=", "#", "# escape=`", "# syntax=x", "--", "0", "/d/", "CMD", "NONE", "\t"]
_line = st.lists(st.sampled_from(_KEYWORDS + _PIECES), min_size=0, max_size=6).map(" ".join)
_dockerfile = st.lists(_line, min_size=0, max_size=10).map("\n".join)
_SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(st.text(max_size=200))
def test_parse_arbitrary_text(text: str) -> None:
    try:
        parse_dockerfile(text)
    except PolyarchError:
        pass


@_SETTINGS
@given(_dockerfile)
def test_parse_and_plan_dockerfile_like_text(text: str) -> None:
    try:
        plan_build(text, platforms=[AMD64, ARM64], build_platform=AMD64, is_native=is_native,
                   resolve_image=resolve_image)
    except PolyarchError:
        pass


@_SETTINGS
@given(st.text(alphabet="ab$'\"\\{}:-+?#%/*[]! \n", max_size=40))
def test_expand_arbitrary_words(word: str) -> None:
    try:
        expand_word(word, {"a": "x y", "b": ""})
    except PolyarchError:
        pass
