"""The pull-through mirror's configuration: distribution's ``proxy:`` keys (and polyarch's ``allowpush``), their
``REGISTRY_PROXY_*`` overrides, one error naming the file, line and key for every bad value, the ``--proxy-*`` flags; and the rule
that the upstream's registry client is made only in ``cli/`` (an AST check over src/)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from tests.conftest import run_cli

from polyarch.cli.registry_config import ProxySettings, load_serve_file
from polyarch.errors import UsageError

SRC = Path(__file__).resolve().parents[3] / "src" / "polyarch"


def _load(tmp_path: Path, text: str, env: tuple[tuple[str, str], ...] = ()) -> ProxySettings | None:
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    return load_serve_file(path, env).proxy


def test_distribution_proxy_keys(tmp_path: Path) -> None:
    got = _load(tmp_path, "version: 0.1\nproxy:\n  remoteurl: https://registry-1.docker.io/\n  username: me\n"
                          "  password: secret\n  ttl: 1h30m\n")
    assert got == ProxySettings("https://registry-1.docker.io", "me", "secret", 5400.0, False)
    assert _load(tmp_path, "proxy:\n  remoteurl: http://10.0.0.5:5000\n") == \
        ProxySettings("http://10.0.0.5:5000", ttl=168 * 3600.0)  # distribution's default ttl
    assert _load(tmp_path, "proxy:\n  remoteurl: http://h:1\n  ttl: 0\n  allowpush: true\n") == \
        ProxySettings("http://h:1", ttl=0.0, allowpush=True)
    assert _load(tmp_path, "version: 0.1\n") is None


def test_environment_overrides(tmp_path: Path) -> None:
    got = _load(tmp_path, "proxy:\n  remoteurl: http://a:1\n",
                (("REGISTRY_PROXY_REMOTEURL", "https://b.example"), ("REGISTRY_PROXY_TTL", "10m")))
    assert got == ProxySettings("https://b.example", ttl=600.0)


@pytest.mark.parametrize(("text", "line", "message"), [
    ("proxy:\n  remoteurl: ftp://x\n", 2, "proxy.remoteurl: expected http(s)://HOST[:PORT]"),
    ("proxy:\n  remoteurl: https://x/some/path\n", 2, "proxy.remoteurl: expected http(s)://HOST[:PORT]"),
    ("proxy:\n  remoteurl: https://u:p@x\n", 2, "proxy.remoteurl: expected http(s)://HOST[:PORT]"),
    ("proxy:\n  remoteurl: http://x:99999\n", 2, "proxy.remoteurl: expected"),
    ("proxy:\n  remoteurl: http://x\n  ttl: soon\n", 3, "proxy.ttl: expected a duration"),
    ("proxy:\n  remoteurl: http://x\n  ttl: 5\n", 3, "proxy.ttl: expected a duration"),
    ("proxy:\n  remoteurl: http://x\n  allowpush: maybe\n", 3, "proxy.allowpush: expected true or false"),
    ("proxy:\n  remoteurl: http://x\n  username: me\n", 3, "proxy.username and proxy.password go together"),
    ("version: 0.1\nproxy:\n  ttl: 1h\n", 2, "proxy.remoteurl: required"),
    ("proxy:\n  remoteurl: http://x\n  colour: red\n", 3, "proxy.colour: unknown key"),
])
def test_bad_values_name_the_file_line_and_key(tmp_path: Path, text: str, line: int, message: str) -> None:
    with pytest.raises(UsageError) as err:
        _load(tmp_path, text)
    assert err.value.message.startswith(f"{tmp_path / 'registry.yaml'}:{line}: {message}"), err.value.message


@pytest.mark.parametrize(("args", "message"), [
    (("--proxy-remote-url", "registry.example"), "error: invalid --proxy-remote-url: expected http(s)://"),
    (("--proxy-remote-url", "https://127.0.0.1:5001"), "error: proxy remote URL https://127.0.0.1:5001: a loopback"),
    (("--proxy-remote-url", "http://registry-1.docker.io"), "Docker Hub is reached over https"),
    (("--proxy-allow-push",), "error: --proxy-allow-push needs --proxy-remote-url"),
])
def test_bad_flags_one_error_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    proc = run_cli("registry", "serve", "--addr", "127.0.0.1:0", *args, root=tmp_path / "store", check=False,
                   timeout=60)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_registry_clients_are_made_only_in_the_cli() -> None:
    """The mirror's upstream client (and every other registry client) is made in the composition root and passed
    down: no module outside ``cli/`` calls ``RegistryClient(...)``."""
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "cli" or rel == Path("registry/client.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
                if name == "RegistryClient":
                    offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []
    # the rule's object is real: the CLI does make the mirror's client
    assert "RegistryClient(" in (SRC / "cli" / "registry_server.py").read_text()
