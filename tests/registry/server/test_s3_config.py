"""``registry serve --config``: distribution's config.yml shape, REGISTRY_* overrides, one error naming the key for
every bad value; and the storage seam's rules (an AST check over src/)."""

from __future__ import annotations

import ast
from pathlib import Path

import httpx
import pytest
from tests.conftest import run_cli

from polyarch.cli.registry_config import S3Settings, ServeFile, load_serve_file
from polyarch.errors import UsageError

from .conftest import Api, start_server

SRC = Path(__file__).resolve().parents[3] / "src" / "polyarch"

GOOD = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  s3:
    regionendpoint: http://127.0.0.1:7480
    region: eu-west-1
    bucket: images
    rootdirectory: /registry
    accesskey: AK
    secretkey: SK
    secure: false
    forcepathstyle: true
    chunksize: 10485760
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
  tls:
    certificate: /etc/certs/reg.crt
    key: /etc/certs/reg.key
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/registry/htpasswd
health:
  storagedriver:
    enabled: true
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    return path


def test_a_registry2_file_is_read(tmp_path: Path) -> None:
    got = load_serve_file(_write(tmp_path, GOOD))
    assert got == ServeFile(
        addr="0.0.0.0:5000", tls_cert=Path("/etc/certs/reg.crt"), tls_key=Path("/etc/certs/reg.key"),
        htpasswd=Path("/etc/registry/htpasswd"), delete_enabled=True, redirect=False, storage="s3",
        s3=S3Settings(bucket="images", region="eu-west-1", regionendpoint="http://127.0.0.1:7480",
                      rootdirectory="/registry", accesskey="AK", secretkey="SK", secure=False, forcepathstyle=True,
                      chunksize=10 << 20))


def test_the_default_file_of_registry2_is_the_filesystem(tmp_path: Path) -> None:
    text = "version: 0.1\nstorage:\n  filesystem: {}\nhttp:\n  addr: 127.0.0.1:5001\n"
    assert load_serve_file(_write(tmp_path, text)) == ServeFile(addr="127.0.0.1:5001")
    assert load_serve_file(None) == ServeFile()


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    env = (("REGISTRY_STORAGE_S3_BUCKET", "other"), ("REGISTRY_HTTP_ADDR", "127.0.0.1:6000"),
           ("REGISTRY_STORAGE_REDIRECT_DISABLE", "false"), ("REGISTRY_UNRELATED", "x"))
    got = load_serve_file(_write(tmp_path, GOOD), env)
    assert got.s3 is not None and got.s3.bucket == "other"
    assert (got.addr, got.redirect) == ("127.0.0.1:6000", True)
    bad = (("REGISTRY_STORAGE_S3_SECURE", "maybe"),)
    with pytest.raises(UsageError, match=r"^REGISTRY_STORAGE_S3_SECURE: expected true or false"):
        load_serve_file(_write(tmp_path, GOOD), bad)


