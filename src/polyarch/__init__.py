"""polyarch: daemonless multi-architecture OCI image builder, registry and verifier."""

import sys as _sys

# httpx's package __init__ imports its command-line client (httpx._main), which loads rich.console and pygments:
# about 50 ms of every polyarch start that talks to a registry. A None entry makes that import fail, and httpx
# then defines its own stub ``main``; polyarch never uses httpx's CLI. No effect if httpx was imported already.
_sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

__version__ = "0.1.0"
__all__ = ["__version__"]
