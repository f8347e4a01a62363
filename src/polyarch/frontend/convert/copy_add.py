"""COPY and ADD: sources from the context, another stage, an image, URLs, git and heredocs become one ``Copy``
vertex per kind of source — a pure function ``(StageState, Copy) → StageState``."""

from __future__ import annotations

import posixpath
import re
from dataclasses import replace
from urllib.parse import unquote, urlsplit

from polyarch import ops
from polyarch.frontend.convert.heredocs import heredoc_body, heredoc_file
from polyarch.frontend.convert.imageconfig import history_entry
from polyarch.frontend.convert.state import StageState, desc, error, expand, reference
from polyarch.frontend.dockerfile import instructions as ins
from polyarch.oci.spec import History

__all__ = ["copy", "is_git_url", "url_file_name"]

_CHMOD_RE = re.compile(r"^(?:[0-7]+|[ugoa]*[-+=][rwxXst]*(?:,[ugoa]*[-+=][rwxXst]*)*)$")


def is_git_url(url: str) -> bool:
    if url.startswith(("git@", "git://", "ssh://")):
        return True
    if url.startswith(("http://", "https://")):
        return urlsplit(url).path.endswith(".git")
    return False


def url_file_name(url: str) -> str:
    """The file an ``ADD <url>`` writes, as BuildKit names it: the last element of the decoded URL path, or
    ``__unnamed__`` when that is not a file name (empty, ``.``, ``..``, holding NUL)."""
    base = posixpath.basename(unquote(urlsplit(url).path).rstrip("/"))
    return base if base not in ("", ".", "..") and "\x00" not in base else "__unnamed__"


def _dest(st: StageState, inst: ins.Copy) -> tuple[str, StageState]:
    if inst.json_form:
        raw = inst.dest
    else:
        raw, st = expand(st, inst.dest, inst.src)
    workdir = st.cfg.workdir or "/"
    dest = posixpath.normpath(posixpath.join("/", workdir, raw)) if raw else workdir
    if raw in ("", ".", "./") or raw.endswith("/"):
        dest = dest.rstrip("/") + "/"
    return dest, st


def _flag(st: StageState, word: str, src: ins.Source) -> tuple[str, StageState]:
    return expand(st, word, src) if word else ("", st)


def copy(st: StageState, inst: ins.Copy) -> StageState:
    """One COPY or ADD → one Copy vertex per kind of source (context/stage/image, each URL, heredocs)."""
    is_add = isinstance(inst, ins.Add)
    keyword = "ADD" if is_add else "COPY"
    src = inst.src
    from_, st = _flag(st, inst.from_, src)
    chown, st = _flag(st, inst.chown, src)
    chmod, st = _flag(st, inst.chmod, src)
    if chmod and (not _CHMOD_RE.match(chmod) or (chmod.isdigit() and int(chmod, 8) > 0o7777)):
        raise error(st, inst, f"invalid chmod parameter {chmod!r}: want octal (0 to 07777) or symbolic (u+x)",
                    inst.chmod)
    excludes = []
    for e in inst.exclude:
        value, st = expand(st, e, src)
        excludes.append(value)
    exclude = tuple(excludes)
    dest, st = _dest(st, inst)
    heredocs = {h.word: h for h in inst.heredocs} if not inst.json_form else {}

    # (source vertex, source tainted, paths, shown words)
    groups: list[tuple[ops.Vertex, bool, list[str], list[str]]] = []
    local: list[str] = []
    inline: list[ops.InlineFile] = []
    inline_words: list[str] = []
    for raw in inst.sources:
        h = heredocs.get(raw)
        if h is not None:
            mode = int(chmod, 8) if chmod and chmod.isdigit() else 0o644
            name = heredoc_file(st, inst, h)
            body, st = heredoc_body(st, h, src)
            inline.append(ops.InlineFile(name, body, mode))
            inline_words.append(raw)
            continue
        path, st = expand(st, raw, src)
        if not path:
            raise error(st, inst, f"{keyword} source {raw!r} expands to an empty path", raw)
        if from_:
            local.append(path)
        elif path.startswith(("http://", "https://", "git@", "git://", "ssh://")):
            if not is_add:
                raise error(st, inst, "source can't be a URL for COPY", raw)
            if is_git_url(path):
                url, _, fragment = path.partition("#")
                ref, _, subdir = fragment.partition(":")
                vertex: ops.Vertex = ops.GitSource(url=url, ref=ref, subdir=subdir, keep_git_dir=inst.keep_git_dir,
                                                   checksum=inst.checksum)
                groups.append((vertex, False, ["/"], [path]))
            else:
                name = url_file_name(path)
                vertex = ops.HttpSource(url=path, checksum=inst.checksum, filename=name)
                groups.append((vertex, False, [name], [path]))
        else:
            local.append(path)
    if inst.checksum and local and not from_:
        raise error(st, inst, "checksum can't be specified for non-HTTP(S) and non-git sources", "--checksum")
    if local:
        if from_:
            source, tainted, st = reference(st, from_, inst)
        else:
            source, tainted = st.ctx.inputs.context, False
        groups.insert(0, (source, tainted, local, local))
    if inline:
        groups.append((ops.InlineFiles(files=tuple(inline)), False, [f.path for f in inline], inline_words))

    user_name = bool(chown) and not all(p.isdigit() for p in chown.split(":"))
    flags = (f" --from={from_}" if from_ else "") + (f" --chown={chown}" if chown else "") + \
        (f" --chmod={chmod}" if chmod else "") + (" --link" if inst.link else "")
    description = desc(st, inst)
    vertex, stage_tainted = st.vertex, st.tainted
    layers: list[ops.Vertex] = []
    entries: list[History] = []
    for source, tainted, paths, shown in groups:  # each layer on top of the one before
        layer_tainted = tainted or st.inst_tainted or (user_name and stage_tainted and not inst.link)
        vertex = ops.Copy(root=vertex, source=source, paths=tuple(paths), dest=dest, chown=chown, chmod=chmod,
                          link=inst.link, parents=inst.parents, exclude=exclude, add=is_add, unpack=inst.unpack,
                          checksum=inst.checksum, platform_independent=not layer_tainted, description=description)
        stage_tainted = stage_tainted or layer_tainted
        layers.append(vertex)
        entries.append(history_entry(f"{keyword}{flags} {' '.join(shown)} {dest} # buildkit", layer=True))
    return replace(st, vertex=vertex, tainted=stage_tainted, layers=(*st.layers, *layers),
                   history=(*st.history, *entries), steps=(*st.steps, (inst, vertex, entries[-1] if entries else None)))
