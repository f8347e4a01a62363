"""``ADD https://host/repo.git#ref:subdir``: a shallow checkout with the ``git`` binary, for the solver.

The ref (branch, tag or commit; default ``HEAD``) is fetched with depth 1 (a commit the server will not serve
shallowly is fetched in full), checked out detached, checked against ``--checksum`` (a commit id prefix) when
given, and every file's mtime is set to the commit time so the layer does not depend on when it was built.
``.git`` is removed unless ``keep_git_dir``. Git never prompts (``GIT_TERMINAL_PROMPT=0``, no stdin, ssh in
``BatchMode`` unless the user set ``GIT_SSH_COMMAND``/``GIT_SSH``) and reads no user or system config. Remote build
contexts (``pipeline/remotectx.py``) check out through the same ``checkout``.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import subprocess
from pathlib import Path

from polyarch.errors import BuildError
from polyarch.worker.securepath import secure_join

__all__ = ["checkout"]

_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ASKPASS": "true", "LC_ALL": "C"}
# ssh (``git@host:repo``, ``ssh://``) never asks for a password or a host key either, unless the user chose the ssh
_SSH = {} if "GIT_SSH_COMMAND" in os.environ or "GIT_SSH" in os.environ else \
    {"GIT_SSH_COMMAND": "ssh -o BatchMode=yes"}


def _git(args: list[str], cwd: Path, what: str, timeout: float = 600) -> str:
    git = shutil.which("git")
    if git is None:
        raise BuildError("ADD of a git repository needs git", hint="apt-get install git")
    try:
        proc = subprocess.run([git, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env={**os.environ, **_ENV, **_SSH})
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{what}: git {args[0]} timed out") from exc
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise BuildError(f"{what}: git {args[0]}: {detail}")
    return proc.stdout.strip()


def checkout(url: str, ref: str, dest: Path, *, subdir: str = "", keep_git_dir: bool = False,
             checksum: str = "", what: str = "") -> tuple[Path, str]:
    """Check ``url`` at ``ref`` out into ``dest``; returns (the directory to copy from, the commit id).
    ``what`` starts every error message (default ``ADD URL#REF``).

    :raises BuildError: git missing or failing, an unknown ref, a checksum that does not match.
    """
    what = what or f"ADD {url}" + (f"#{ref}" if ref else "")
    dest.mkdir(parents=True, exist_ok=True)
    _git(["init", "-q"], dest, what)
    _git(["remote", "add", "origin", url], dest, what)
    want = ref or "HEAD"
    target = "FETCH_HEAD"
    try:
        _git(["fetch", "-q", "--depth", "1", "origin", want], dest, what)
    except BuildError:  # dumb HTTP, or a commit the server does not serve by id
        try:
            _git(["fetch", "-q", "origin", want], dest, what)
        except BuildError:
            _git(["fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"],
                 dest, what)
            target = want
    _git(["checkout", "-q", "--detach", target], dest, what)
    commit = _git(["rev-parse", "HEAD"], dest, what)
    if checksum and not commit.startswith(checksum.lower()):
        raise BuildError(f"{what}: checksum mismatch: expected commit {checksum}, got {commit}")
    when = int(_git(["log", "-1", "--format=%ct"], dest, what) or "0")
    if not keep_git_dir:
        shutil.rmtree(dest / ".git")
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (when, when), follow_symlinks=False)
    os.utime(dest, (when, when))
    root = Path(secure_join(dest, posixpath.normpath("/" + subdir))) if subdir else dest
    if not root.is_dir():
        raise BuildError(f"{what}: {subdir!r} is not a directory of the repository")
    return root, commit
