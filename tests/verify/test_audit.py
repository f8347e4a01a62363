"""``polyarch audit``: compose / image lists × hosts → native, emulated or missing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from polyarch import platform as plat
from polyarch.audit import Verdict, decide
from polyarch.audit_inputs import load_hosts, load_images, platform_from_probe
from polyarch.content.images import ImageStore
from polyarch.errors import ParseError

from .build import put_image, put_index

Run = Callable[..., "subprocess.CompletedProcess[str]"]

HOSTS_YAML = """\
hosts:
  server: linux/amd64
  pi4: linux/arm64
  pi3: linux/arm/v7
"""

COMPOSE = """\
services:
  web:
    image: app/web:${WEB_TAG:-1}
  db:
    image: app/db:1
  camera:
    image: app/pi:1
  metrics:
    image: app/gone:1
  builder:
    build: .
"""


def _tiny(images: ImageStore, platform: str):  # type: ignore[no-untyped-def]
    return put_image(images, platform, [[("etc/os-release", "file", f"ID={platform}\n".encode())]])


@pytest.fixture
def fleet(images: ImageStore, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(store root, hosts file, compose file) with app/web (3 platforms), app/db (amd64, arm64), app/pi
    (arm/v6 only); app/gone does not exist."""
    put_index(images, "app/web:1", [_tiny(images, p) for p in ("linux/amd64", "linux/arm64", "linux/arm/v7")])
    put_index(images, "app/db:1", [_tiny(images, p) for p in ("linux/amd64", "linux/arm64")])
    put_index(images, "app/pi:1", [_tiny(images, "linux/arm/v6")])
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(HOSTS_YAML)
    compose = tmp_path / "compose.yaml"
    compose.write_text(COMPOSE)
    return images.store.root, hosts, compose


def test_compose_table(fleet: tuple[Path, Path, Path], run_cli: Run) -> None:
    root, hosts, compose = fleet
    proc = run_cli("audit", "--hosts", str(hosts), str(compose), "--local-only", root=root, check=False)
    assert proc.returncode == 1, proc.stderr
    rows = [line.split("  ") for line in proc.stdout.splitlines()]
    table = [[cell.strip() for cell in row if cell.strip()] for row in rows]
    assert table == [
        ["IMAGE", "server (linux/amd64)", "pi4 (linux/arm64)", "pi3 (linux/arm/v7)"],
        ["app/web:1", "native linux/amd64", "native linux/arm64", "native linux/arm/v7"],
        ["app/db:1", "native linux/amd64", "native linux/arm64", "emulated linux/amd64"],
        ["app/pi:1", "emulated linux/arm/v6", "native linux/arm/v6", "native linux/arm/v6"],
        ["app/gone:1", "missing", "missing", "missing"],
    ]
    assert "skipped compose.yaml:builder: no image" in proc.stderr


def test_compose_json_and_exit_zero_when_all_native(fleet: tuple[Path, Path, Path], tmp_path: Path,
                                                    run_cli: Run) -> None:
    root, hosts, compose = fleet
    proc = run_cli("audit", "--hosts", str(hosts), str(compose), "--format", "json", "--local-only", root=root,
                   check=False)
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False
    assert [h["name"] for h in doc["hosts"]] == ["server", "pi4", "pi3"]
    db = next(i for i in doc["images"] if i["ref"] == "app/db:1")
    assert db["services"] == ["compose.yaml:db"] and db["platforms"] == ["linux/amd64", "linux/arm64"]
    assert db["hosts"]["pi3"]["status"] == "emulated" and db["hosts"]["pi3"]["platform"] == "linux/amd64"
    gone = next(i for i in doc["images"] if i["ref"] == "app/gone:1")
    assert gone["found"] is False and gone["hosts"]["server"] == {"status": "missing", "note": "image not found"}
    good = tmp_path / "good.txt"
    good.write_text("# the images that run everywhere\napp/web:1\n\napp/web:1\n")
    proc = run_cli("audit", "--hosts", str(hosts), str(good), root=root)
    assert proc.stdout.splitlines()[1].split()[0] == "app/web:1" and len(proc.stdout.splitlines()) == 2


