"""``--ssh`` on builder nodes: the node's agent sockets relayed to the client's agents over the node protocol.

On the node, ``NodeAgents`` listens on one unix socket per ``--ssh`` id inside the build's private temporary
directory (what the RUN runner mounts for ``--mount=type=ssh``); each connection a step makes is announced as
``{"type": "ssh-open", "id", "conn"}`` and its bytes travel as ``{"type": "ssh-data", "conn", "data"}``
(base64) in both directions until either side sends ``{"type": "ssh-close", "conn"}``. On the client,
``ClientAgents`` opens, for each ``ssh-open``, a connection to the local agent socket of that id and pumps it
back. Nothing is written on the node's disk but the sockets, which ``close`` removes with their listeners (a
directory too deep for a socket address is reached through ``/proc/self/fd``, so the sockets always live in the
build's private directory).
"""

from __future__ import annotations

import base64
import os
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from polyarch.errors import BuildError

from .protocol import ProtocolError

__all__ = ["SSH_MESSAGES", "ClientAgents", "NodeAgents"]

#: the message types of the relay (either direction)
SSH_MESSAGES = frozenset({"ssh-open", "ssh-data", "ssh-close"})
_READ = 64 << 10

Send = Callable[[dict[str, Any]], None]


class _Pumps:
    """Open relayed connections by number; bytes from a socket go out as ``ssh-data`` messages."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._conns: dict[int, socket.socket] = {}
        self._lock = threading.Lock()

    def add(self, conn: int, sock: socket.socket) -> None:
        with self._lock:
            self._conns[conn] = sock
        threading.Thread(target=self._pump, args=(conn, sock), name=f"ssh-relay-{conn}", daemon=True).start()

    def _pump(self, conn: int, sock: socket.socket) -> None:
        try:
            while data := sock.recv(_READ):
                self._send({"type": "ssh-data", "conn": conn, "data": base64.b64encode(data).decode()})
        except OSError:
            pass
        finally:
            if self._drop(conn):
                try:
                    self._send({"type": "ssh-close", "conn": conn})
                except Exception:  # the session is ending: nothing to tell
                    pass

    def _drop(self, conn: int) -> bool:
        with self._lock:
            sock = self._conns.pop(conn, None)
        if sock is None:
            return False
        try:
            sock.close()
        except OSError:
            pass
        return True

    def deliver(self, message: Mapping[str, Any]) -> None:
        """An ``ssh-data`` or ``ssh-close`` from the peer. :raises ProtocolError: a malformed one."""
        try:
            conn = int(message["conn"])
            data = base64.b64decode(str(message["data"]), validate=True) if message["type"] == "ssh-data" else b""
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"bad {message.get('type')} message: {exc!r}") from None
        with self._lock:
            sock = self._conns.get(conn)
        if sock is None:
            return  # closed here meanwhile
        if message["type"] == "ssh-close":
            try:
                sock.shutdown(socket.SHUT_WR)  # the agent side is done writing; our pump sees EOF later
            except OSError:
                self._drop(conn)
            return
        try:
            sock.sendall(data)
        except OSError:
            if self._drop(conn):
                self._send({"type": "ssh-close", "conn": conn})

    def close(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            self._drop(conn)


class NodeAgents:
    """The node's side: one listening socket per ``--ssh`` id in ``directory``; ``sockets`` is what the build's
    RUN steps mount."""

    def __init__(self, ids: tuple[str, ...], directory: Path, send: Send) -> None:
        self._pumps = _Pumps(send)
        self._send = send
        self._listeners: list[tuple[socket.socket, Path]] = []
        self._next = 0
        self._lock = threading.Lock()
        self.sockets: dict[str, str] = {}
        try:
            dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
            try:
                for n, ssh_id in enumerate(ids):
                    self._listen(n, ssh_id, directory / f"ssh-{n}.sock", f"/proc/self/fd/{dir_fd}/ssh-{n}.sock")
            finally:
                os.close(dir_fd)
        except OSError as exc:
            self.close()
            raise BuildError(f"cannot make the ssh agent socket for --ssh: {exc.strerror or exc}") from None

    def _listen(self, n: int, ssh_id: str, path: Path, short: str) -> None:
        """Listen at ``path``, bound through ``short`` (the same place; a socket address holds 108 bytes)."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listeners.append((listener, path))
        listener.bind(short)
        os.chmod(path, 0o600)
        listener.listen(8)
        self.sockets[ssh_id] = str(path)
        threading.Thread(target=self._accept, args=(ssh_id, listener), name=f"ssh-agent-{n}", daemon=True).start()

    def _accept(self, ssh_id: str, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._next += 1
                conn = self._next
            try:
                self._send({"type": "ssh-open", "id": ssh_id, "conn": conn})
            except Exception:
                sock.close()
                return
            self._pumps.add(conn, sock)

    def deliver(self, message: Mapping[str, Any]) -> None:
        if message["type"] == "ssh-open":
            raise ProtocolError("the client may not open agent connections")
        self._pumps.deliver(message)

    def close(self) -> None:
        for listener, path in self._listeners:
            listener.close()
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        self._listeners.clear()
        self._pumps.close()


class ClientAgents:
    """The client's side: ``ssh-open`` connects to the local agent socket of that id (``agents``: id → path)."""

    def __init__(self, agents: Mapping[str, str], send: Send) -> None:
        self._agents = dict(agents)
        self._send = send
        self._pumps = _Pumps(send)

    def handle(self, message: Mapping[str, Any]) -> None:
        """One relay message from the node. :raises ProtocolError: a malformed one."""
        if message["type"] != "ssh-open":
            self._pumps.deliver(message)
            return
        try:
            conn = int(message["conn"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("bad ssh-open message") from None
        path = self._agents.get(str(message.get("id")))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if path is None:
                raise OSError("no such ssh id")
            sock.connect(path)
        except OSError:
            sock.close()
            self._send({"type": "ssh-close", "conn": conn})
            return
        self._pumps.add(conn, sock)

    def close(self) -> None:
        self._pumps.close()
