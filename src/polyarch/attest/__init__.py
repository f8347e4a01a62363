"""Attestations: SBOM and SLSA provenance in-toto statements per platform manifest, attached as OCI 1.1 referrers
(or the buildx way), and read back. Layer 6 (reads image layers like ``verify/``); the CLI wires it.

Modules: ``options`` (flag values), ``scanners`` + ``goinfo`` (pure package scanners), ``layers`` (streamed layer
scan and merge), ``sbom`` (SPDX 2.3), ``provenance`` (SLSA v1 / v0.2), ``statement`` (in-toto), ``generate``
(one build's statements), ``attach`` (into the store), ``read`` (back from store, layout or registry).
"""
