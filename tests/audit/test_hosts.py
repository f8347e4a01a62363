"""``audit.hosts``: hosts files, the probe's answer, the ssh command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyarch.audit.hosts import (
    DEFAULT_SSH,
    PROBE_COMMAND,
    SshOptions,
    load_hosts,
    platform_from_probe,
    ssh_argv,
)
from polyarch.errors import ParseError, UsageError


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




def test_ssh_command_line() -> None:
    assert ssh_argv("ssh://admin@[::1]:2222") == [*DEFAULT_SSH, "-p", "2222", "admin@::1", PROBE_COMMAND]
    opts = SshOptions.from_setting("ssh -J 'jump host' -i key", 5.0)
    assert opts == SshOptions(("ssh", "-J", "jump host", "-i", "key"), 5.0)
    assert ssh_argv("ssh://mini", opts.command) == ["ssh", "-J", "jump host", "-i", "key", "mini", PROBE_COMMAND]
    assert SshOptions.from_setting("", 1.0).command == DEFAULT_SSH
    with pytest.raises(UsageError, match="POLYARCH_SSH: No closing quotation"):
        SshOptions.from_setting("ssh -o 'x", 1.0)
    with pytest.raises(ParseError, match="is not ssh://"):
        ssh_argv("ssh://a b")
