"""The build graph IR: frozen vertices with Merkle digests, made by the frontend, run by the solver.

How to read a plan
==================
A build is a DAG of ``Vertex`` values. Every vertex is a frozen dataclass; its ``inputs`` are other vertices;
its ``digest`` (``sha256:…``) is the SHA-256 of the canonical JSON of ``{"kind", "fields", "inputs"}`` where
``fields`` are the vertex's identity fields and ``inputs`` the digests of its inputs, in order. Two vertices
with the same digest describe the same work: run it once (one future per digest) and share the result, also
across target platforms. A digest is a *definition* digest (like BuildKit's): ``alpine:3.20`` is the same
vertex today and tomorrow; cache keys (resolved image digests, content hashes of COPY sources) are the
solver's business.

Excluded from the digest, deliberately: ``description`` (progress text such as ``[builder 2/5] RUN make``),
``Exec.emulated`` (a fact of the host, not of the work) and ``platform_independent`` (derived from inputs).
Secret *values* never appear anywhere: the frontend never sees them; a secret mount carries its id, target,
env name and ``required`` only.

Every vertex's output is a filesystem tree (a "state"):

=================  ===================================================================================
``Scratch``        the empty tree.
``ImageSource``    the rootfs of ``ref`` (as written in the Dockerfile after ARG expansion, not normalized)
                   for ``platform``.
``LocalContext``   a named local directory (``context`` = the build context; other names come from
                   ``--build-context``), minus the ``exclude`` patterns (Docker ``.dockerignore`` syntax,
                   see ``polyarch.frontend.dockerignore.matcher``) for COPY and for bind mounts alike;
                   ``include`` narrows it when not empty.
``HttpSource``     one file downloaded from ``url`` (``checksum`` verified when given), named ``filename`` (one
                   path component); ADD only. A Copy from it unpacks only with ``unpack`` True.
``GitSource``      a checkout of ``url`` at ``ref`` (``keep_git_dir`` keeps ``.git``); ADD only.
``InlineFiles``    files with literal content (heredocs of ``COPY <<EOF``, scripts of ``RUN <<EOF``); each
                   ``path`` is one path component (a file at the root of the vertex's own tree).
``Exec``           ``root`` with ``args`` run inside it (RUN): env, cwd, user, network (default = host
                   network, none, host), security (sandbox, insecure), extra ``mounts``, the build's
                   ``options`` (``RunOptions``: extra hosts, ulimits, /dev/shm size, cgroup parent; hashed
                   only when set). ``platform`` is the
                   platform the process runs as; ``emulated`` says the host cannot run it natively (qemu).
                   Output: the root after the process exits; the layer is diff(output, root).
``Copy``           ``root`` plus files copied from ``source`` (COPY/ADD): ``paths`` inside ``source`` (globs
                   allowed), ``dest`` absolute (a trailing ``/`` means "into this directory"), ``chown``
                   (``user[:group]`` as written; names resolve against ``root``'s /etc/passwd), ``chmod``
                   (octal or symbolic, as written), ``link`` (BuildKit ``--link``: copy onto an empty tree and
                   stack it, so the layer does not depend on ``root``), ``parents``, ``exclude`` patterns,
                   ``add`` (ADD: unpack local tar archives unless ``unpack`` is False), ``checksum``.
                   ``layer_digest`` names the layer independently of ``root``; ``platform_independent``
                   is True when that layer is the same for every target platform (compute it once, push it
                   once).
``Mkdir``          ``root`` plus directory ``path`` (``mkdir -p``, mode 0755, owned by ``chown``): WORKDIR.
=================  ===================================================================================

Image configuration (ENV, CMD, LABEL, …) is not in the graph: the frontend folds it into an
``polyarch.oci.spec.ImageConfig`` carried alongside (see ``polyarch.frontend.convert.plan``).

Helpers: ``walk(roots)`` lists every vertex once, inputs first; ``vertex_to_json`` gives the canonical view.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from polyarch.oci.jsonutil import key_json
from polyarch.platform import Platform

__all__ = [
    "Copy",
    "Exec",
    "ExecMount",
    "GitSource",
    "HttpSource",
    "ImageSource",
    "InlineFile",
    "InlineFiles",
    "LocalContext",
    "Mkdir",
    "RunOptions",
    "Scratch",
    "Vertex",
    "replace_vertices",
    "vertex_to_json",
    "walk",
]

_T = TypeVar("_T")


def _sha256(obj: Any) -> str:
    """canonical JSON, lossless for values that are not UTF-8 (``--build-arg`` bytes, names): ``key_json``."""
    return "sha256:" + hashlib.sha256(key_json(obj)).hexdigest()


def _platform(p: Platform) -> str:
    return str(p)


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class Vertex:
    """Base of every vertex. Equality and hashing go by ``digest``."""

    kind: ClassVar[str] = "vertex"
    digest: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", _sha256(
            {"kind": self.kind, "fields": self.fields(), "inputs": [v.digest for v in self.inputs]}))

    @property
    def inputs(self) -> tuple[Vertex, ...]:
        return ()

    def fields(self) -> dict[str, Any]:
        """The identity fields (JSON-ready), without inputs and without excluded fields."""
        return {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vertex) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class Scratch(Vertex):
    kind: ClassVar[str] = "scratch"
    description: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class ImageSource(Vertex):
    kind: ClassVar[str] = "image"
    ref: str
    platform: Platform
    description: str = field(default="", compare=False)

    def fields(self) -> dict[str, Any]:
        return {"ref": self.ref, "platform": _platform(self.platform)}


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class LocalContext(Vertex):
    kind: ClassVar[str] = "local"
    name: str = "context"
    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    description: str = field(default="", compare=False)

    def fields(self) -> dict[str, Any]:
        return {"name": self.name, "exclude": list(self.exclude), "include": list(self.include)}


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class HttpSource(Vertex):
    kind: ClassVar[str] = "http"
    url: str
    checksum: str = ""
    filename: str = ""
    description: str = field(default="", compare=False)

    def fields(self) -> dict[str, Any]:
        return {"url": self.url, "checksum": self.checksum, "filename": self.filename}


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class GitSource(Vertex):
    kind: ClassVar[str] = "git"
    url: str
    ref: str = ""
    subdir: str = ""
    keep_git_dir: bool = False
    checksum: str = ""
    description: str = field(default="", compare=False)

    def fields(self) -> dict[str, Any]:
        return {"url": self.url, "ref": self.ref, "subdir": self.subdir, "keep_git_dir": self.keep_git_dir,
                "checksum": self.checksum}


@dataclass(frozen=True, slots=True)
class InlineFile:
    path: str
    content: str
    mode: int = 0o644


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class InlineFiles(Vertex):
    kind: ClassVar[str] = "inline"
    files: tuple[InlineFile, ...] = ()
    description: str = field(default="", compare=False)

    def fields(self) -> dict[str, Any]:
        return {"files": [{"path": f.path, "content": f.content, "mode": f.mode} for f in self.files]}


@dataclass(frozen=True, slots=True)
class ExecMount:
    """An extra mount of an ``Exec`` (``RUN --mount``). ``source`` is the vertex mounted (bind, cache with
    ``from``), ``selector`` the path inside it. Secrets and SSH carry names only, never values."""

    type: str  # bind | cache | tmpfs | secret | ssh
    target: str = ""
    source: Vertex | None = None
    selector: str = ""
    readonly: bool = False
    id: str = ""  # cache id, secret id, ssh id
    sharing: str = ""
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    required: bool = False
    env: str = ""  # secret exposed as this environment variable
    size: int = 0  # tmpfs size in bytes, 0 = unlimited

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "target": self.target, "readonly": self.readonly}
        if self.source is not None:
            out["source"] = self.source.digest
        for key in ("selector", "id", "sharing", "env"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        for key in ("mode", "uid", "gid"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.required:
            out["required"] = True
        if self.size:
            out["size"] = self.size
        return out


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What a build gives every RUN step (buildx ``--add-host``, ``--ulimit``, ``--shm-size``,
    ``--cgroup-parent``); the frontend copies them into each ``Exec``. Empty values change nothing."""

    extra_hosts: tuple[tuple[str, str], ...] = ()  # (host name, IP address), in /etc/hosts order
    ulimits: tuple[tuple[str, int, int], ...] = ()  # (name as docker spells it, soft, hard); -1 = unlimited
    shm_size: int = 0  # bytes of the /dev/shm tmpfs; 0 = the default (64 MiB)
    cgroup_parent: str = ""  # the parent cgroup of the step's container

    def __bool__(self) -> bool:
        return bool(self.extra_hosts or self.ulimits or self.shm_size or self.cgroup_parent)


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class Exec(Vertex):
    kind: ClassVar[str] = "exec"
    root: Vertex
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    user: str = ""
    network: str = "default"
    security: str = "sandbox"
    mounts: tuple[ExecMount, ...] = ()
    platform: Platform
    options: RunOptions = RunOptions()  # part of the digest only when not empty (BuildKit's ExecOp meta)
    emulated: bool = field(default=False, compare=False)
    description: str = field(default="", compare=False)

    @property
    def inputs(self) -> tuple[Vertex, ...]:
        return (self.root, *(m.source for m in self.mounts if m.source is not None))

    def fields(self) -> dict[str, Any]:
        mounts = []
        for m in self.mounts:
            doc = m.to_json()
            doc.pop("source", None)  # the source is an input: its digest is hashed there
            mounts.append(doc)
        return {"args": list(self.args), "env": list(self.env), "cwd": self.cwd, "user": self.user,
                "network": self.network, "security": self.security, "mounts": mounts,
                "platform": _platform(self.platform), **self._option_fields()}

    def _option_fields(self) -> dict[str, Any]:
        """The build's RUN options, each only when set: digests of steps without them stay as they were."""
        o, out = self.options, dict[str, Any]()
        if o.extra_hosts:
            out["extra_hosts"] = [list(h) for h in o.extra_hosts]
        if o.ulimits:
            out["ulimits"] = [list(u) for u in o.ulimits]
        if o.shm_size:
            out["shm_size"] = o.shm_size
        if o.cgroup_parent:
            out["cgroup_parent"] = o.cgroup_parent
        return out


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class Copy(Vertex):
    kind: ClassVar[str] = "copy"
    root: Vertex
    source: Vertex
    paths: tuple[str, ...]
    dest: str
    chown: str = ""
    chmod: str = ""
    link: bool = False
    parents: bool = False
    exclude: tuple[str, ...] = ()
    add: bool = False
    unpack: bool | None = None
    checksum: str = ""
    platform_independent: bool = field(default=False, compare=False)
    description: str = field(default="", compare=False)

    @property
    def inputs(self) -> tuple[Vertex, ...]:
        return (self.root, self.source)

    def fields(self) -> dict[str, Any]:
        return {"paths": list(self.paths), "dest": self.dest, "chown": self.chown, "chmod": self.chmod,
                "link": self.link, "parents": self.parents, "exclude": list(self.exclude), "add": self.add,
                "unpack": self.unpack, "checksum": self.checksum}

    @property
    def layer_digest(self) -> str:
        """Names the copied files alone (the source and the copy options, not ``root``): equal for every
        target platform when ``platform_independent``."""
        return _sha256({"kind": "copy-layer", "fields": self.fields(), "inputs": [self.source.digest]})


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class Mkdir(Vertex):
    kind: ClassVar[str] = "mkdir"
    root: Vertex
    path: str
    mode: int = 0o755
    chown: str = ""
    platform_independent: bool = field(default=False, compare=False)
    description: str = field(default="", compare=False)

    @property
    def inputs(self) -> tuple[Vertex, ...]:
        return (self.root,)

    def fields(self) -> dict[str, Any]:
        return {"path": self.path, "mode": self.mode, "chown": self.chown}

    @property
    def layer_digest(self) -> str:
        return _sha256({"kind": "mkdir-layer", "fields": self.fields(), "inputs": []})


