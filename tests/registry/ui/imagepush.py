"""Images pushed through the registry API for the web page's tests: one platform manifest per (platform, ELF
machine) with a real layer (``/bin/app`` carrying an ELF header of that machine), a config with entrypoint, env,
user, labels and history, an index with annotations, and an SBOM referrer (an in-toto SPDX statement)."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
from collections.abc import Mapping
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
EMPTY = "application/vnd.oci.empty.v1+json"
INTOTO = "application/vnd.in-toto+json"
EM = {"amd64": 62, "arm64": 183}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def elf(machine: int) -> bytes:
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    return ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0, 64, 0, 0, 64, 56, 0, 64, 0, 0) + bytes(64)


def layer(machine: int, note: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("bin/app", elf(machine)), ("etc/note", note.encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Pusher:
    """Pushes over any httpx-compatible client (a TestClient or an ``httpx.Client`` of a real server)."""

    def __init__(self, client: httpx.Client, auth: Any = None) -> None:
        self.c = client
        self.auth = auth

    def blob(self, repo: str, data: bytes) -> dict[str, Any]:
        d = sha256(data)
        r = self.c.post(f"/v2/{repo}/blobs/uploads/?digest={d}", content=data, auth=self.auth)
        assert r.status_code == 201, r.text
        return {"digest": d, "size": len(data)}

    def put(self, repo: str, ref: str, doc: dict[str, Any]) -> dict[str, Any]:
        raw = json.dumps(doc).encode()
        r = self.c.put(f"/v2/{repo}/manifests/{ref}", content=raw, headers={"Content-Type": doc["mediaType"]},
                       auth=self.auth)
        assert r.status_code == 201, r.text
        return {"mediaType": doc["mediaType"], "digest": sha256(raw), "size": len(raw)}

    def image(self, repo: str, tag: str, platforms: Mapping[str, str], *, labels: Mapping[str, str] | None = None,
              annotations: Mapping[str, str] | None = None, note: str = "") -> dict[str, Any]:
        """``platforms``: platform → architecture of the ELF file inside (``{"linux/arm64": "amd64"}`` is a
        mismatch). Returns the index descriptor (one manifest per platform)."""
        children = []
        for platform, machine in platforms.items():
            os_, arch, *variant = platform.split("/")
            data = layer(EM[machine], f"{repo}:{tag} {platform} {note}")
            config = {"architecture": arch, "os": os_, **({"variant": variant[0]} if variant else {}),
                      "created": "2026-01-02T03:04:05Z",
                      "config": {"Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["PATH=/bin", "MODE=test"],
                                 "User": "1000:1000", "WorkingDir": "/srv", "Labels": dict(labels or {})},
                      "rootfs": {"type": "layers", "diff_ids": [sha256(data)]},
                      "history": [{"created": "2026-01-02T03:04:05Z", "created_by": "COPY app /bin/app"}]}
            cfg = json.dumps(config).encode()
            manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": OCI_CONFIG, **self.blob(repo, cfg)},
                        "layers": [{"mediaType": OCI_LAYER, **self.blob(repo, data)}]}
            desc = self.put(repo, sha256(json.dumps(manifest).encode()), manifest)
            p = {"os": os_, "architecture": arch, **({"variant": variant[0]} if variant else {})}
            children.append({**desc, "platform": p})
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
                 "annotations": dict(annotations or {})}
        return self.put(repo, tag, index)

    def sbom(self, repo: str, subject: dict[str, Any], packages: list[tuple[str, str]]) -> dict[str, Any]:
        statement = {"_type": "https://in-toto.io/Statement/v0.1", "predicateType": "https://spdx.dev/Document",
                     "subject": [{"name": repo, "digest": {"sha256": subject["digest"][7:]}}],
                     "predicate": {"spdxVersion": "SPDX-2.3",
                                   "packages": [{"name": n, "versionInfo": v} for n, v in packages]}}
        data = json.dumps(statement).encode()
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": INTOTO,
                    "config": {"mediaType": EMPTY, **self.blob(repo, b"{}")},
                    "layers": [{"mediaType": INTOTO, **self.blob(repo, data),
                                "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"}}],
                    "subject": {k: subject[k] for k in ("mediaType", "digest", "size")}}
        return self.put(repo, sha256(json.dumps(manifest).encode()), manifest)
