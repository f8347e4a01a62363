"""What a build context string is, by buildx's rules (pure: no I/O).

``parse_git_url`` follows BuildKit's ``gitutil.ParseGitRef``, which buildx uses to tell a git context from a local
path:

- ``http://``, ``https://``, ``git://`` and ``ssh://`` URLs (scheme case-insensitive); an http(s) URL is a git
  repository only when its path ends in ``.git``; any other ``SCHEME://`` is no git URL;
- scp-like ``USER@HOST:PATH`` (``git@github.com:org/repo.git``);
- ``github.com/ORG/REPO`` (read as ``https://github.com/ORG/REPO``);
- never a string starting with ``./`` or ``../``.

The fragment ``#REF[:SUBDIR]`` picks the ref (branch, tag or commit; default ``HEAD``) and a subdirectory.
``is_http_url`` is buildx's test for an http(s) context (a tarball or a single file) once git has been ruled out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["GitURL", "is_http_url", "parse_git_url"]

_PROTO = re.compile(r"^([a-zA-Z0-9]+)://")
_GIT_PROTOS = ("http", "https", "git", "ssh")
_SCP = re.compile(r"^([a-zA-Z0-9_-]+)@([a-zA-Z0-9.-]+):(.*?)(?:#(.*))?$")


@dataclass(frozen=True, slots=True)
class GitURL:
    """A git context: the remote as git is given it, the ref (``""``: the remote's HEAD) and a subdirectory."""

    remote: str
    ref: str = ""
    subdir: str = ""

    def __str__(self) -> str:
        tail = self.ref + (f":{self.subdir}" if self.subdir else "")
        return self.remote + (f"#{tail}" if tail else "")


def _fragment(fragment: str) -> tuple[str, str]:
    ref, _, subdir = fragment.partition(":")
    return ref, subdir


def parse_git_url(text: str) -> GitURL | None:
    """The git repository ``text`` names, or None when buildx would not read it as one."""
    if text.startswith(("./", "../")) or "\x00" in text:
        return None
    if text.startswith("github.com/"):
        remote, _, fragment = text.partition("#")
        return GitURL("https://" + remote, *_fragment(fragment))
    m = _PROTO.match(text)
    if m is not None:
        scheme = m.group(1).lower()
        if scheme not in _GIT_PROTOS:
            return None
        try:
            parts = urlsplit(text)
        except ValueError:
            return None
        if not parts.hostname:
            return None
        if scheme in ("http", "https") and not parts.path.endswith(".git"):
            return None
        remote = text.partition("#")[0]
        return GitURL(remote, *_fragment(parts.fragment))
    scp = _SCP.match(text)
    if scp is not None:
        user, host, path, fragment = scp.groups()
        return GitURL(f"{user}@{host}:{path}", *_fragment(fragment or ""))
    return None


def is_http_url(text: str) -> bool:
    """An ``http://`` or ``https://`` URL (buildx: a remote tarball or file when it is no git URL)."""
    return text.startswith(("http://", "https://"))
