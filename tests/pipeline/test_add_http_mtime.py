"""``ADD http://…``: the file's mtime comes from ``Last-Modified`` parsed as Go's ``http.ParseTime`` does (RFC 1123
with GMT, RFC 850, asctime); a header it cannot parse is ignored (mtime 0), as in BuildKit — never an internal
error."""

from __future__ import annotations

import http.server
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyarch.solver.http import parse_http_time

from .conftest import build, write_tree

pytestmark = [pytest.mark.root]

T = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
HEADERS = {  # file name -> (Last-Modified, expected mtime)
    "rfc1123": ("Sun, 06 Nov 1994 08:49:37 GMT", T),
    "rfc850": ("Sunday, 06-Nov-94 08:49:37 GMT", T),
    "asctime": ("Sun Nov  6 08:49:37 1994", T),
    "garbage": ("yesterday-ish", 0),
    "numeric-zone": ("Sun, 06 Nov 1994 08:49:37 +0100", 0),  # Python's email parser takes it, Go's does not
    "bad-day": ("Sun, 31 Feb 1994 08:49:37 GMT", 0),
    "huge-year": ("Sun, 06 Nov 99999999 08:49:37 GMT", 0),
    "empty-ish": ("   ", 0),
}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        body = name.encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Last-Modified", HEADERS[name][0])
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


def test_add_url_last_modified_as_buildkit(store_root: Path, tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        adds = "".join(f"ADD {base}/{name} /web/\n" for name in HEADERS)
        ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "FROM base/busybox:1\n" + adds})
        out = tmp_path / "out"
        proc = build(store_root, ctx, "--platform", "linux/amd64", "-o", f"type=local,dest={out}", check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
        got = {name: int((out / "web" / name).stat().st_mtime) for name in HEADERS}
        assert got == {name: want for name, (_, want) in HEADERS.items()}
    finally:
        server.shutdown()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_parse_http_time_never_raises(value: str) -> None:
    got = parse_http_time(value)
    assert got is None or isinstance(got, float)


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2068, 12, 31)))
def test_parse_http_time_reads_go_s_three_layouts(when: datetime) -> None:
    when = when.replace(microsecond=0, tzinfo=UTC)
    stamp = when.timestamp()
    assert parse_http_time(when.strftime("%a, %d %b %Y %H:%M:%S GMT")) == stamp
    assert parse_http_time(when.strftime("%A, %d-%b-%y %H:%M:%S GMT")) == stamp
    assert parse_http_time(when.strftime("%a %b ") + f"{when.day:2d}" + when.strftime(" %H:%M:%S %Y")) == stamp
    assert parse_http_time(when.strftime("%a, %d %b %Y %H:%M:%S +0000")) is None
