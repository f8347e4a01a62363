"""polyarch: daemonless multi-architecture OCI image builder, registry and verifier."""

__version__ = "0.1.0"
__all__ = ["__version__"]