def replace_vertices(value: _T, fn: Callable[[Vertex], Vertex]) -> _T:
    """``value`` (a vertex, or frozen dataclasses and tuples holding vertices, such as a plan) with every vertex
    rebuilt bottom-up and passed through ``fn``; digests are recomputed, untouched parts are returned as they are.
    Used to give vertices of separate builds distinct identities before they are solved together."""
    memo: dict[str, Vertex] = {}

    def rebuild(obj: Any) -> Any:
        changes = {}
        for f in dataclasses.fields(obj):
            if not f.init:
                continue
            old = getattr(obj, f.name)
            new = go(old)
            if new is not old:
                changes[f.name] = new
        return dataclasses.replace(obj, **changes) if changes else obj

    def go(x: Any) -> Any:
        if isinstance(x, Vertex):
            hit = memo.get(x.digest)
            if hit is None:
                hit = memo[x.digest] = fn(rebuild(x))
            return hit
        if isinstance(x, tuple):
            items = tuple(go(i) for i in x)
            return items if any(a is not b for a, b in zip(items, x, strict=True)) else x
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return rebuild(x)
        return x

    return go(value)  # type: ignore[no-any-return]


def walk(roots: Iterable[Vertex]) -> tuple[Vertex, ...]:
    """Every vertex reachable from ``roots``, once each (by digest), inputs before the vertices using them."""
    seen: set[str] = set()
    order: list[Vertex] = []
    for root in roots:
        stack: list[tuple[Vertex, bool]] = [(root, False)]
        while stack:
            v, expanded = stack.pop()
            if expanded:
                if v.digest not in seen:
                    seen.add(v.digest)
                    order.append(v)
                continue
            if v.digest in seen:
                continue
            stack.append((v, True))
            for inp in reversed(v.inputs):
                if inp.digest not in seen:
                    stack.append((inp, False))
    return tuple(order)


def vertex_to_json(v: Vertex) -> dict[str, Any]:
    """Canonical JSON view: kind, digest, identity fields, input digests, and the excluded facts."""
    out: dict[str, Any] = {"kind": v.kind, "digest": v.digest, **v.fields()}
    if isinstance(v, Exec):
        out["mounts"] = [m.to_json() for m in v.mounts]
        out["emulated"] = v.emulated
    if isinstance(v, Copy | Mkdir):
        out["platform_independent"] = v.platform_independent
        out["layer_digest"] = v.layer_digest
    if v.inputs:
        out["inputs"] = [i.digest for i in v.inputs]
    description = getattr(v, "description", "")
    if description:
        out["description"] = description
    return out
