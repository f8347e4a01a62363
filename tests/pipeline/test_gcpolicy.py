"""The value syntaxes ``du``/``prune``/``[gc]`` share (docker sizes, Go durations, buildx filters), the record
selection rule of ``prune --keep-storage`` (pure: records in, records out), and the cache-mount dir's one owner."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from polyarch.errors import UsageError
from polyarch.pipeline.gcpolicy import human_size, parse_duration, parse_size
from polyarch.pipeline.prune import select
from polyarch.pipeline.usage import BUILDX_TYPES, KINDS, Record, RecordFilter, cache_total, parse_filters

SRC = Path(__file__).resolve().parents[2] / "src" / "polyarch"


@pytest.mark.parametrize(("text", "size"), [
    ("0", 0), ("4096", 4096), ("10GB", 10 << 30), ("10gb", 10 << 30), ("512m", 512 << 20), ("1.5GiB", 3 << 29),
    ("2k", 2048), ("3KiB", 3072), ("1T", 1 << 40), ("7b", 7), (" 8MB ", 8 << 20),
])
def test_sizes_as_docker(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GB", "-5", "12XB", "1.2.3GB", "10 G B", "ib", "5iB"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(UsageError, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0), ("24h", 86400.0), ("1h30m", 5400.0), ("90s", 90.0), ("1.5h", 5400.0), ("500ms", 0.5),
    ("2h45m30s", 9930.0), ("0s", 0.0), ("100us", 1e-4),
])
def test_durations_as_go(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "24", "1d", "h", "-1h", "1h 30m", "soon", "1hh"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration(text)


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 1_234_567, 10 << 30)] == ["0B", "999B", "1.0kB", "1.2MB", "10.7GB"]


def rec(kind: str, rid: str, size: int, used: float, *, in_use: bool = False, parent: str = "",
        image: bool = False) -> Record:
    return Record(kind, rid, size, used, in_use, "", parent=parent, image=image)


def test_filters_by_buildx_type_polyarch_kind_id_and_until() -> None:
    assert set(BUILDX_TYPES["regular"]) | set(BUILDX_TYPES["exec.cachemount"]) | set(BUILDX_TYPES["internal"]) \
        == set(KINDS)
    snap, mount, blob = rec("snapshot", "abc1", 1, 100.0), rec("cachemount", "def2", 1, 900.0), rec("blob", "f", 1, 0)
    flt = parse_filters(["type=regular"])
    assert [r.id for r in (snap, mount, blob) if flt.match(r, 1000.0)] == ["abc1"]
    flt = parse_filters(["type=exec.cachemount", "type=snapshot"])  # one key twice: either
    assert [r.id for r in (snap, mount, blob) if flt.match(r, 1000.0)] == ["abc1", "def2"]
    flt = parse_filters(["until=5m"])  # used at least 300 s before now
    assert [r.id for r in (snap, mount, blob) if flt.match(r, 1000.0)] == ["abc1", "f"]
    flt = parse_filters(["type=regular", "until=20m"])  # different keys: both
    assert [r.id for r in (snap, mount, blob) if flt.match(r, 1000.0)] == []
    assert [r.id for r in (snap, mount, blob) if parse_filters(["id=de"]).match(r, 1000.0)] == ["def2"]
    assert parse_filters([]).empty and not parse_filters(["type=source.local"]).empty
    assert not [r for r in (snap, mount, blob) if parse_filters(["type=source.local"]).match(r, 1000.0)]


@pytest.mark.parametrize("value", ["until", "until=", "=1h", "colour=red", "type=layer", "until=1h,type=regular"])
def test_bad_filters(value: str) -> None:
    with pytest.raises(UsageError):
        parse_filters([value])
    with pytest.raises(UsageError, match="until given twice"):
        parse_filters(["until=1h", "until=2h"])


def test_keep_storage_deletes_least_recently_used_first_with_the_snapshots_stacked_on_them() -> None:
    records = [
        rec("result", "r-old", 100, 10.0),
        rec("snapshot", "s-base", 50, 20.0),
        rec("snapshot", "s-child", 70, 90.0, parent="s-base"),
        rec("result", "r-new", 100, 80.0),
        rec("cachemount", "c-busy", 500, 1.0, in_use=True),
        rec("blob", "image-blob", 10_000, 0.0, in_use=True, image=True),
        rec("metadata", "metadata", 999, 0.0, in_use=True),
    ]
    assert cache_total(records) == 820  # no image blob, no metadata
    chosen = select(records, RecordFilter(), keep_storage=700, now=100.0)
    assert [r.id for r in chosen] == ["r-old", "s-base", "s-child"]  # 820-100-50-70 = 600 <= 700
    assert [r.id for r in select(records, RecordFilter(), keep_storage=820, now=100.0)] == []
    everything = select(records, RecordFilter(), keep_storage=None, now=100.0)
    assert {r.id for r in everything} == {"r-old", "s-base", "s-child", "r-new"}  # never what is in use
    assert [r.id for r in select(records, RecordFilter(until=50.0), keep_storage=0, now=100.0)] == \
        ["r-old", "s-base", "s-child"]  # the child goes with its base although it is younger


def test_only_the_mounts_module_names_the_cache_mount_dir() -> None:
    """``worker/mounts.py`` alone builds paths under ``<root>/cache-mounts``; du and prune ask it."""
    owners = set()
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith("cache-mounts")
               for n in ast.walk(tree)):
            owners.add(str(path.relative_to(SRC)))
    assert owners == {"worker/mounts.py"}
