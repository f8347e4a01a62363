"""The shell of each step of a generated workflow, the same for every provider (bash, run as root in a Debian
container): install runc (and QEMU), install polyarch with pip, register QEMU, log in, build or bake and push.

Secrets come in as ``REGISTRY_USER`` and ``REGISTRY_PASSWORD``, the release as ``VERSION``; the provider's file
maps its own secrets and tag variable to those names (``render.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from polyarch.platform import Platform

from .spec import CiSpec, repository

ATTEST = "--sbom=true --provenance=mode=max"


@dataclass(frozen=True)
class Step:
    """One ``run:`` step: a title and its bash script (no trailing newline)."""

    name: str
    script: str


def slug(p: Platform) -> str:
    """``linux-arm-v7``: a platform in job, file and tag names."""
    return str(p).replace("/", "-")


def _q(text: str) -> str:
    """Double-quoted for bash (``spec_error`` refused $ other than ${VERSION}, quotes and backslashes)."""
    return f'"{text}"'


def _cache(repo: str, suffix: str) -> str:
    ref = f"{repo}:buildcache{suffix}"
    return f"--cache-from type=registry,ref={ref} --cache-to type=registry,ref={ref},mode=max"


def setup_steps(spec: CiSpec, *, emulate: bool) -> list[Step]:
    """Packages, polyarch, QEMU (``emulate``) and the login to every registry of the tags."""
    need = "runc qemu-user-static" if emulate else "runc"
    check = "! command -v runc >/dev/null" + (" || ! command -v qemu-aarch64-static >/dev/null" if emulate else "")
    steps = [
        Step(f"Install {need}", f"if {check}; then\n"
                                f"  apt-get update -q && apt-get install -y -q --no-install-recommends {need}\nfi"),
        Step("Install polyarch", f"python3 -m pip install --no-input {_q(spec.pip_spec)}"),
    ]
    if emulate:
        steps.append(Step("Register QEMU for foreign platforms", "polyarch binfmt --install all"))
    steps.append(Step("Log in", "\n".join(
        f'printf \'%s\' "$REGISTRY_PASSWORD" | polyarch login {host} -u "$REGISTRY_USER" --password-stdin'
        for host in spec.registries())))
    return steps


def build_step(spec: CiSpec) -> Step:
    """All platforms on one runner (QEMU for the foreign ones): ``build --push`` or ``bake --push``."""
    if spec.bake:
        files = "".join(f" -f {_q(f)}" for f in spec.bake_files)
        sets = []
        for t in spec.bake_targets:
            ref = f"{repository(t.tags[0])}:buildcache-{t.name}"
            sets.append(f"  --set {t.name}.cache-from=type=registry,ref={ref} "
                        f"--set {t.name}.cache-to=type=registry,ref={ref},mode=max \\")
        names = " ".join(t.name for t in spec.bake_targets)
        return Step("Bake and push", f"polyarch bake{files} --push --verify {ATTEST} --progress plain \\\n"
                    + "\n".join(sets) + f"\n  {names}")
    file = f" -f {_q(spec.file)}" if spec.file else ""
    platforms = ",".join(str(p) for p in spec.platforms)
    tags = " ".join(f"-t {_q(t)}" for t in spec.tags)
    return Step("Build and push", f"polyarch build {_q(spec.context)}{file} --platform {platforms} {tags} \\\n"
                f"  {_cache(repository(spec.tags[0]), '')} \\\n"
                f"  --push --verify {ATTEST} --progress plain")


def platform_step(spec: CiSpec, p: Platform, *, name: str | None = None) -> Step:
    """One platform on its native runner, pushed by digest (``name``: pushed under that tag instead, for
    providers whose jobs share no files); its digest goes to ``digest-<slug>.txt``."""
    repo = repository(spec.tags[0])
    file = f" -f {_q(spec.file)}" if spec.file else ""
    out = f"type=registry,name={name}" if name else f"type=registry,name={repo},push-by-digest=true"
    return Step(f"Build {p} and push it by digest",
                f"polyarch build {_q(spec.context)}{file} --platform {p} -o {_q(out)} \\\n"
                f"  {_cache(repo, '-' + slug(p))} \\\n"
                f"  --verify {ATTEST} --progress plain --metadata-file meta.json\n"
                "python3 -c 'import json; print(json.load(open(\"meta.json\"))[\"containerimage.digest\"])' "
                f"> digest-{slug(p)}.txt")


def merge_step(spec: CiSpec, sources: list[str] | None = None) -> Step:
    """One index of every platform's manifest under the tags (``sources``: the per-platform names to merge,
    default: the digests in ``digest-*.txt``), then verified."""
    repo = repository(spec.tags[0])
    tags = " ".join(f"-t {_q(t)}" for t in spec.tags)
    picked = " ".join(_q(s) for s in sources) if sources else f"$(sed 's|^|{repo}@|' digest-*.txt)"
    platforms = ",".join(str(p) for p in spec.platforms)
    return Step("Merge the platforms into one index",
                f"polyarch imagetools create {tags} {picked}\n"
                f"polyarch verify {_q(spec.tags[0])} --require {platforms}")
