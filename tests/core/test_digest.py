import hashlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyarch.digest import Digest, VerifyingReader, hash_file
from polyarch.errors import DigestMismatch, InvalidDigest

GOOD = "sha256:" + "a" * 64


@pytest.mark.parametrize("text", [
    "sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha256:" + "a" * 65, "md5:" + "a" * 32, "sha256:../../x",
    "", "sha256:", "sha256:baddigeststring", "sha512:" + "a" * 64, "SHA256:" + "a" * 64, "sha256" + "a" * 64,
    "sha256:" + "g" * 64,
])
def test_rejects_bad_syntax(text: str) -> None:
    with pytest.raises(InvalidDigest):
        Digest.parse(text)


def test_accepts_sha256_and_sha512() -> None:
    assert str(Digest.parse(GOOD)) == GOOD
    d = Digest.parse("sha512:" + "0" * 128)
    assert d.algorithm == "sha512" and len(d.hex) == 128


def test_of_matches_hashlib() -> None:
    assert Digest.of(b"abc").hex == hashlib.sha256(b"abc").hexdigest()
    assert Digest.of(b"abc", "sha512").hex == hashlib.sha512(b"abc").hexdigest()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parse_never_raises_anything_else(text: str) -> None:
    try:
        d = Digest.parse(text)
    except InvalidDigest:
        return
    assert str(d) == text


def test_verifying_reader_checks_content_and_size() -> None:
    data = b"x" * 10000
    d = Digest.of(data)
    r = VerifyingReader(io.BytesIO(data), d, len(data))
    while r.read(999):
        pass
    with pytest.raises(DigestMismatch):
        r = VerifyingReader(io.BytesIO(data[:-1] + b"y"), d, len(data))
        while r.read(999):
            pass
    with pytest.raises(DigestMismatch):
        r = VerifyingReader(io.BytesIO(data + b"more"), d, len(data))
        while r.read(999):
            pass


def test_hash_file(tmp_path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"hello" * 100000)
    d, n = hash_file(p)
    assert n == 500000 and d == Digest.of(p.read_bytes())
