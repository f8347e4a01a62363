"""A scripted hostile HTTP server on 127.0.0.1 for client tests: each path answers with a status, headers and a
body that may be endless (streamed until the client hangs up, or until ``cap`` bytes so a broken client still
ends). It counts the requests it got per path."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Answer", "HostileServer", "endless"]


def endless(prefix: bytes = b"", chunk: bytes = b"A" * (1 << 20), cap: int = 768 << 20) -> Iterator[bytes]:
    """``prefix`` then ``chunk`` repeated, ``cap`` bytes in all."""
    yield prefix
    sent = len(prefix)
    while sent < cap:
        yield chunk
        sent += len(chunk)


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = b""
    stream: object = None  # a callable returning an iterator of bytes: no Content-Length, connection closed


class HostileServer:
    def __init__(self) -> None:
        self.routes: dict[str, Answer] = {}
        self.hits: Counter[str] = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                path = self.path.split("?", 1)[0]
                outer.hits[path] += 1
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                answer = outer.routes.get(path) or outer.routes.get("*") or Answer(404)
                self.send_response(answer.status)
                for k, v in answer.headers.items():
                    self.send_header(k.replace("{port}", str(outer.port)), v.replace("{port}", str(outer.port)))
                if answer.stream is not None:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    try:
                        for piece in answer.stream():  # type: ignore[operator]
                            self.wfile.write(piece)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    self.close_connection = True
                    return
                body = answer.body or b""
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
