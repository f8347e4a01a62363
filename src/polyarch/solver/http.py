"""``ADD https://…``: download one file for the solver (streamed, size-limited, checksum verified).

The file is written 0600 like Docker does, with the mtime of ``Last-Modified`` when the server sends one that Go's
``http.ParseTime`` reads (RFC 1123 with ``GMT``, RFC 850, asctime), as BuildKit does; else 0, so the layer does
not depend on when it was built (a header BuildKit cannot parse is ignored, never an error). Redirects are
followed; only http and https URLs.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from polyarch.digest import Digest
from polyarch.errors import BuildError, InvalidDigest, LimitExceeded

__all__ = ["MAX_DOWNLOAD", "download", "parse_http_time"]

MAX_DOWNLOAD = 16 << 30

# Go's http.TimeFormat, time.RFC850 and time.ANSIC (C-locale names; RFC 850's zone name is taken as UTC, as Go
# does for an abbreviation it does not know on a UTC machine)
_LAYOUTS = ("%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S", "%a %b %d %H:%M:%S %Y")
_RFC850_ZONE = re.compile(r" [A-Z]{3,5}$")


def parse_http_time(value: str) -> float | None:
    """Seconds since the epoch of an HTTP date in one of the layouts Go's ``http.ParseTime`` accepts, else None."""
    value = value.strip()
    candidates = [(_LAYOUTS[0], value), (_LAYOUTS[2], value)]
    if _RFC850_ZONE.search(value):
        candidates.append((_LAYOUTS[1], value[:value.rindex(" ")]))
    for layout, text in candidates:
        if not text.isascii():
            continue
        try:
            return datetime.strptime(text, layout).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def download(url: str, dest: Path, *, checksum: str = "", limit: int = MAX_DOWNLOAD, timeout: float = 60.0,
             what: str = "") -> str:
    """Fetch ``url`` into ``dest``; returns ``sha256:…`` of the bytes. ``what`` starts every error message
    (default ``ADD URL``).

    :raises BuildError: HTTP error, network error or checksum mismatch (nothing is left at ``dest``).
    """
    import httpx

    what = what or f"ADD {url}"
    if not url.startswith(("http://", "https://")):
        raise BuildError(f"{what}: only http and https URLs are supported")
    expected = None
    if checksum:
        try:
            expected = Digest.parse(checksum)
        except InvalidDigest as exc:
            raise BuildError(f"ADD --checksum={checksum}: {exc.message}") from exc
    h = hashlib.new(expected.algorithm if expected else "sha256")
    size = 0
    mtime = 0.0
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as resp:
            if resp.status_code != 200:
                raise BuildError(f"{what}: HTTP {resp.status_code}")
            mtime = parse_http_time(resp.headers.get("last-modified", "")) or 0.0
            with open(dest, "wb") as out:
                for chunk in resp.iter_bytes(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        raise LimitExceeded(f"{what}: more than {limit} bytes")
                    h.update(chunk)
                    out.write(chunk)
    except httpx.HTTPError as exc:
        dest.unlink(missing_ok=True)
        raise BuildError(f"{what}: {exc}") from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    got = f"{h.name}:{h.hexdigest()}"
    if expected is not None and got != str(expected):
        dest.unlink(missing_ok=True)
        raise BuildError(f"{what}: checksum mismatch: expected {expected}, got {got}")
    os.chmod(dest, 0o600)
    os.utime(dest, (mtime, mtime))
    if expected is None or expected.algorithm == "sha256":
        return got
    with open(dest, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
