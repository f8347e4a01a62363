"""The reference registry (Debian's docker-registry) the registry tests use, for the source contract test."""

from tests.registry.conftest import ref_registry

__all__ = ["ref_registry"]