# (file text, the line the error names, the message after "registry.yaml:LINE: ")
BAD = [
    ("storage:\n  s3:\n    bucket: b\n    secure: maybe\n", 4, "storage.s3.secure: expected true or false"),
    ("storage:\n  s3:\n    bucket: b\n    forcepathstyle: 3\n", 4, "storage.s3.forcepathstyle: expected true or false"),
    ("storage:\n  s3:\n    bucket: b\n    chunksize: 1000\n", 4, "storage.s3.chunksize: must be at least"),
    ("storage:\n  s3:\n    bucket: b\n    chunksize: lots\n", 4, "storage.s3.chunksize: expected a number of bytes"),
    ("storage:\n  s3:\n    region: x\n", 2, "storage.s3.bucket: required by the s3 driver"),
    ("storage:\n  s3:\n    bucket: ''\n", 3, "storage.s3.bucket: expected a non-empty string"),
    ("storage:\n  s3:\n    bucket: b\n    regionendpoint: ftp://x\n", 4, "storage.s3.regionendpoint: expected an http"),
    ("storage:\n  s3:\n    bucket: b\n    accesskey: a\n", 4, "storage.s3.accesskey and storage.s3.secretkey go"),
    ("storage:\n  s3:\n    bucket: b\n    region: [1]\n", 4, "storage.s3.region: expected a non-empty string"),
    ("storage:\n  s3:\n    bucket: b\n    regoin: x\n", 4, "storage.s3.regoin: unknown key"),
    ("storage:\n  s3:\n    bucket: b\n  filesystem: {}\n", 4, "storage: more than one driver configured"),
    ("storage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n", 3, "storage.filesystem.rootdirectory: not used"),
    ("storage:\n  delete:\n    enabled: yes please\n", 3, "storage.delete.enabled: expected true or false"),
    ("storage:\n  redirect:\n    disable: 1\n", 3, "storage.redirect.disable: expected true or false"),
    ("http:\n  addr: 5000\n", 2, "http.addr: expected HOST:PORT"),
    ("http:\n  addr: :99999\n", 2, "http.addr: expected HOST:PORT"),
    ("http:\n  tls:\n    certificate: ''\n", 3, "http.tls.certificate: expected a non-empty string"),
    ("http:\n  tls:\n    clientcas: [a, b]\n", 3, "http.tls.clientcas: polyarch takes exactly one"),
    ("auth:\n  htpasswd:\n    path: {x: 1}\n", 3, "auth.htpasswd.path: expected a non-empty string"),
    ("auth:\n  token:\n    realm: x\n", 3, "auth.token.realm: unknown key"),
    ("# a list, not a mapping\n\n- a list\n", 3, "expected a mapping of keys at the top"),
    ("http: [\n", 2, "invalid YAML"),
]
# lines further down a realistic file, after comments, blank lines and ignored sections
LATER = [
    ("storage.s3.secure: maybe", 13, "storage.s3.secure: expected true or false"),
    ("storage.s3.bucket: ''", 11, "storage.s3.bucket: expected a non-empty string"),
    ("storage.redirect.minsize: -1", 16, "storage.redirect.minsize: expected a number of bytes"),
    ("storage.redirect.minsize: big", 16, "storage.redirect.minsize: expected a number of bytes"),
    ("storage.s3.colour: red", 13, "storage.s3.colour: unknown key"),
]
_LATER_FILE = """\
# registry.yaml of a homelab
version: 0.1
log:
  level: info

storage:
  cache:
    blobdescriptor: inmemory
  s3:
    regionendpoint: http://127.0.0.1:7480
    bucket: images
    accesskey: AK
    secretkey: SK
  redirect:
    disable: false
    minsize: 1048576
http:
  addr: :5000
"""


