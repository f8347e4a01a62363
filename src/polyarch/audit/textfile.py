"""Reading audit's input files: bounded (``MAX_INPUT``), and YAML parsed with the error's line and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polyarch.errors import NotFound, ParseError, SourceSpan

__all__ = ["MAX_INPUT", "parse_yaml", "read_text"]

MAX_INPUT = 4 << 20


def read_text(path: Path, what: str) -> str:
    """:raises NotFound: ``path`` cannot be read. :raises ParseError: it is larger than ``MAX_INPUT``."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_INPUT + 1)
    except FileNotFoundError:
        raise NotFound(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise NotFound(f"cannot read {what} {path}: {exc.strerror}") from exc
    if len(data) > MAX_INPUT:
        raise ParseError(f"{what} {path} is larger than {MAX_INPUT} bytes")
    return data.decode("utf-8", errors="replace")


def parse_yaml(text: str, path: Path) -> Any:
    """:raises ParseError: invalid YAML, located in ``path``."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        span = None
        if mark is not None:
            lines = text.splitlines()
            line = lines[mark.line] if mark.line < len(lines) else ""
            span = SourceSpan(str(path), mark.line + 1, mark.column + 1, 1, line)
        raise ParseError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", span) from None
