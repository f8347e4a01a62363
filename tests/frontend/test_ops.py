"""The IR: Merkle digests, what they include and exclude, and graph walking."""

from __future__ import annotations

from polyarch import ops
from polyarch.platform import Platform

AMD64, ARM64 = Platform("linux", "amd64"), Platform("linux", "arm64")


def test_digest_covers_fields_and_inputs_not_descriptions() -> None:
    a = ops.ImageSource(ref="alpine", platform=AMD64, description="one")
    b = ops.ImageSource(ref="alpine", platform=AMD64, description="two")
    assert a == b and a.digest == b.digest and len({a, b}) == 1
    assert ops.ImageSource(ref="alpine", platform=ARM64).digest != a.digest
    e1 = ops.Exec(root=a, args=("true",), platform=AMD64, emulated=False)
    e2 = ops.Exec(root=a, args=("true",), platform=AMD64, emulated=True)
    assert e1.digest == e2.digest  # emulation is a fact of the host, not of the work
    assert ops.Exec(root=ops.Scratch(), args=("true",), platform=AMD64).digest != e1.digest


def test_mount_sources_are_inputs_and_secret_values_do_not_exist() -> None:
    src = ops.ImageSource(ref="busybox", platform=AMD64)
    m = ops.ExecMount("bind", target="/mnt", source=src, selector="/bin")
    secret = ops.ExecMount("secret", target="/run/secrets/tok", id="tok", required=True)
    e = ops.Exec(root=ops.Scratch(), args=("ls",), mounts=(m, secret), platform=AMD64)
    assert e.inputs == (ops.Scratch(), src)
    doc = ops.vertex_to_json(e)
    assert doc["mounts"][1] == {"type": "secret", "target": "/run/secrets/tok", "readonly": False, "id": "tok",
                                "required": True}


def test_copy_layer_digest_ignores_root() -> None:
    ctx = ops.LocalContext(exclude=("*.log",))
    c1 = ops.Copy(root=ops.ImageSource(ref="alpine", platform=AMD64), source=ctx, paths=("a",), dest="/a")
    c2 = ops.Copy(root=ops.ImageSource(ref="alpine", platform=ARM64), source=ctx, paths=("a",), dest="/a")
    assert c1.digest != c2.digest and c1.layer_digest == c2.layer_digest


def test_walk_lists_inputs_first_once() -> None:
    base = ops.ImageSource(ref="alpine", platform=AMD64)
    left = ops.Exec(root=base, args=("a",), platform=AMD64)
    right = ops.Copy(root=left, source=base, paths=("/x",), dest="/y")
    order = ops.walk([right, left])
    assert order == (base, left, right)
    assert [v.kind for v in order] == ["image", "exec", "copy"]
