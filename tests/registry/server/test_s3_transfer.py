"""The s3 driver's transfer paths against a real Ceph RGW (tests/registry/rgw.py): a streamed GET is one ranged
GetObject (exact bytes, a missing blob failing before the answer starts), a session's tail of at least
one S3 part uploaded as a part (no tail object) and resumed by another process, and a verified session published
by one server-side CopyObject (no UploadPartCopy)."""

from __future__ import annotations

import os
import uuid
from typing import Any

import boto3
import botocore.config
import pytest
from tests.registry.rgw import Rgw

from polyarch.digest import Digest
from polyarch.errors import NotFound
from polyarch.registry.server.storage.s3 import MIN_PART, S3Options, S3Storage


@pytest.fixture
def storage(rgw: Rgw) -> S3Storage:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=rgw.endpoint, aws_access_key_id=rgw.access_key,
                 aws_secret_access_key=rgw.secret_key, region_name="us-east-1",
                 config=botocore.config.Config(s3={"addressing_style": "path"})).create_bucket(Bucket=bucket)
    return _storage(rgw, bucket)


def _storage(rgw: Rgw, bucket: str, part: int = MIN_PART) -> S3Storage:
    return S3Storage(S3Options(bucket=bucket, regionendpoint=rgw.endpoint, accesskey=rgw.access_key,
                               secretkey=rgw.secret_key, secure=False, forcepathstyle=True, rootdirectory="reg",
                               part_size=part))


def _keys(storage: S3Storage) -> list[str]:
    res = storage.client.list_objects_v2(Bucket=storage.bucket)
    return [o["Key"] for o in res.get("Contents", [])]


def _calls(storage: S3Storage) -> list[str]:
    seen: list[str] = []

    def record(model: Any, **_: Any) -> None:
        seen.append(model.name)

    storage.client.meta.events.register("before-call.s3", record)
    return seen


def test_streamed_read_is_one_ranged_get(storage: S3Storage) -> None:
    data = os.urandom(1_000_003)
    digest = Digest.of(data)
    storage.write(data, digest)
    calls = _calls(storage)
    f = storage.open(digest, 1000, 700_000)
    got = bytearray()
    try:
        while chunk := f.read(100_000):
            assert len(chunk) <= 100_000
            got += chunk
    finally:
        f.close()
    assert bytes(got) == data[1000:701_000]
    assert calls == ["GetObject"]
    with pytest.raises(NotFound):  # before any byte is answered
        storage.open(Digest.of(b"missing"), 0, 10)


def test_big_tail_is_a_part_and_resumes_elsewhere(rgw: Rgw, storage: S3Storage) -> None:
    storage = _storage(rgw, storage.bucket, part=2 * MIN_PART)
    data = os.urandom(3 * MIN_PART + 1234 + 100)
    first = data[:3 * MIN_PART + 1234]
    up = storage.begin("s1")
    up.append([first])
    state = up.flush()  # one full part at append, the rest (>= 5 MiB) as a smaller second part at flush
    assert not [k for k in _keys(storage) if "/tail-" in k]
    assert '"tail": 0' in state
    other = _storage(rgw, storage.bucket)  # another process
    resumed = other.resume("s1", len(first), state)
    resumed.append([data[len(first):]])
    resumed.flush()  # a small tail: an object of its own
    assert [k for k in _keys(storage) if "/tail-" in k]
    assert resumed.complete(Digest.of(data), verified=False)  # hashed from the stored object
    f = other.open(Digest.of(data), 0, len(data))
    assert b"".join(iter(lambda: f.read(1 << 20), b"")) == data
    f.close()
    assert not [k for k in _keys(storage) if "/_uploads/" in k]
    wrong = other.begin("s2")
    wrong.append([data])
    assert not wrong.complete(Digest.of(b"other"), verified=False)  # not published
    assert other.stat(Digest.of(b"other")) is None


def test_verified_session_is_published_by_one_copy(storage: S3Storage) -> None:
    data = os.urandom(3 * MIN_PART + 10)
    up = storage.begin("s3")
    up.append([data])
    calls = _calls(storage)
    digest = Digest.of(data)
    assert up.complete(digest, verified=True)
    assert "CopyObject" in calls and "UploadPartCopy" not in calls
    assert "GetObject" not in calls  # hashed while streaming in: not read back
    assert storage.stat(digest) == len(data)


def test_failed_save_keeps_the_recorded_tail(rgw: Rgw, storage: S3Storage) -> None:
    data = os.urandom(3000)

    def tails() -> list[str]:
        return sorted(k.rsplit("/", 1)[1] for k in _keys(storage) if "/tail-" in k)

    up = storage.begin("s4")
    up.checkpoint()
    up.append([data[:1000]])
    recorded = up.flush()  # saved: the row refers to tail-1000
    cp = up.checkpoint()
    up.append([data[1000:2000]])
    up.flush()
    up.rollback(cp)  # … but recording this request's state failed
    resumed = _storage(rgw, storage.bucket).resume("s4", 1000, recorded)  # another replica: the row is whole
    assert bytes(resumed.buffer) == data[:1000]
    up.checkpoint()
    up.append([data[1000:]])
    up.flush()  # tail-2000 (never recorded) goes; tail-1000 stays until this state is recorded
    assert tails() == ["tail-1000", "tail-3000"]
    up.checkpoint()
    up.flush()
    assert tails() == ["tail-3000"]
    assert up.complete(Digest.of(data), verified=False)
    assert not [k for k in _keys(storage) if "/_uploads/" in k]


def test_bodies_are_signed_over_plain_http(storage: S3Storage) -> None:
    """Over http the signature is the only check the store makes on a body: every upload (PutObject and
    UploadPart) carries its SHA-256, never UNSIGNED-PAYLOAD."""
    sent: list[str] = []

    def record(request: Any, **_: Any) -> None:
        if request.method == "PUT":
            value = request.headers.get("X-Amz-Content-SHA256")
            sent.append(value.decode() if isinstance(value, bytes) else str(value))

    storage.client.meta.events.register("before-send.s3", record)
    small = os.urandom(1000)
    storage.write(small, Digest.of(small))
    up = storage.begin(uuid.uuid4().hex)
    up.append([os.urandom(MIN_PART + 1000)])
    up.flush()
    up.abort()
    assert len(sent) >= 2 and all(len(h) == 64 and h != "UNSIGNED-PAYLOAD" for h in sent), sent


def test_https_endpoints_skip_the_second_hash() -> None:
    tls = S3Storage(S3Options(bucket="b", regionendpoint="https://s3.example.invalid", accesskey="a", secretkey="s",
                              secure=True, forcepathstyle=True))
    plain = S3Storage(S3Options(bucket="b", regionendpoint="s3.example.invalid:7480", accesskey="a", secretkey="s",
                                secure=False, forcepathstyle=True))
    assert tls.client.meta.config.s3["payload_signing_enabled"] is False
    assert plain.client.meta.config.s3["payload_signing_enabled"] is True
