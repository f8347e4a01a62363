"""One way to read an image from anywhere: the local store, an OCI layout directory, an OCI or docker archive
tarball, a registry.

- ``protocol``: the seam, ``ContentSource`` (read-only content at one place, every read checked against its
  descriptor) and ``Opened`` (a source and the root document a location names);
- ``location``: ``parse_location`` (the one parser of location strings) and ``open_source`` (the one opener, with
  each command's fallback ``order`` as a value);
- ``store``, ``layout``, ``tarball`` (OCI and docker archives), ``registry``, ``composite``: the sources.

Collaborators (the local ``ImageStore``, a registry client factory) are given by the caller, never made here.
"""

from .location import (
           REGISTRY_ONLY,
           STORE_THEN_REGISTRY,
           VERIFY_ORDER,
           Kind,
           Location,
           Scheme,
           open_source,
           parse_location,
)
from .protocol import ContentSource, Opened, read_config

__all__ = ["REGISTRY_ONLY", "STORE_THEN_REGISTRY", "VERIFY_ORDER", "ContentSource", "Kind", "Location", "Opened",
           "Scheme", "open_source", "parse_location", "read_config"]
