"""The config file's ``[gc]`` section → ``GcPolicy``: defaults, docker sizes, Go durations, FILE:LINE errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyarch.cli.config import ConfigError, parse_config
from polyarch.pipeline.gcpolicy import GcPolicy

PATH = Path("/etc/polyarch/config.toml")


def test_no_gc_section_is_the_default_policy() -> None:
    assert parse_config(PATH, "").gc == GcPolicy() == GcPolicy(True, 10 << 30, 48 * 3600.0)


@pytest.mark.parametrize(("text", "policy"), [
    ('[gc]\nkeep-storage = "512MB"\n', GcPolicy(True, 512 << 20, 48 * 3600.0)),
    ('[gc]\nkeep-storage = 4096\nkeep-duration = "90m"\n', GcPolicy(True, 4096, 5400.0)),
    ('[gc]\nenabled = false\n', GcPolicy(False, 10 << 30, 48 * 3600.0)),
    ('[gc]\nkeep-storage = "0"\nkeep-duration = "0s"\n', GcPolicy(True, 0, 0.0)),
])
def test_gc_values(text: str, policy: GcPolicy) -> None:
    assert parse_config(PATH, text).gc == policy


@pytest.mark.parametrize(("text", "message"), [
    ('\n[gc]\nkeep-storage = "lots"\n', ":3: invalid keep-storage 'lots'"),
    ('[gc]\nkeep-storage = -1\n', ":2: keep-storage must be a size"),
    ('[gc]\nkeep-storage = true\n', ":2: keep-storage must be a size"),
    ('[gc]\nkeep-duration = 48\n', ":2: keep-duration must be a duration"),
    ('[gc]\nkeep-duration = "2d"\n', ":2: invalid keep-duration '2d'"),
    ('[gc]\nenabled = 1\n', ":2: enabled must be true or false"),
    ('[gc]\n\nkeep = "1GB"\n', ":3: unknown key 'keep' in [gc]"),
    ('gc = 5\n', ":1: gc must be a table"),
])
def test_bad_gc_values_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(PATH, text)
    assert str(info.value).startswith(str(PATH)) and message in str(info.value), str(info.value)
