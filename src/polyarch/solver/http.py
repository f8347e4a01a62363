"""``ADD https://…``: download one file for the solver (streamed, size-limited, checksum verified).

The file is written 0600 like Docker does, with the mtime of ``Last-Modified`` when the server sends one (else
0, so the layer does not depend on when it was built). Redirects are followed; only http and https URLs.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
from pathlib import Path

from polyarch.digest import Digest
from polyarch.errors import BuildError, InvalidDigest, LimitExceeded

__all__ = ["MAX_DOWNLOAD", "download"]

MAX_DOWNLOAD = 16 << 30


def download(url: str, dest: Path, *, checksum: str = "", limit: int = MAX_DOWNLOAD, timeout: float = 60.0) -> str:
    """Fetch ``url`` into ``dest``; returns ``sha256:…`` of the bytes.

    :raises BuildError: HTTP error, network error or checksum mismatch (nothing is left at ``dest``).
    """
    import httpx

    if not url.startswith(("http://", "https://")):
        raise BuildError(f"ADD {url}: only http and https URLs are supported")
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
                raise BuildError(f"ADD {url}: HTTP {resp.status_code}")
            modified = resp.headers.get("last-modified")
            if modified:
                parsed = email.utils.parsedate_to_datetime(modified)
                mtime = parsed.timestamp() if parsed is not None else 0.0
            with open(dest, "wb") as out:
                for chunk in resp.iter_bytes(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        raise LimitExceeded(f"ADD {url}: more than {limit} bytes")
                    h.update(chunk)
                    out.write(chunk)
    except httpx.HTTPError as exc:
        dest.unlink(missing_ok=True)
        raise BuildError(f"ADD {url}: {exc}") from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    got = f"{h.name}:{h.hexdigest()}"
    if expected is not None and got != str(expected):
        dest.unlink(missing_ok=True)
        raise BuildError(f"ADD {url}: checksum mismatch: expected {expected}, got {got}")
    os.chmod(dest, 0o600)
    os.utime(dest, (mtime, mtime))
    if expected is None or expected.algorithm == "sha256":
        return got
    with open(dest, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
