"""Verify that every platform of an image is what it says: index entries, configs, and the ELF files of each
platform's merged filesystem (streamed, never unpacked). ``verify_image`` is the entry point."""

from __future__ import annotations

from .image import verify_image
from .report import Issue, PlatformResult, VerifyReport, render_json, render_text

__all__ = ["Issue", "PlatformResult", "VerifyReport", "render_json", "render_text", "verify_image"]
