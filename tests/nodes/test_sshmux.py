"""OpenSSH connection sharing for node connections (``nodes/sshmux.py``): the options, and when it is off."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyarch.nodes.model import Node, parse_endpoint
from polyarch.nodes.sshmux import SshMux

SSH = ("ssh", "-o", "BatchMode=yes")
PI5 = Node("pi5", parse_endpoint("ssh://pi@pi5:2222"))


@pytest.fixture
def short() -> Iterator[Path]:
    """A directory with a short path (pytest's are too long for a unix socket under it)."""
    d = Path(tempfile.mkdtemp(prefix="pa-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _opts(argv: tuple[str, ...]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, w in enumerate(argv) if w == "-o")


def test_sharing_options_after_the_users_words(short: Path) -> None:
    mux = SshMux(short / "rt" / "polyarch" / "ssh")
    argv = mux.argv(SSH, PI5)
    assert argv[:3] == SSH  # the user's options come first: ssh keeps the first value of an option
    opts = _opts(argv)
    assert opts["ControlMaster"] == "auto" and opts["ControlPersist"] == "60"
    path = Path(opts["ControlPath"])
    assert path.parent == short / "rt" / "polyarch" / "ssh"
    st = os.lstat(path.parent)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert "StrictHostKeyChecking" not in opts and "UserKnownHostsFile" not in opts  # checking never turned off
    # one master per ssh command and endpoint: another identity, host or port never shares it
    other = [mux.argv((*SSH, "-i", "other"), PI5), mux.argv(SSH, Node("b", parse_endpoint("ssh://pi@pi6:2222"))),
             mux.argv(SSH, Node("c", parse_endpoint("ssh://pi@pi5")))]
    assert len({_opts(a)["ControlPath"] for a in other} | {str(path)}) == 4
    # two nodes on one host (two stores) share it
    assert _opts(mux.argv(SSH, Node("pi5b", PI5.endpoint, flags=("--root", "/b"))))["ControlPath"] == str(path)


def test_an_open_directory_is_closed_first(short: Path) -> None:
    d = short / "ssh"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    assert "ControlPath" in " ".join(SshMux(d).argv(SSH, PI5))
    assert stat.S_IMODE(os.lstat(d).st_mode) == 0o700


def test_sharing_off_when_the_directory_is_not_private(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)  # another user's directory (the tests run as root)
    assert SshMux(theirs).argv(SSH, PI5) == SSH
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    assert SshMux(tmp_path / "link").argv(SSH, PI5) == SSH
    (tmp_path / "file").write_text("")
    assert SshMux(tmp_path / "file").argv(SSH, PI5) == SSH
    assert SshMux(None).argv(SSH, PI5) == SSH


def test_sharing_off_when_the_socket_path_is_too_long(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 90)
    assert SshMux(deep).argv(SSH, PI5) == SSH


def test_close_without_a_master_does_nothing(short: Path) -> None:
    mux = SshMux(short / "ssh")
    mux.close(("/nonexistent/ssh",), PI5)  # no socket: ssh is not even run
    assert mux.control_path(SSH, PI5) is not None and not mux.control_path(SSH, PI5).exists()  # type: ignore[union-attr]


def test_a_percent_in_the_directory_is_not_an_ssh_token(short: Path) -> None:
    argv = SshMux(short / "50%C").argv(SSH, PI5)
    assert _opts(argv)["ControlPath"].startswith(f"{short}/50%%C/")
