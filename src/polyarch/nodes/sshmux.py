"""OpenSSH connection sharing for node connections: one ssh master per node host, kept a short while.

A no-change rebuild over ssh nodes is dominated by the ssh handshake (key exchange, authentication): ``SshMux``
adds OpenSSH's own multiplexing to the ssh command line of a node, so the connections of a build and of the builds
that follow within ``persist`` seconds share one authenticated master connection:

    -o ControlMaster=auto -o ControlPath=DIR/HASH -o ControlPersist=60

``DIR`` is a private directory (``0700``, owned by this user, not a symlink; made on first use) under the user's
runtime directory (``$XDG_RUNTIME_DIR/polyarch/ssh``) or cache directory (``~/.cache/polyarch/ssh``), which the
CLI chooses; ``HASH`` is 16 hex digits of the sha256 of the ssh command's words, the user, host and port, so a
different ssh command (another identity, config file or option) never reuses a master made with another. Whatever
the master was checked with stays in force: OpenSSH does the host-key checking and authentication; nothing here
turns any of it off. The options come after the user's words (``POLYARCH_SSH``), and ssh keeps the first value of
an option, so ``POLYARCH_SSH="ssh -o ControlPath=none …"`` turns sharing off. Sharing is also off (the ssh command
unchanged) when the directory cannot be made private, or its path is too long for a unix socket.

API::

    mux = SshMux(control_dir)              # control_dir None: no sharing
    mux.argv(ssh_words, node) -> tuple     # the words to run ssh with for this node
    mux.close(ssh_words, node)             # ask the master, if any, to exit (``ssh -O exit``): builder stop/rm
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

from polyarch.fsutil import private_dir

from .model import Node

__all__ = ["PERSIST_SECONDS", "SshMux"]

PERSIST_SECONDS = 60
#: sun_path holds 108 bytes; ssh binds the master at ``PATH.`` + 16 random characters, then renames it
_SOCKET_PATH_MAX = 107 - 17


class SshMux:
    """Connection sharing under ``control_dir`` (None: none); the directory is made and checked on first use."""

    def __init__(self, control_dir: Path | None, *, persist: int = PERSIST_SECONDS) -> None:
        self.control_dir = control_dir
        self.persist = persist
        self._usable: bool | None = None

    def _dir(self) -> Path | None:
        if self.control_dir is None:
            return None
        if self._usable is None:
            self._usable = _make_private(self.control_dir)
        return self.control_dir if self._usable else None

    def control_path(self, ssh: Sequence[str], node: Node) -> Path | None:
        """Where the master socket of ``node`` is (for the ``ssh`` words given), or None: no sharing."""
        directory = self._dir()
        if directory is None:
            return None
        ep = node.endpoint
        key = "\0".join([*ssh, ep.ssh_target, str(ep.port or "")]).encode()
        path = directory / hashlib.sha256(key).hexdigest()[:16]
        return path if len(os.fsencode(path)) <= _SOCKET_PATH_MAX else None

    def argv(self, ssh: Sequence[str], node: Node) -> tuple[str, ...]:
        """``ssh`` with the sharing options for ``node`` (unchanged when sharing is off)."""
        path = self.control_path(ssh, node)
        if path is None:
            return tuple(ssh)
        return (*ssh, "-o", "ControlMaster=auto", "-o", f"ControlPath={_literal(path)}", "-o",
                f"ControlPersist={self.persist}")

    def close(self, ssh: Sequence[str], node: Node) -> None:
        """Ask ``node``'s master connection, if one runs, to exit now (quietly: there may be none)."""
        path = self.control_path(ssh, node)
        if path is None or not path.exists():
            return
        ep = node.endpoint
        try:
            subprocess.run([*ssh, "-o", f"ControlPath={_literal(path)}", "-O", "exit",
                            *(["-p", str(ep.port)] if ep.port else []), "--", ep.ssh_target],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass


def _literal(path: Path) -> str:
    """``path`` as ssh reads a ControlPath: ``%`` starts a token there."""
    return str(path).replace("%", "%%")


def _make_private(directory: Path) -> bool:
    """Make ``directory`` a 0700 directory of this user; False when it is not one after that (sharing off)."""
    try:
        private_dir(directory)
        st = os.lstat(directory)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077
