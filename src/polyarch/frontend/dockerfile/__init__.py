"""The Dockerfile language: lexer (lines, directives, heredocs), typed instructions, parser, word expansion."""

from polyarch.frontend.dockerfile.parse import parse_dockerfile

__all__ = ["parse_dockerfile"]
