import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyarch.digest import Digest
from polyarch.errors import InvalidManifest
from polyarch.oci.spec import (
    ContainerConfig,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    MediaType,
    parse_config,
    parse_document,
    parse_index,
    parse_manifest,
)
from polyarch.platform import Platform

D = Digest.of(b"x")


def _manifest() -> Manifest:
    return Manifest(Descriptor(MediaType.OCI_CONFIG, D, 1), (Descriptor(MediaType.OCI_LAYER_GZIP, D, 1),))


def test_manifest_round_trip_is_canonical() -> None:
    raw = _manifest().to_json()
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    assert parse_manifest(raw) == _manifest()


def test_index_round_trip_with_platform() -> None:
    idx = Index((Descriptor(MediaType.OCI_MANIFEST, D, 5, Platform("linux", "arm", "v7"), {"a": "b"}),))
    back = parse_index(idx.to_json())
    assert back.manifests[0].platform == Platform("linux", "arm", "v7")
    assert back.manifests[0].annotations == {"a": "b"}


@pytest.mark.parametrize("doc", [
    {"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST, "config": {}, "layers": [], "manifests": []},
    {"schemaVersion": 1},
    {"schemaVersion": 2, "manifests": [{"mediaType": "x/y", "digest": "sha256:bad", "size": 1}]},
    {"schemaVersion": 2, "manifests": [{"mediaType": "x/y", "digest": str(D), "size": -1}]},
    {"schemaVersion": 2, "config": {"mediaType": "a/b", "digest": str(D), "size": 1}, "layers": "no"},
    [],
])
def test_rejects_invalid_documents(doc) -> None:
    with pytest.raises(InvalidManifest):
        parse_document(json.dumps(doc).encode())


def test_media_type_must_match_content_type() -> None:
    raw = _manifest().to_json()
    with pytest.raises(InvalidManifest):
        parse_document(raw, MediaType.OCI_INDEX)


def test_invalid_json() -> None:
    with pytest.raises(InvalidManifest):
        parse_document(b"{not json")


def test_config_round_trip_keeps_unknown_fields() -> None:
    cfg = ImageConfig("arm64", "linux", config=ContainerConfig(env=("PATH=/bin",), cmd=("sh",)),
                      diff_ids=(D,), extra={"moby.buildkit.buildinfo.v1": "x"})
    back = parse_config(cfg.to_json())
    assert back == cfg
    assert back.config.env_dict() == {"PATH": "/bin"}


def test_config_requires_platform_fields() -> None:
    with pytest.raises(InvalidManifest):
        parse_config(b'{"os": "linux"}')
    with pytest.raises(InvalidManifest):
        parse_config(b'{"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": ["x"]}}')


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.sampled_from(["schemaVersion", "mediaType", "config", "layers",
                                                       "manifests", "digest", "size", "platform", "annotations"]),
                                      children, max_size=6), max_leaves=20))
def test_parse_document_only_raises_invalid_manifest(doc) -> None:
    try:
        parse_document(json.dumps(doc).encode())
    except InvalidManifest:
        pass
