"""Bake target → ``BuildRequest`` and output specs (the glue between the bake frontend and ``build_many``).

Paths are relative to the working directory, as in buildx; ``dockerfile`` is relative to ``context``.
The request is built by keyword, one bake attribute per ``BuildRequest`` field (``network``: default, none
or host; host needs ``--allow network.host``). ``contexts`` values: a directory, ``docker-image://REF``, or ``target:NAME`` (built in an earlier round and given
as the local image ``handed[NAME]``). ``plan_rounds`` orders targets so every ``target:`` dependency is built
in an earlier round; a cycle is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from polyarch.errors import UsageError
from polyarch.exporters.spec import OutputSpec, parse_output
from polyarch.frontend.bake import Evaluator, Override, Target
from polyarch.pipeline.run import BuildRequest

__all__ = ["output_specs", "plan_rounds", "to_request", "with_dependencies"]


def _read(path: Path, target: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"target {target!r}: cannot read {path}: {exc.strerror or exc}") from None


def _excludes(ctx_dir: Path, df_path: Path) -> tuple[str, ...]:
    from polyarch.frontend.dockerignore import ignore_file_candidates, parse_dockerignore

    for candidate in ignore_file_candidates(str(df_path)):
        path = Path(candidate) if candidate != ".dockerignore" else ctx_dir / candidate
        if path.is_file():
            return tuple(str(p) for p in parse_dockerignore(path.read_text(encoding="utf-8")))
    return ()


def _pairs(items: Sequence[str], what: str, target: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key or not eq:
            raise UsageError(f"target {target!r}: invalid {what} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def to_request(t: Target, handed: Mapping[str, str], *, no_cache: bool, pull: bool,
               epoch: int | None, allow: frozenset[str] = frozenset()) -> BuildRequest:
    from polyarch.cli.build import _secrets, _ssh
    from polyarch.exporters.cache import parse_cache_spec
    from polyarch.platform import parse_list

    ctx = Path(t.context)
    if not ctx.is_dir():
        raise UsageError(f"target {t.name!r}: context {t.context!r} is not a directory")
    inline = t.get("dockerfile-inline")
    df_path = Path(t.dockerfile) if Path(t.dockerfile).is_absolute() else ctx / t.dockerfile
    text = inline if inline is not None else _read(df_path, t.name)
    contexts: dict[str, str] = {}
    for name, value in t.get("contexts", {}).items():
        if value is None:
            continue
        if value.startswith("target:"):
            contexts[name] = "docker-image://" + handed[value[7:]]
        else:
            contexts[name] = value
    network = t.get("network") or "default"
    if network not in ("default", "none", "host"):
        raise UsageError(f"target {t.name!r}: invalid network {network!r}: expected default, none or host")
    return BuildRequest(
        dockerfile=text, filename=df_path.name if inline is None else "Dockerfile", context=ctx,
        platforms=tuple(parse_list(list(t.get("platforms", ())))), target=t.get("target", ""),
        build_args=t.build_args(), labels={k: v for k, v in t.get("labels", {}).items() if v is not None},
        excludes=_excludes(ctx, df_path), build_contexts=contexts,
        no_cache=no_cache or bool(t.get("no-cache", False)), epoch=epoch,
        secrets=_secrets(tuple(t.get("secret", ()))), ssh=_ssh(tuple(t.get("ssh", ()))),
        pull=pull or bool(t.get("pull", False)), annotations=tuple(t.get("annotations", ())),
        cache_from=tuple(parse_cache_spec(c, export=False) for c in t.get("cache-from", ())),
        cache_to=tuple(parse_cache_spec(c, export=True) for c in t.get("cache-to", ())),
        network=network, allow=allow)


def output_specs(t: Target, *, load: bool, push: bool) -> list[OutputSpec]:
    specs = [parse_output(o) for o in t.get("output", ())]
    if load and not any(s.type == "image" for s in specs):
        specs.append(OutputSpec("image"))
    if push and not any(s.type == "registry" for s in specs):
        specs.append(OutputSpec("registry"))
    return specs


def plan_rounds(targets: Sequence[Target]) -> list[list[str]]:
    deps = {t.name: {v[7:] for v in t.get("contexts", {}).values() if v and v.startswith("target:")}
            for t in targets}
    done: set[str] = set()
    rounds: list[list[str]] = []
    while len(done) < len(deps):
        ready = [n for n, d in deps.items() if n not in done and d <= done]
        if not ready:
            left = sorted(n for n in deps if n not in done)
            raise UsageError("targets depend on each other through contexts: " + ", ".join(left))
        rounds.append(ready)
        done.update(ready)
    return rounds


def with_dependencies(ev: Evaluator, targets: Sequence[Target], overrides: Sequence[Override]) -> dict[str, Target]:
    """The selected targets plus every target they name as a ``target:`` context (recursively), resolved with
    the ``--set`` overrides (applied at every inheritance level, as for the selected ones)."""
    chosen = {t.name: t for t in targets}
    pending = list(chosen.values())
    while pending:
        t = pending.pop()
        for value in t.get("contexts", {}).values():
            if value and value.startswith("target:") and value[7:] not in chosen:
                dep = ev.target(value[7:], overrides)
                chosen[dep.name] = dep
                pending.append(dep)
    return chosen
