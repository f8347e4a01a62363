"""A loopback HTTP/1.1 proxy for fault injection in front of a registry.

Rules match method + a path regex and fire a bounded number of times:
- ``status``: answer with a status (503, 429 …) and optional ``Retry-After`` without contacting the upstream;
- ``reset``: forward the request, send the response headers and ``after`` body bytes, then reset the TCP connection;
- ``stall``: like reset, but stop sending for ``seconds`` (longer than the client's read timeout), then close.

The ``Host`` header is forwarded unchanged so the registry builds its upload URLs against the proxy.
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FaultProxy", "Rule"]

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Rule:
    method: str
    path: str  # regex, searched in the request path
    action: str  # status | reset | stall
    times: int = 1
    status: int = 503
    retry_after: str = ""
    after: int = 0
    seconds: float = 0.0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.fired < self.times and (self.method in ("*", method)) and re.search(self.path, path) is not None


@dataclass
class _State:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    log: list[tuple[str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pick(self, method: str, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.fired += 1
                    return rule
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: _State

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reset(self) -> None:
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def _handle(self) -> None:
        body = self._body()
        rule = self.state.pick(self.command, self.path)
        if rule is not None and rule.action == "status":
            payload = b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}'
            self.send_response(rule.status)
            if rule.retry_after:
                self.send_header("Retry-After", rule.retry_after)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":  # a HEAD answer has no body: writing one would corrupt the next response
                self.wfile.write(payload)
            self.state.log.append((self.command, self.path, rule.status))
            return
        conn = http.client.HTTPConnection(self.state.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        if body or self.command in ("PUT", "POST", "PATCH"):
            headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body if body else None, headers=headers)
        resp = conn.getresponse()
        self.state.log.append((self.command, self.path, resp.status))
        self.send_response_only(resp.status, resp.reason)
        length = resp.getheader("Content-Length")
        for k, v in resp.getheaders():
            if k.lower() not in _HOP:
                self.send_header(k, v)
        if length is None and self.command != "HEAD":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        sent = 0
        while self.command != "HEAD":
            chunk = resp.read(64 << 10)
            if not chunk:
                break
            if rule is not None and sent + len(chunk) > rule.after:
                cut = max(rule.after - sent, 0)
                self.wfile.write(chunk[:cut])
                self.wfile.flush()
                if rule.action == "stall":
                    time.sleep(rule.seconds)
                conn.close()
                self._reset()
                return
            self.wfile.write(chunk)
            sent += len(chunk)
        if rule is not None and rule.action in ("reset", "stall") and self.command == "HEAD":
            self._reset()
        conn.close()

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:  # resets are expected: stay quiet
        return


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.state = _State(upstream)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add(self, method: str, path: str, action: str, **kw: object) -> Rule:
        rule = Rule(method, path, action, **kw)  # type: ignore[arg-type]
        with self.state.lock:
            self.state.rules.append(rule)
        return rule

    @property
    def log(self) -> list[tuple[str, str, int]]:
        return list(self.state.log)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
