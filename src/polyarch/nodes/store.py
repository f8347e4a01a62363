"""The one file that keeps the builders: ``builders.json`` in polyarch's per-user configuration directory
(the CLI passes the directory: ``$POLYARCH_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/polyarch``, else
``~/.config/polyarch``). The sole owner of that file (``tests/nodes/test_state_owner.py``).

API::

    store = BuilderStore.in_dir(config_dir)
    store.load() -> BuilderState           # a missing file is no builders, ``default`` in use
    store.update(fn) -> BuilderState       # under an exclusive lock: load, fn(state), write atomically

Format (version 1; every key required, no other key allowed)::

    {"version": 1, "current": "homelab",
     "builders": [{"name": "homelab", "driver": "polyarch",
                   "nodes": [{"name": "pi5", "endpoint": "ssh://pi@pi5", "platforms": ["linux/arm64"],
                              "flags": []}]}]}

Parsing is strict — the file may have been edited by hand or by someone else: a file over 1 MiB, bad JSON, an
unknown or missing key, a wrong type, an invalid name, endpoint or platform, a duplicate builder or node, a
``current`` that names no builder, or another ``version`` is a ``StoreError`` of one line naming the file. Writes
go through ``fsutil.atomic_write`` (temp + fsync + rename) with mode 0600 in a 0700 directory; a lock file
beside it (``builders.json.lock``, ``flock``) serialises concurrent updates.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from polyarch import platform as plat
from polyarch.errors import PolyarchError, StoreError
from polyarch.fsutil import atomic_file, private_dir

from .model import DEFAULT_NAME, Builder, BuilderState, Node, parse_endpoint, valid_name

__all__ = ["FILE_NAME", "MAX_SIZE", "VERSION", "BuilderStore"]

FILE_NAME = "builders.json"
VERSION = 1
MAX_SIZE = 1 << 20


class _Bad(Exception):
    pass


def _obj(value: Any, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"{where}: expected an object")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise _Bad(f"{where}: unknown key {unknown[0]!r}")
    missing = [k for k in keys if k not in value]
    if missing:
        raise _Bad(f"{where}: missing key {missing[0]!r}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{where}: expected a string")
    return value


def _strs(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise _Bad(f"{where}: expected a list")
    return [_str(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _node(value: Any, where: str) -> Node:
    d = _obj(value, ("name", "endpoint", "platforms", "flags"), where)
    name = valid_name(_str(d["name"], f"{where}.name"), "node")
    endpoint = parse_endpoint(_str(d["endpoint"], f"{where}.endpoint"))
    platforms = tuple(plat.parse(p).normalized() for p in _strs(d["platforms"], f"{where}.platforms"))
    return Node(name, endpoint, platforms, tuple(_strs(d["flags"], f"{where}.flags")))


def _builder(value: Any, where: str) -> Builder:
    d = _obj(value, ("name", "driver", "nodes"), where)
    name = valid_name(_str(d["name"], f"{where}.name"))
    if name == DEFAULT_NAME:
        raise _Bad(f"{where}: the name {DEFAULT_NAME!r} is reserved")
    if _str(d["driver"], f"{where}.driver") != "polyarch":
        raise _Bad(f"{where}.driver: unknown driver {d['driver']!r}")
    if not isinstance(d["nodes"], list) or not d["nodes"]:
        raise _Bad(f"{where}.nodes: expected a list of at least one node")
    nodes = tuple(_node(n, f"{where}.nodes[{i}]") for i, n in enumerate(d["nodes"]))
    names = [n.name for n in nodes]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise _Bad(f"{where}: node {dup!r} appears twice")
    return Builder(name, nodes)


def parse_state(data: bytes) -> BuilderState:
    """Strictly parse the file's bytes.

    :raises _Bad: with the reason (the store adds the file name).
    """
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _Bad(f"not valid JSON ({exc})") from None
    if isinstance(doc, dict) and "version" in doc and doc["version"] != VERSION:
        v = doc["version"]
        raise _Bad(f"version {v!r} is not {VERSION}" + (" (written by a newer polyarch)" if isinstance(v, int)
                                                        and not isinstance(v, bool) and v > VERSION else ""))
    d = _obj(doc, ("version", "current", "builders"), "top level")
    if not isinstance(d["builders"], list):
        raise _Bad("builders: expected a list")
    builders = tuple(_builder(b, f"builders[{i}]") for i, b in enumerate(d["builders"]))
    names = [b.name for b in builders]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise _Bad(f"builder {dup!r} appears twice")
    current = _str(d["current"], "current")
    if current != DEFAULT_NAME and current not in names:
        raise _Bad(f"current: no builder {current!r}")
    return BuilderState(current, builders)


def dump_state(state: BuilderState) -> bytes:
    """The file's bytes for ``state`` (stable key order, one trailing newline)."""
    doc = {"version": VERSION, "current": state.current, "builders": [
        {"name": b.name, "driver": b.driver, "nodes": [
            {"name": n.name, "endpoint": str(n.endpoint), "platforms": [str(p) for p in n.platforms],
             "flags": list(n.flags)} for n in b.nodes]} for b in state.builders]}
    return (json.dumps(doc, indent=2) + "\n").encode()


class BuilderStore:
    """Owner of ``builders.json``: reads it strictly, updates it under a lock, writes it atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def in_dir(cls, directory: Path) -> BuilderStore:
        return cls(directory / FILE_NAME)

    def load(self) -> BuilderState:
        """The state in the file; no file is the empty state.

        :raises StoreError: the file cannot be read or is not a valid builders file (one line naming it).
        """
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return BuilderState()
        except OSError as exc:
            raise StoreError(f"cannot read builders file {self.path}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise StoreError(f"builders file {self.path} is not a regular file")
                data = f.read(MAX_SIZE + 1)
        except OSError as exc:
            raise StoreError(f"cannot read builders file {self.path}: {exc.strerror or exc}") from None
        if len(data) > MAX_SIZE:
            raise StoreError(f"builders file {self.path} is larger than {MAX_SIZE} bytes")
        try:
            return parse_state(data)
        except _Bad as exc:
            raise StoreError(f"invalid builders file {self.path}: {exc}",
                             hint="fix or remove it (polyarch recreates it with builder create)") from None
        except PolyarchError as exc:
            raise StoreError(f"invalid builders file {self.path}: {exc.message}",
                             hint="fix or remove it (polyarch recreates it with builder create)") from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            private_dir(self.path.parent)
            fd = os.open(self.path.with_name(FILE_NAME + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot write builders file {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def update(self, change: Callable[[BuilderState], BuilderState]) -> BuilderState:
        """Load, apply ``change``, write the result atomically (nothing is written when ``change`` raises or
        returns the state unchanged). Returns the new state."""
        with self._locked():
            old = self.load()
            new = change(old)
            if new != old:
                try:
                    with atomic_file(self.path) as f:
                        os.fchmod(f.fileno(), 0o600)
                        f.write(dump_state(new))
                except OSError as exc:
                    raise StoreError(f"cannot write builders file {self.path}: {exc.strerror or exc}") from None
            return new
