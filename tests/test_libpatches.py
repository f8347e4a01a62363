"""Each patch of ``polyarch.libpatches`` still has something to patch in the installed library: these fail when an
upgrade renames, moves or drops what a patch relies on (so the patch would silently do nothing, or break)."""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import polyarch
from polyarch import libpatches

SRC = Path(polyarch.__file__).parent


# --- trim_imports ---------------------------------------------------------------------------------------------

def _imports(stmt: ast.stmt, name: str, importer: str, in_package_root: bool) -> bool:
    """``import NAME`` or, at the package's top level, ``from .X import …`` with ``importer.X`` == NAME."""
    if isinstance(stmt, ast.Import):
        return any(a.name == name for a in stmt.names)
    return isinstance(stmt, ast.ImportFrom) and stmt.level == 1 and in_package_root \
        and f"{importer}.{stmt.module}" == name


@pytest.mark.parametrize("name", sorted(libpatches.TRIMMED_IMPORTS))
def test_trimmed_module_is_still_imported_by_its_library_with_a_fallback(name: str) -> None:
    """The trimmed module exists, and its importer still imports it inside ``try … except ImportError`` (the
    fallback a None entry in sys.modules relies on)."""
    importer = libpatches.TRIMMED_IMPORTS[name]
    spec = importlib.util.find_spec(importer)
    assert spec is not None and spec.origin is not None
    package = Path(spec.origin).parent
    guarded = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Try) or not any(
                    isinstance(h.type, ast.Name | ast.Tuple) and "ImportError" in ast.unparse(h.type)
                    for h in node.handlers):
                continue
            guarded += [path for stmt in node.body if _imports(stmt, name, importer, path.parent == package)]
    assert guarded, f"{importer} no longer imports {name} under try/except ImportError: the trim means nothing"
    if name != "trio":  # trio is optional: httpcore imports it whenever it is installed
        assert importlib.util.find_spec(name) is not None, f"{name} no longer exists"


def test_trim_keeps_the_modules_out_and_the_libraries_working() -> None:
    code = ("import sys; from polyarch.libpatches import trim_imports, TRIMMED_IMPORTS; trim_imports(); "
            "import httpx, httpcore; httpx.Client().close(); "
            "print(sorted(n for n in TRIMMED_IMPORTS if sys.modules.get(n) is not None))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_polyarch_as_a_library_trims_nothing() -> None:
    code = "import sys, polyarch.registry.client; print([n for n in ('httpx._main', 'trio') if n in sys.modules " \
           "and sys.modules[n] is None])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- raise_httpcore_read_size ---------------------------------------------------------------------------------

def test_httpcore_read_size_is_a_class_int_the_receive_loop_reads() -> None:
    code = "from httpcore._sync.http11 import HTTP11Connection as C; print(repr(C.READ_NUM_BYTES))"
    default = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert default.strip() == str(64 * 1024)  # the default the patch raises
    from httpcore._sync.http11 import HTTP11Connection

    assert "READ_NUM_BYTES" in vars(HTTP11Connection)
    assert "self.READ_NUM_BYTES" in inspect.getsource(HTTP11Connection._receive_event)


def test_raise_httpcore_read_size_raises_and_never_lowers() -> None:
    from httpcore._sync.http11 import HTTP11Connection

    before = HTTP11Connection.READ_NUM_BYTES
    raised = before + 4096
    try:
        libpatches.raise_httpcore_read_size(raised)
        assert vars(HTTP11Connection)["READ_NUM_BYTES"] == raised
        libpatches.raise_httpcore_read_size(1024)
        assert vars(HTTP11Connection)["READ_NUM_BYTES"] == raised
    finally:
        HTTP11Connection.READ_NUM_BYTES = before


# --- uvicorn_protocol -----------------------------------------------------------------------------------------

_OVERRIDDEN = ("connection_made", "on_response_complete", "connection_lost")


def test_uvicorn_protocols_have_the_methods_and_attributes_we_override() -> None:
    from uvicorn.protocols.http import httptools_impl
    from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    for cls, extra in ((H11Protocol, "handle_events"), (HttpToolsProtocol, "on_headers_complete")):
        for method in (*_OVERRIDDEN, extra):
            assert callable(vars(cls).get(method)), f"{cls.__name__}.{method} is gone"
        source = inspect.getsource(cls)
        for attr in ("self.loop =", "self.transport =", "self.cycle ="):
            assert attr in source, f"{cls.__name__} no longer sets {attr[:-2]}"
    assert "response_complete" in inspect.getsource(RequestResponseCycle.__init__)
    # a module global the body handler reads at each chunk (so raising it in the module takes effect)
    assert isinstance(httptools_impl.HIGH_WATER_LIMIT, int)
    assert "> HIGH_WATER_LIMIT" in inspect.getsource(HttpToolsProtocol.on_body)


def test_uvicorn_protocol_subclasses_uvicorns_and_raises_the_high_water_mark() -> None:
    from uvicorn.protocols.http import httptools_impl
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    proto = libpatches.uvicorn_protocol(7.0)
    assert issubclass(proto, HttpToolsProtocol) and proto.header_timeout == 7.0
    assert httptools_impl.HIGH_WATER_LIMIT >= libpatches.UVICORN_HIGH_WATER


def test_head_deadline_closes_a_silent_connection() -> None:
    """The subclass really arms its timer on uvicorn's ``connection_made`` and closes an idle connection."""
    import uvicorn

    proto_cls = libpatches.uvicorn_protocol(0.05)

    class Transport(asyncio.Transport):
        closed = False

        def get_extra_info(self, name: str, default: object = None) -> object:
            return {"peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

        def is_closing(self) -> bool:
            return self.closed

        def close(self) -> None:
            self.closed = True

    async def app(scope: object, receive: object, send: object) -> None:  # never called
        raise AssertionError

    async def run() -> bool:
        config = uvicorn.Config(app, lifespan="off", log_level="warning")
        config.load()
        proto = proto_cls(config=config, server_state=uvicorn.server.ServerState(), app_state={})
        transport = Transport()
        proto.connection_made(transport)
        await asyncio.sleep(0.3)
        return transport.closed

    assert asyncio.run(run())


def test_libraries_are_patched_only_in_libpatches() -> None:
    """No other module sets an attribute of httpcore/uvicorn or fills sys.modules."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "libpatches.py":
            continue
        text = path.read_text(encoding="utf-8")
        for needle in ("READ_NUM_BYTES", "HIGH_WATER_LIMIT", "h11_impl", "httptools_impl", "sys.modules.setdefault",
                       "sys.modules["):
            if needle in text:
                offenders.append(f"{path.relative_to(SRC)}: {needle}")
    assert offenders == []
