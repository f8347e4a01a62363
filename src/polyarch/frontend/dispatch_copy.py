"""COPY/ADD dispatch (sources from the context, another stage, an image, URLs, git, heredocs) and the
argument vector of RUN (shell form, exec form, heredocs)."""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from polyarch import ops
from polyarch.errors import ParseError
from polyarch.frontend.dockerfile import instructions as ins
from polyarch.frontend.dockerfile.lexer import Heredoc
from polyarch.frontend.dockerfile.shell import expand_heredoc
from polyarch.frontend.imageconfig import DEFAULT_SHELL
from polyarch.frontend.scope import source_span

if TYPE_CHECKING:
    from polyarch.frontend.dispatch import StageDispatch

__all__ = ["dispatch_copy", "heredoc_file_name", "is_git_url", "run_args", "url_file_name"]

_CHMOD_RE = re.compile(r"^(?:[0-7]{3,4}|[ugoa]*[-+=][rwxXst]*(?:,[ugoa]*[-+=][rwxXst]*)*)$")


def is_git_url(url: str) -> bool:
    if url.startswith(("git@", "git://", "ssh://")):
        return True
    if url.startswith(("http://", "https://")):
        return urlsplit(url).path.endswith(".git")
    return False


def heredoc_file_name(name: str) -> str | None:
    """The file a heredoc named ``name`` becomes at the root of its own scratch tree, or None when it cannot.

    As BuildKit (``llb.Scratch().File(llb.Mkfile(name, …))``): the name is resolved inside the empty scratch
    tree, so ``../x`` and ``/x`` both name ``x``; a name that needs a directory (``a/b``) or names the root itself
    (``.``, ``..``, ``/``) cannot be created there. NUL bytes never name a file."""
    if "\x00" in name:
        return None
    rooted = posixpath.normpath("/" + name).lstrip("/")
    return rooted if rooted and "/" not in rooted else None


def _heredoc_file(sd: StageDispatch, inst: ins.Instruction, h: Heredoc) -> str:
    """:raises ParseError: the heredoc's name cannot name a file in its scratch tree."""
    name = heredoc_file_name(h.name)
    if name is None:
        raise sd.error(inst, f"heredoc name {h.name!r} does not name a file: a heredoc's file is created at the "
                             "root of its own empty tree, so its name must be one path component", h.word)
    return name


def url_file_name(url: str) -> str:
    """The file an ``ADD <url>`` writes, as BuildKit names it: the last element of the decoded URL path, or
    ``__unnamed__`` when that is not a file name (empty, ``.``, ``..``, holding NUL)."""
    base = posixpath.basename(unquote(urlsplit(url).path).rstrip("/"))
    return base if base not in ("", ".", "..") and "\x00" not in base else "__unnamed__"


def _heredoc_body(sd: StageDispatch, h: Heredoc, src: ins.Source) -> str:
    if not h.expand:
        return h.content
    try:
        r = expand_heredoc(h.content, sd.scope(), escape=sd.pd.escape)
    except ParseError as exc:
        raise ParseError(exc.message, source_span(sd.ctx.df, src, h.word)) from None
    sd.ctx.capture.used.update(r.used)
    return r.value


def run_args(sd: StageDispatch, inst: ins.Run) -> tuple[tuple[str, ...], list[ops.ExecMount]]:
    """The argv of a RUN and the extra mounts a heredoc script needs.

    Shell form → ``SHELL + [script]``, not expanded (the shell does that). ``RUN <<EOF`` alone → the body is the
    script (a body starting with ``#!`` is written, not expanded, to a file named by the heredoc in its own
    scratch tree, mounted read-only at ``/dev/pipes/`` and executed). A command with heredocs → the shell gets
    the command line followed by the heredoc bodies, as a shell heredoc.
    """
    cmd = inst.command
    if not cmd.shell_form:
        return cmd.args, []
    shell = sd.cfg.shell or DEFAULT_SHELL
    script = cmd.args[0]
    if not inst.heredocs:
        return (*shell, script), []
    if len(inst.heredocs) == 1 and script.strip() == inst.heredocs[0].word:
        h = inst.heredocs[0]
        if h.content.startswith("#!"):
            name = _heredoc_file(sd, inst, h)
            files = ops.InlineFiles(files=(ops.InlineFile(name, h.content, 0o755),))
            target = f"/dev/pipes/{name}"
            return (target,), [ops.ExecMount("bind", target=target, source=files, selector=name, readonly=True)]
        return (*shell, h.content), []
    body = script + "\n" + "".join(h.content + h.name + "\n" for h in inst.heredocs)
    return (*shell, body.rstrip("\n")), []


