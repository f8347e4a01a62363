"""The two-target bake used by the end-to-end tests and bench/bench_bake.py.

``app``: an interpreted (shell) app copied onto base/busybox:1. ``tool``: the cross-compile pattern: a builder
stage on ``$BUILDPLATFORM`` "compiles" (busybox shell) a program for ``$TARGETARCH``, the final stage copies it.
Both start from the same ``base`` stage (identical text → identical vertex digests), which therefore runs once
per platform, not once per target and platform.
"""

from __future__ import annotations

from pathlib import Path

SHARED = 'FROM base/busybox:1 AS base\nRUN echo shared > /shared.txt && mkdir -p /app\n'

FILES = {
    "Dockerfile.app": SHARED + '\nFROM base\nCOPY app.sh /app/app.sh\nCMD ["/app/app.sh"]\n',
    "Dockerfile.tool": (
        'FROM --platform=$BUILDPLATFORM base/busybox:1 AS builder\n'
        'ARG TARGETARCH\n'
        'RUN mkdir /out && printf \'#!/bin/sh\\necho tool built for %s\\n\' "$TARGETARCH" > /out/tool '
        '&& chmod +x /out/tool\n\n'
        + SHARED +
        '\nFROM base\nCOPY --from=builder /out/tool /usr/local/bin/tool\nCMD ["/usr/local/bin/tool"]\n'),
    "app.sh": '#!/bin/sh\necho hello from app\n',
    "docker-bake.hcl": '''\
variable "REGISTRY" {
  default = "localhost:5000"
}
variable "PLATFORMS" {
  default = "linux/amd64,linux/arm64"
}
group "default" {
  targets = ["app", "tool"]
}
target "_common" {
  platforms = split(",", PLATFORMS)
}
target "app" {
  inherits   = ["_common"]
  dockerfile = "Dockerfile.app"
  tags       = ["${REGISTRY}/bake/app:1"]
}
target "tool" {
  inherits   = ["_common"]
  dockerfile = "Dockerfile.tool"
  tags       = ["${REGISTRY}/bake/tool:1"]
}
''',
}


def write_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in FILES.items():
        (root / name).write_text(text)
    (root / "app.sh").chmod(0o755)
    return root