def test_single_platform_image_and_pinned_service(images: ImageStore, tmp_path: Path, run_cli: Run) -> None:
    images.set_name("legacy:1", _tiny(images, "linux/amd64"))
    put_index(images, "app/db:1", [_tiny(images, p) for p in ("linux/amd64", "linux/arm64")])
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# name platform\npi4 linux/arm64\nserver linux/amd64\n")
    compose = tmp_path / "compose.yml"
    compose.write_text("services:\n  db:\n    image: app/db:1\n    platform: linux/amd64\n")
    proc = run_cli("audit", "--hosts", str(hosts), str(compose), "--image", "legacy:1", root=images.store.root,
                   check=False)
    assert proc.returncode == 1
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert lines[1] == ["app/db:1", "[linux/amd64]", "emulated", "linux/amd64", "native", "linux/amd64"]
    assert lines[2] == ["legacy:1", "emulated", "linux/amd64", "native", "linux/amd64"]


@pytest.mark.parametrize(("available", "host", "want"), [
    (["linux/amd64", "linux/arm64"], "linux/arm64", Verdict("native", plat.parse("linux/arm64"))),
    (["linux/arm/v7", "linux/arm/v6"], "linux/arm64", Verdict("native", plat.parse("linux/arm/v7"))),
    (["linux/arm/v7"], "linux/arm/v6", "emulated linux/arm/v7"),
    (["linux/386"], "linux/amd64", Verdict("native", plat.parse("linux/386"))),
    (["linux/ppc64le", "linux/arm64", "linux/s390x"], "linux/amd64", "emulated linux/arm64"),
    (["linux/s390x", "linux/ppc64le"], "linux/arm64", "emulated linux/s390x"),
    (["windows/amd64"], "linux/amd64", "missing"),
    ([], "linux/amd64", "missing"),
    (None, "linux/amd64", "missing"),
])
def test_decide(available: list[str] | None, host: str, want: Verdict | str) -> None:
    got = decide([plat.parse(p) for p in available] if available is not None else None, plat.parse(host))
    if isinstance(want, Verdict):
        assert (got.status, got.platform) == (want.status, want.platform)
    else:
        assert got.text() == want


@pytest.mark.parametrize(("answer", "platform"), [
    ("Linux\nx86_64\n64\nmodel name\t: Intel(R) Core(TM) i5\nmodel name\t: Intel(R) Core(TM) i5\n", "linux/amd64"),
    ("Linux\naarch64\n64\nCPU architecture: 8\n", "linux/arm64"),
    # Raspberry Pi OS 32-bit userland on its 64-bit kernel (Pi 4)
    ("Linux\naarch64\n32\nCPU architecture: 8\n", "linux/arm/v8"),
    ("Linux\narmv7l\n32\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nCPU architecture: 7\n", "linux/arm/v7"),
    # Pi Zero / 1: the ARM11 reports architecture 7, containerd's quirk makes it v6
    ("Linux\narmv6l\n32\nmodel name\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 7\n",
     "linux/arm/v6"),
])
def test_platform_from_probe(answer: str, platform: str) -> None:
    assert str(platform_from_probe(answer)) == platform


@pytest.mark.parametrize(("text", "needle"), [
    ("hosts:\n  pi: linux/arm99\n", "unknown architecture"),
    ("hosts:\n  pi: ftp://x\n", "invalid platform"),
    ("hosts:\n  pi: ssh://us er@host\n", "is not ssh://"),
    ("hosts:\n  pi: {}\n", "neither platform nor ssh"),
    ("server linux/amd64\npi4\n", "expected 'NAME PLATFORM'"),
    ("hosts: [\n", "invalid YAML"),
    ("", "no hosts"),
    ("a linux/amd64\na linux/arm64\n", "listed twice"),
])
def test_bad_hosts_files(text: str, needle: str, tmp_path: Path) -> None:
    f = tmp_path / "hosts"
    f.write_text(text)
    with pytest.raises(ParseError, match=needle):
        load_hosts(f)


