"""``audit.inputs``: compose files (with ``.env``) and image lists → image uses."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from polyarch.audit.inputs import load_images, parse_images, read_dotenv
from polyarch.errors import ParseError
from polyarch.frontend.bake.compose import parse_compose


def test_compose_interpolation_and_bad_images(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    (tmp_path / ".env").write_text("REGISTRY=localhost:5000\n")
    compose.write_text("services:\n  a:\n    image: ${REGISTRY}/a:${TAG-2}\n  b:\n    image: b:$$x\n")
    with pytest.raises(ParseError, match="service b"):
        load_images(compose, env={})
    compose.write_text("services:\n  a:\n    image: ${REGISTRY}/a:${TAG-2}\n  c:\n    image: ${NEED:?set NEED}\n")
    with pytest.raises(ParseError, match="set NEED"):
        load_images(compose, env={})
    compose.write_text("services:\n  a:\n    image: ${REGISTRY}/a:${TAG-2}\n")
    uses, _ = load_images(compose, env={"TAG": "3"})
    assert [u.ref for u in uses] == ["localhost:5000/a:3"]
    listing = tmp_path / "list"
    listing.write_text("UPPER/case:1\n")
    with pytest.raises(ParseError, match="list:1"):
        load_images(listing, {})




def test_dotenv_file_read_as_python_dotenv_reads_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# a comment\n"
        "export REGISTRY=localhost:5000\n"
        'QUOTED="a b"\n'
        "SINGLE='c d'\n"
        "INLINE=e # a comment after a value\n"
        "NOVALUE\n"
        "SPACED = f\n"
        "EMPTY=\n"
        "LATER=${REGISTRY}/x\n")
    assert read_dotenv(tmp_path) == {"REGISTRY": "localhost:5000", "QUOTED": "a b", "SINGLE": "c d",
                                     "INLINE": "e", "SPACED": "f", "EMPTY": "", "LATER": "${REGISTRY}/x"}
    assert read_dotenv(tmp_path / "none") == {}


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("REGISTRY=localhost:5000\nTAG=1\n")
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  a:\n    image: ${REGISTRY}/a:${TAG}\n")
    uses, _ = load_images(compose, {"TAG": "2"})
    assert [u.ref for u in uses] == ["localhost:5000/a:2"]


def test_bad_pinned_platform(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  a:\n    image: a:1\n    platform: ${P:-linux/arm99}\n")
    with pytest.raises(ParseError, match=r"service a: platform: .*arm99"):
        load_images(compose, {})


# --- bake's compose reader and audit's give the same result for the same text -----------------------------

TAG_NAMES = ("A", "B")
tag_literal = st.text(alphabet="xy0.-", min_size=1, max_size=3)


def _tag_token() -> st.SearchStrategy[str]:
    return st.one_of(
        tag_literal.map(lambda s: "." + s),  # '.' first: never extends a $NAME before it
        st.sampled_from(TAG_NAMES).map(lambda n: "$" + n),
        st.sampled_from(TAG_NAMES).map(lambda n: "${" + n + "}"),
        st.builds(lambda n, op, arg: "${" + n + op + arg + "}", st.sampled_from(TAG_NAMES),
                  st.sampled_from([":-", "-", ":?", "?"]), tag_literal),
    )


@given(st.lists(_tag_token(), max_size=5), st.dictionaries(st.sampled_from(TAG_NAMES), st.text("ab1", max_size=3)))
def test_bake_and_audit_interpolate_alike(tokens: list[str], env: dict[str, str]) -> None:
    image = "registry.example/app:t" + "".join(tokens)
    text = f"services:\n  web:\n    image: '{image}'\n    build: .\n"
    try:
        body = parse_compose(text, "compose.yaml", env)
    except ParseError as exc:
        with pytest.raises(ParseError) as info:
            parse_images(text, Path("compose.yaml"), env)
        assert info.value.message.endswith(exc.message.removeprefix("service 'web': "))
        return
    (target,) = [b for b in body.blocks if b.type == "target"]
    tags = next(a.expr for a in target.body.attributes if a.name == "tags")
    uses, _ = parse_images(text, Path("compose.yaml"), env)
    assert [u.ref for u in uses] == [tags.items[0].value]


def test_bake_required_variable_error_is_located() -> None:
    with pytest.raises(ParseError) as info:
        parse_compose("services:\n  web:\n    build: .\n    image: a:${TAG:?set TAG}\n", "compose.yaml", {})
    assert str(info.value) == "compose.yaml:2:1: service 'web': TAG is required: set TAG"