def _dest(sd: StageDispatch, inst: ins.Copy) -> str:
    raw = inst.dest if inst.json_form else sd.x(inst.dest, inst.src)
    dest = posixpath.normpath(posixpath.join("/", sd.cfg.workdir or "/", raw)) if raw else sd.cfg.workdir or "/"
    if raw in ("", ".", "./") or raw.endswith("/"):
        dest = dest.rstrip("/") + "/"
    return dest


def dispatch_copy(sd: StageDispatch, inst: ins.Copy, number: int) -> tuple[ops.Vertex, object]:
    """One COPY or ADD → one Copy vertex per kind of source (context/stage/image, each URL, heredocs)."""
    is_add = isinstance(inst, ins.Add)
    keyword = "ADD" if is_add else "COPY"
    src = inst.src
    from_ = sd.x(inst.from_, src) if inst.from_ else ""
    chown = sd.x(inst.chown, src) if inst.chown else ""
    chmod = sd.x(inst.chmod, src) if inst.chmod else ""
    if chmod and not _CHMOD_RE.match(chmod):
        raise sd.error(inst, f"invalid chmod parameter {chmod!r}: want octal (0755) or symbolic (u+x)", inst.chmod)
    exclude = tuple(sd.x(e, src) for e in inst.exclude)
    dest = _dest(sd, inst)
    heredocs = {h.word: h for h in inst.heredocs} if not inst.json_form else {}

    # (source vertex, source tainted, paths, shown words, checksum)
    groups: list[tuple[ops.Vertex, bool, list[str], list[str], str]] = []
    local: list[str] = []
    inline: list[ops.InlineFile] = []
    inline_words: list[str] = []
    for raw in inst.sources:
        h = heredocs.get(raw)
        if h is not None:
            mode = int(chmod, 8) if chmod and chmod.isdigit() else 0o644
            inline.append(ops.InlineFile(_heredoc_file(sd, inst, h), _heredoc_body(sd, h, src), mode))
            inline_words.append(raw)
            continue
        path = sd.x(raw, src)
        if not path:
            raise sd.error(inst, f"{keyword} source {raw!r} expands to an empty path", raw)
        if from_:
            local.append(path)
        elif path.startswith(("http://", "https://", "git@", "git://", "ssh://")):
            if not is_add:
                raise sd.error(inst, "source can't be a URL for COPY", raw)
            if is_git_url(path):
                url, _, fragment = path.partition("#")
                ref, _, subdir = fragment.partition(":")
                vertex: ops.Vertex = ops.GitSource(url=url, ref=ref, subdir=subdir, keep_git_dir=inst.keep_git_dir,
                                                   checksum=inst.checksum)
                groups.append((vertex, False, ["/"], [path], ""))
            else:
                name = url_file_name(path)
                vertex = ops.HttpSource(url=path, checksum=inst.checksum, filename=name)
                groups.append((vertex, False, [name], [path], inst.checksum))
        else:
            local.append(path)
    if inst.checksum and local and not from_:
        raise sd.error(inst, "checksum can't be specified for non-HTTP(S) and non-git sources", "--checksum")
    if local:
        if from_:
            source, tainted = sd.reference(from_, inst)
        else:
            source, tainted = sd.ctx.context, False
        groups.insert(0, (source, tainted, local, local, ""))
    if inline:
        groups.append((ops.InlineFiles(files=tuple(inline)), False, [f.path for f in inline], inline_words, ""))

    user_name = bool(chown) and not all(p.isdigit() for p in chown.split(":"))
    flags = (f" --from={from_}" if from_ else "") + (f" --chown={chown}" if chown else "") + \
        (f" --chmod={chmod}" if chmod else "") + (" --link" if inst.link else "")
    vertex = sd.vertex
    history: object = None
    for source, tainted, paths, shown, _ in groups:
        layer_tainted = tainted or sd.inst_tainted or (user_name and sd.tainted and not inst.link)
        vertex = ops.Copy(root=sd.vertex, source=source, paths=tuple(paths), dest=dest, chown=chown, chmod=chmod,
                          link=inst.link, parents=inst.parents, exclude=exclude, add=is_add, unpack=inst.unpack,
                          checksum=inst.checksum, platform_independent=not layer_tainted,
                          description=sd.desc(number, inst))
        sd.tainted = sd.tainted or layer_tainted
        _, history = sd._layer(vertex, f"{keyword}{flags} {' '.join(shown)} {dest}")
    return vertex, history