def test_hosts_forms(tmp_path: Path) -> None:
    f = tmp_path / "hosts.yaml"
    f.write_text("hosts:\n  - {name: a, platform: linux/arm64}\n  - {name: b, ssh: 'ssh://root@127.0.0.1:2222'}\n")
    specs = load_hosts(f)
    assert [(s.name, str(s.platform), s.ssh) for s in specs] == [("a", "linux/arm64", ""),
                                                                 ("b", "None", "ssh://root@127.0.0.1:2222")]
    f.write_text("server: amd64\nmini: ssh://mini\n")
    assert [str(s.platform) for s in load_hosts(f)] == ["linux/amd64", "None"]


def test_compose_interpolation_and_bad_images(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    (tmp_path / ".env").write_text("REGISTRY=localhost:5000\n")
    compose.write_text("services:\n  a:\n    image: ${REGISTRY}/a:${TAG-2}\n  b:\n    image: b:$$x\n")
    with pytest.raises(ParseError, match="service b"):
        load_images(compose, env={})
    compose.write_text("services:\n  a:\n    image: ${REGISTRY}/a:${TAG-2}\n  c:\n    image: ${NEED:?set NEED}\n")
    with pytest.raises(ParseError, match="set NEED"):
        load_images(compose, env={})
    compose.write_text("services:\n  a:\n    image: ${REGISTRY}/a:${TAG-2}\n")
    uses, _ = load_images(compose, env={"TAG": "3"})
    assert [u.ref for u in uses] == ["localhost:5000/a:3"]
    listing = tmp_path / "list"
    listing.write_text("UPPER/case:1\n")
    with pytest.raises(ParseError, match="list:1"):
        load_images(listing)


def test_bad_input_exits(tmp_path: Path, run_cli: Run) -> None:
    proc = run_cli("audit", "--hosts", str(tmp_path / "nope.yaml"), "x", root=tmp_path / "r", check=False)
    assert proc.returncode == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    hosts = tmp_path / "h"
    hosts.write_text("a linux/amd64\n")
    proc = run_cli("audit", "--hosts", str(hosts), root=tmp_path / "r", check=False)
    assert proc.returncode == 2 and "no image to audit" in proc.stderr


# --- a real ssh round trip, to an sshd of our own on loopback -----------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """An sshd on 127.0.0.1 accepting a fresh key for the current user: (ssh://target, env with POLYARCH_SSH)."""
    if not (shutil.which("sshd") or os.path.exists("/usr/sbin/sshd")) or not shutil.which("ssh-keygen"):
        pytest.skip("openssh-server is not installed")
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\n"
        f"PidFile {d / 'sshd.pid'}\nPermitRootLogin prohibit-password\n")
    os.makedirs("/run/sshd", exist_ok=True)
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.skip(f"sshd did not start: {proc.stderr.read().decode()[-300:]}")  # type: ignore[union-attr]
                time.sleep(0.1)
        ssh = (f"ssh -i {d / 'client'} -o BatchMode=yes -o StrictHostKeyChecking=no "
               f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
        user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        yield f"ssh://{user}@127.0.0.1:{port}", {"POLYARCH_SSH": ssh}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_host_asked_over_ssh(sshd: tuple[str, dict[str, str]], images: ImageStore, tmp_path: Path,
                             run_cli: Run) -> None:
    target, env = sshd
    put_index(images, "app/web:1", [_tiny(images, p) for p in ("linux/amd64", "linux/arm64")])
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(f"hosts:\n  here: {target}\n  gone: ssh://nobody@127.0.0.1:{_free_port()}\n")
    proc = run_cli("audit", "--hosts", str(hosts), "--image", "app/web:1", "--format", "json",
                   "--ssh-timeout", "20", root=images.store.root, env=env, check=False)
    doc = json.loads(proc.stdout)
    here, gone = doc["hosts"]
    assert here["platform"] == str(plat.host()) and here["source"] == target
    assert doc["images"][0]["hosts"]["here"]["status"] == "native"
    assert gone["platform"] is None and "failed" in gone["error"]
    assert doc["images"][0]["hosts"]["gone"] == {"status": "unknown"}
    assert proc.returncode == 1