@pytest.mark.parametrize(("text", "line", "message"), BAD, ids=[m.split(":")[0] for _, _, m in BAD])
def test_each_bad_value_names_its_file_line_and_key(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(UsageError) as info:
        load_serve_file(path)
    assert str(info.value.message).startswith(f"{path}:{line}: {message}"), info.value.message


@pytest.mark.parametrize(("change", "line", "message"), LATER, ids=[c for c, _, _ in LATER])
def test_the_line_is_that_of_the_bad_key_in_a_longer_file(tmp_path: Path, change: str, line: int,
                                                           message: str) -> None:
    key, _, value = change.partition(": ")
    leaf = key.rsplit(".", 1)[1]
    lines = _LATER_FILE.splitlines()
    for i, text in enumerate(lines):
        if text.strip().startswith(f"{leaf}:") and i + 1 == line:
            lines[i] = text[:len(text) - len(text.lstrip())] + f"{leaf}: {value}"
            break
    else:
        lines.insert(line - 1, f"    {leaf}: {value}")
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(UsageError) as info:
        load_serve_file(path)
    assert str(info.value.message).startswith(f"{path}:{line}: {message}"), info.value.message


def test_polyarch_limits_keys(tmp_path: Path) -> None:
    text = "limits:\n  uploadsperrepo: 3\n  uploadsperclient: '7'\n  uploadttl: 90m\n"
    got = load_serve_file(_write(tmp_path, text), (("REGISTRY_LIMITS_UPLOADSPERCLIENT", "9"),))
    assert (got.max_uploads_per_repo, got.max_uploads_per_client, got.upload_ttl) == (3, 9, 5400.0)
    assert (ServeFile().max_uploads_per_repo, ServeFile().upload_ttl) == (None, None)
    for bad, line, message in (("limits:\n  uploadsperrepo: 0\n", 2, "limits.uploadsperrepo: expected a whole"),
                               ("\nlimits:\n  uploadsperclient: many\n", 3, "limits.uploadsperclient: expected"),
                               ("limits:\n  uploadttl: 0\n", 2, "limits.uploadttl: must be longer than 0"),
                               ("limits:\n  uploadttl: soon\n", 2, "limits.uploadttl: expected a duration"),
                               ("limits:\n  sessions: 4\n", 2, "limits.sessions: unknown key")):
        path = _write(tmp_path, bad)
        with pytest.raises(UsageError) as info:
            load_serve_file(path)
        assert info.value.message.startswith(f"{path}:{line}: {message}"), info.value.message


def test_redirect_minsize_is_read(tmp_path: Path) -> None:
    got = load_serve_file(_write(tmp_path, _LATER_FILE))
    assert (got.redirect, got.redirect_min) == (True, 1 << 20)
    got = load_serve_file(_write(tmp_path, _LATER_FILE), (("REGISTRY_STORAGE_REDIRECT_MINSIZE", "0"),))
    assert got.redirect_min == 0
    assert load_serve_file(None).redirect_min is None


@pytest.mark.parametrize(("text", "line", "message"), [BAD[0], BAD[14], BAD[-1]])
def test_the_cli_says_one_error_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = _write(tmp_path, text)
    proc = run_cli("registry", "serve", "--config", str(path), root=tmp_path / "store", check=False, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"error: {path}:{line}: {message}"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "http:\n  addr: 127.0.0.1:1\nstorage:\n  filesystem: {}\n  delete:\n    enabled: true\n")
    server = start_server(tmp_path / "store", "--config", str(path))  # start_server passes --addr: it wins
    try:
        api = Api(httpx.Client(base_url=server.url, timeout=10))
        _, digest = api.push_image("app", "1")
        assert api.c.delete(f"/v2/app/manifests/{digest}").status_code == 202  # storage.delete.enabled
    finally:
        server.stop()


def test_the_cli_says_when_the_bucket_cannot_be_reached(tmp_path: Path) -> None:
    path = _write(tmp_path, "storage:\n  s3:\n    bucket: b\n    regionendpoint: http://127.0.0.1:9\n"
                            "    accesskey: a\n    secretkey: s\n")
    proc = run_cli("registry", "serve", "--config", str(path), root=tmp_path / "store", check=False, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.startswith("error: S3 HeadBucket failed") and "Traceback" not in proc.stderr, proc.stderr


# --- the storage seam's rules --------------------------------------------------------------------------------

def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_s3_driver_imports_an_s3_client() -> None:
    users = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                   if _imports(p) & {"boto3", "botocore", "minio", "obstore", "aiobotocore"})
    assert users == ["registry/server/storage/s3.py"]


def test_handlers_reach_blob_bytes_only_through_the_storage() -> None:
    """Blob bytes of the registry go through ``reg.blobs`` (the ``BlobStorage``), never the content store
    directly: else the s3 driver would serve from the wrong place."""
    server = SRC / "registry" / "server"
    found = []
    for name in ("app.py", "blobs.py", "manifests.py", "upload_api.py", "uploads.py", "state.py"):
        for node in ast.walk(ast.parse((server / name).read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "store" and node.attr in ("stat", "read", "write", "open", "blob_path",
                                                                    "delete", "list", "has", "ingest", "writer"):
                found.append(f"{name}:{node.lineno} .store.{node.attr}")
    assert found == []


def test_the_readme_example_is_a_valid_config(tmp_path: Path) -> None:
    """The README's registry.yaml example loads as it is written (docs stay true)."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = readme.split("## The registry on S3 and PostgreSQL", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    got = load_serve_file(_write(tmp_path, block))
    assert got.s3 is not None and got.s3.bucket == "registry" and got.s3.forcepathstyle
    assert got.database is not None and got.database.startswith("postgresql://")
    assert got.proxy is not None and got.proxy.remoteurl == "https://registry-1.docker.io"
