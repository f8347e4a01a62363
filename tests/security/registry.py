"""A hostile registry on 127.0.0.1: serves whatever bytes a test gives it for manifests and blobs, lies included
(a blob whose bytes do not hash to the digest asked for, a manifest listing a platform its config contradicts).

``HostileRegistry(files)`` maps request paths (``/v2/evil/img/manifests/1``, ``/v2/evil/img/blobs/sha256:…``)
to (bytes, content type); GET and HEAD answer them, ``/v2/`` answers 200, anything else 404. Use as a context
manager; ``host`` is ``127.0.0.1:PORT`` (loopback registries speak plain http).
"""

from __future__ import annotations

import http.server
import threading
from types import TracebackType

from tests.security.hostile import OCI_INDEX, OCI_MANIFEST, HostileImage

__all__ = ["HostileRegistry", "registry_files"]


def registry_files(image: HostileImage, repo: str, tag: str,
                   overrides: dict[str, bytes] | None = None) -> dict[str, tuple[bytes, str]]:
    """The paths a registry serves for ``image`` as ``repo:tag``; ``overrides`` maps a digest to the (wrong)
    bytes served for it."""
    index, manifest, config, layers = image.blobs()
    files: dict[str, tuple[bytes, str]] = {
        f"/v2/{repo}/manifests/{tag}": (index.data, OCI_INDEX),
        f"/v2/{repo}/manifests/{index.digest}": (index.data, OCI_INDEX),
        f"/v2/{repo}/manifests/{manifest.digest}": (manifest.data, OCI_MANIFEST),
    }
    for blob in (config, *layers):
        files[f"/v2/{repo}/blobs/{blob.digest}"] = (blob.data, "application/octet-stream")
    for digest, data in (overrides or {}).items():
        for path, (_, ctype) in list(files.items()):
            if path.endswith("/" + digest):
                files[path] = (data, ctype)
    return files


class HostileRegistry:
    def __init__(self, files: dict[str, tuple[bytes, str]]) -> None:
        served = files

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, body: bool) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/v2/":
                    data, ctype = b"{}", "application/json"
                elif path in served:
                    data, ctype = served[path]
                else:
                    self.send_response(404)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    if body:
                        self.wfile.write(b"{}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    try:
                        self.wfile.write(data)
                    except (BrokenPipeError, ConnectionResetError):
                        pass

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HostileRegistry:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
