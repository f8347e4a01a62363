"""The exporters' one entry (``polyarch.exporters.dispatch.export``): every output type has exactly one exporter,
an unknown type is one usage error, exporters receive their collaborators (no client made, no environment read),
and ``type=registry`` pushes by tag, by digest only (``push-by-digest``) and names ``repo@digest``
(``name-canonical``) against a real registry."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from polyarch.content.images import ImageStore
from polyarch.content.store import ContentStore
from polyarch.errors import UsageError
from polyarch.exporters import dispatch
from polyarch.exporters.dispatch import EXPORTERS, export, exporter_for
from polyarch.exporters.exporter import ExportContext, Exporter, ExportReport
from polyarch.exporters.spec import OUTPUT_TYPES, OutputSpec, parse_output
from polyarch.oci import reference
from polyarch.registry.client import ClientOptions, RegistryClient

SRC = Path(__file__).resolve().parents[2] / "src" / "polyarch" / "exporters"


def test_every_output_type_has_exactly_one_exporter() -> None:
    assert sorted(EXPORTERS) == sorted(OUTPUT_TYPES)
    for kind in OUTPUT_TYPES:
        exporter = exporter_for(OutputSpec(kind))
        assert isinstance(exporter, Exporter) and exporter.type == kind
    assert len({type(e) for e in EXPORTERS.values()}) == len(OUTPUT_TYPES)
    with pytest.raises(AssertionError, match="two exporters"):
        dispatch._by_type([*EXPORTERS.values(), dispatch.CacheOnlyExporter()])


@dataclass
class _Recorder:
    type: ClassVar[str] = ""
    seen: list[tuple[str, str]] = field(default_factory=list)

    def export(self, result: Any, spec: OutputSpec, ctx: ExportContext) -> ExportReport:
        self.seen.append((spec.type, spec.dest))
        return ExportReport(names=(spec.type,))


def test_each_output_goes_to_its_own_exporter_once_and_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    recorders = {kind: type(f"R{kind}", (_Recorder,), {"type": kind})() for kind in OUTPUT_TYPES}
    monkeypatch.setattr(dispatch, "EXPORTERS", recorders)
    specs = [OutputSpec(kind, f"d-{kind}") for kind in reversed(OUTPUT_TYPES)]
    result = object()  # default options: no conversion, so the result is never looked into
    report = export(ImageStore.__new__(ImageStore), result, specs, tags=())  # type: ignore[arg-type]
    assert report.names == tuple(reversed(OUTPUT_TYPES))
    for kind, recorder in recorders.items():
        assert recorder.seen == [(kind, f"d-{kind}")]
    assert report.result is result


def test_an_unknown_output_type_is_one_usage_error(run_cli: Any, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        export(ImageStore.__new__(ImageStore), object(), [OutputSpec("nope")], tags=())  # type: ignore[arg-type]
    assert "unknown output type 'nope'" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UsageError, match="unknown output type 'nope'"):
        parse_output("type=nope,dest=x")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    proc = run_cli("build", str(tmp_path), "-o", "type=nope,dest=x", root=tmp_path / "root", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == \
        ["error: unknown output type 'nope'"]


_FORBIDDEN_CALLS = {"RegistryClient", "ClientOptions", "from_env", "getenv", "source_date_epoch", "make_client"}


def test_exporters_make_no_registry_client_and_read_no_environment() -> None:
    found = []
    for path in sorted(SRC.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
                if name in _FORBIDDEN_CALLS:
                    found.append(f"{path.name}:{node.lineno} calls {name}")
            elif isinstance(node, ast.Attribute) and node.attr in ("environ", "environb"):
                found.append(f"{path.name}:{node.lineno} reads os.{node.attr}")
            elif isinstance(node, ast.ImportFrom) and node.module == "os" and \
                    any(a.name in ("environ", "getenv") for a in node.names):
                found.append(f"{path.name}:{node.lineno} imports os.environ/getenv")
    assert found == []


def _stored_result(images: ImageStore, name: str) -> Any:
    from polyarch.exporters.assemble import BuildResult, PlatformImage
    from polyarch.solver.state import Layer

    desc = images.lookup(name)
    out = []
    for img in images.images(desc):
        layers = tuple(Layer(d, diff) for d, diff in zip(img.manifest.layers, img.config.diff_ids, strict=True))
        out.append(PlatformImage(img.platform, img.descriptor, img.config, img.manifest.config, layers, len(layers)))
    return BuildResult(desc, tuple(out))


def _tags(registry: str, repo: str) -> list[str]:
    answer = httpx.get(f"http://{registry}/v2/{repo}/tags/list")
    if answer.status_code == 404:
        return []
    answer.raise_for_status()
    return list(answer.json().get("tags") or [])


def test_push_by_digest_pushes_no_tag_and_name_canonical_names_the_digest(store_root: Path, registry: str) -> None:
    images = ImageStore(ContentStore(store_root))
    result = _stored_result(images, "base/busybox:1")
    digest = str(result.index.digest)
    calls: list[tuple[str, ...]] = []

    def factory(*, insecure: tuple[str, ...] = ()) -> RegistryClient:
        calls.append(insecure)
        return RegistryClient(ClientOptions())

    spec = parse_output(f"type=registry,name={registry}/app,push-by-digest=true,name-canonical=true")
    report = export(images, result, [spec], tags=["unused:1"], client_factory=factory)
    assert dict(report.pushed) == {f"{registry}/app": digest}
    assert report.names == (f"{registry}/app", f"{registry}/app@{digest}")
    assert report.result == result and calls == [()]
    assert _tags(registry, "app") == []  # addressable by digest only
    with RegistryClient(ClientOptions()) as client:
        assert str(client.get_manifest(reference.parse(f"{registry}/app@{digest}")).digest) == digest

    report = export(images, result, [parse_output(f"type=registry,name={registry}/app:1,registry.insecure=true")],
                    tags=(), client_factory=factory)
    assert report.names == (f"{registry}/app:1",) and _tags(registry, "app") == ["1"]
    assert calls[-1] == (registry,)  # registry.insecure: the factory is asked for a client trusting this host


def test_push_without_a_client_factory_is_a_usage_error(store_root: Path) -> None:
    images = ImageStore(ContentStore(store_root))
    with pytest.raises(UsageError, match="needs a registry client"):
        export(images, _stored_result(images, "base/busybox:1"), [OutputSpec("registry")], tags=["r.example/a:1"])
