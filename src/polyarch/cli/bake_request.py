"""Bake target → ``BuildRequest`` and output specs (the glue between the bake frontend and ``build_many``).

Paths are relative to the working directory, as in buildx; ``dockerfile`` is relative to ``context``.
Every attribute either takes effect or fails the bake naming target and attribute (``check_supported``):
``entitlements`` must be granted by ``--allow``; ``attest`` entries are checked as ``--attest`` values
(``target_attest`` merges them with bake's ``--sbom``/``--provenance``); ``extra-hosts``, ``ulimits``, ``shm-size``
and ``no-cache-filter`` are ``--add-host``, ``--ulimit``, ``--shm-size`` and ``--no-cache-filter`` (``run_options``:
a bad value names target and attribute); ``call`` = ``outline``,
``targets``, ``plan`` or ``check`` prints that report instead of building (``run_calls``).
The request is built by keyword, one bake attribute per ``BuildRequest`` field (``network``: default, none
or host; host needs ``--allow network.host``). ``contexts`` values: a directory, ``docker-image://REF``, or ``target:NAME`` (built in an earlier round and given
as the local image ``handed[NAME]``). ``plan_rounds`` orders targets so every ``target:`` dependency is built
in an earlier round; a cycle is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyarch import ops
from polyarch.errors import UsageError

if TYPE_CHECKING:
    from polyarch.attest.options import AttestOptions
from polyarch.exporters.spec import OutputSpec, parse_output
from polyarch.frontend.bake import Evaluator, Override, Target
from polyarch.pipeline.run import BuildRequest

__all__ = ["check_supported", "output_specs", "plan_rounds", "run_calls", "run_options", "to_request",
           "with_dependencies"]

_ENTITLEMENTS = ("network.host", "security.insecure")


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


def check_supported(t: Target, allow: frozenset[str]) -> None:
    """:raises UsageError: an attribute polyarch cannot honour, or an entitlement ``--allow`` did not grant."""
    run_options(t)  # a bad extra-hosts, ulimits or shm-size value fails here, naming the target
    target_attest(t)  # a bad attest entry fails here, naming the target
    for name in t.get("entitlements", ()):
        if name not in _ENTITLEMENTS:
            raise UsageError(f"target {t.name!r}: attribute 'entitlements': unknown entitlement {name!r}",
                             hint="polyarch knows " + ", ".join(_ENTITLEMENTS))
        if name not in allow:
            raise UsageError(f"target {t.name!r}: attribute 'entitlements' needs {name}, not granted",
                             hint=f"pass --allow {name}")


def run_options(t: Target) -> ops.RunOptions:
    """The target's ``extra-hosts`` (map HOST → IP), ``ulimits`` and ``shm-size`` as an ``ops.RunOptions``.

    :raises UsageError: a bad value, naming target and attribute."""
    from polyarch.pipeline import runflags

    hosts = [f"{host}={ip}" for host, ip in t.get("extra-hosts", {}).items() if ip is not None]
    parts = (("extra-hosts", lambda: runflags.parse_add_hosts(hosts, what="value")),
             ("ulimits", lambda: runflags.parse_ulimits(t.get("ulimits", ()), what="value")),
             ("shm-size", lambda: runflags.parse_shm_size(t.get("shm-size"), what="value")))
    values: dict[str, Any] = {}
    for key, parse in parts:
        try:
            values[key] = parse()
        except UsageError as exc:
            raise UsageError(f"target {t.name!r}: attribute {key!r}: {exc.message}", hint=exc.hint) from None
    return ops.RunOptions(extra_hosts=values["extra-hosts"], ulimits=values["ulimits"], shm_size=values["shm-size"])


def run_calls(targets: Sequence[Target], resolve_image: Callable[..., Any]) -> tuple[list[Target], int]:
    """Print the report of every target whose ``call`` is not ``build`` (under a ``#1 [name]`` line when there
    are several); return the targets left to build and the highest exit status of the reports."""
    import click

    from polyarch.frontend.reports.call import CALLS, call
    from polyarch.platform import parse_list

    reports = [t for t in targets if (t.get("call") or "build") != "build"]
    status = 0
    for t in reports:
        what = t.get("call")
        if what not in CALLS:
            raise UsageError(f"target {t.name!r}: attribute 'call': unknown call {what!r}",
                             hint="available: build, " + ", ".join(CALLS))
        ctx = Path(t.context)
        inline = t.get("dockerfile-inline")
        df_path = Path(t.dockerfile) if Path(t.dockerfile).is_absolute() else ctx / t.dockerfile
        text = inline if inline is not None else _read(df_path, t.name)
        result = call(what, text, df_path.name if inline is None else "Dockerfile",
                      parse_list(list(t.get("platforms", ()))), t.get("target", ""), t.build_args(),
                      context_excludes=_excludes(ctx, df_path), resolve_image=resolve_image)
        if len(reports) > 1:
            click.echo(f"[{t.name}]")
        click.echo(result.text, nl=False)
        status = max(status, result.exit_code)
    return [t for t in targets if t not in reports], status


def target_attest(t: Target, sbom: str | None = None, provenance: str | None = None,
                  mode: str = "referrers") -> AttestOptions:
    """The target's ``attest`` entries, then bake's ``--sbom``/``--provenance`` (which win, as buildx's
    ``--set *.attest=`` does).

    :raises UsageError: a bad entry, naming the target.
    """
    from polyarch.attest.options import parse_attest

    entries = [e if isinstance(e, str) else ",".join(f"{k}={v}" for k, v in e.items() if v is not None)
               for e in t.get("attest", ())]
    try:
        return parse_attest(sbom, provenance, entries, mode)
    except UsageError as exc:
        raise UsageError(f"target {t.name!r}: attribute 'attest': {exc.message}", hint=exc.hint) from None


def to_request(t: Target, handed: Mapping[str, str], *, no_cache: bool, pull: bool,
               epoch: int | None, allow: frozenset[str] = frozenset()) -> BuildRequest:
    from polyarch.cli.build import _secrets, _ssh
    from polyarch.exporters.cache import parse_cache_spec
    from polyarch.pipeline.runflags import parse_no_cache_filter
    from polyarch.platform import parse_list

    check_supported(t, allow)
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
        elif not value.startswith("docker-image://") and not Path(value).is_dir():
            raise UsageError(f"target {t.name!r}: context {name}={value}: "
                             + ("not a directory" if Path(value).exists() else "no such directory"))
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
        network=network, allow=allow, run_options=run_options(t),
        no_cache_filter=parse_no_cache_filter(t.get("no-cache-filter", ())))


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
