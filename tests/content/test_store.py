import io
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from polyarch.content.store import ContentStore
from polyarch.digest import Digest
from polyarch.errors import DigestMismatch, LimitExceeded, NotFound, StoreError


def test_layout_files(tmp_path: Path) -> None:
    s = ContentStore(tmp_path / "r")
    assert (s.root / "oci-layout").read_bytes() == b'{"imageLayoutVersion":"1.0.0"}'
    assert b'"manifests":[]' in (s.root / "index.json").read_bytes()


def test_ingest_and_read(tmp_path: Path) -> None:
    s = ContentStore(tmp_path)
    data = os.urandom(3 << 20)
    d, n = s.ingest(io.BytesIO(data))
    assert d == Digest.of(data) and n == len(data)
    assert s.read(d) == data
    assert (d, n) in list(s.list())
    assert s.delete(d) and not s.has(d)


def test_mismatch_leaves_nothing(tmp_path: Path) -> None:
    s = ContentStore(tmp_path)
    wrong = Digest.of(b"other")
    with pytest.raises(DigestMismatch):
        s.ingest(io.BytesIO(b"data"), expected=wrong)
    with pytest.raises(DigestMismatch):
        s.ingest(io.BytesIO(b"data"), expected=Digest.of(b"data"), size=3)
    assert list(s.list()) == []
    assert list((s.root / "ingest").iterdir()) == []


def test_limit(tmp_path: Path) -> None:
    s = ContentStore(tmp_path)
    with pytest.raises(LimitExceeded):
        s.ingest(io.BytesIO(b"x" * 1000), limit=100)
    assert list(s.list()) == []


def test_sha512(tmp_path: Path) -> None:
    s = ContentStore(tmp_path)
    d = Digest.of(b"hello", "sha512")
    assert s.ingest(io.BytesIO(b"hello"), expected=d) == (d, 5)
    assert s.blob_path(d).parent.name == "sha512"


def test_missing_blob(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        ContentStore(tmp_path).open(Digest.of(b"nope"))


def test_concurrent_ingest_same_blob(tmp_path: Path) -> None:
    s = ContentStore(tmp_path)
    data = os.urandom(1 << 20)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: s.ingest(io.BytesIO(data)), range(16)))
    assert len(set(results)) == 1
    assert s.read(results[0][0]) == data


def test_concurrent_processes_ingest_same_blob(tmp_path: Path) -> None:
    src = tmp_path / "blob"
    src.write_bytes(os.urandom(8 << 20))
    code = ("import sys; from polyarch.content.store import ContentStore; "
            "s = ContentStore(sys.argv[1]); print(s.ingest(open(sys.argv[2], 'rb'))[0])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "r"), str(src)], stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outs = {p.communicate()[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert outs == {str(Digest.of(src.read_bytes()))}
    assert ContentStore(tmp_path / "r").read(Digest.of(src.read_bytes()), limit=1 << 30) == src.read_bytes()


def test_unwritable_root(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError) as info:
        ContentStore(tmp_path / "file" / "store")
    assert "cannot initialise" in info.value.message


def test_sigkill_mid_ingest_leaves_no_blob(tmp_path: Path) -> None:
    """A writer killed while ingesting a large blob leaves nothing under the digest; a retry succeeds."""
    root = tmp_path / "r"
    size = 256 << 20
    # The child streams pseudo-random bytes slowly so we can kill it mid-way; the digest is known up front.
    code = (
        "import sys, hashlib, time\n"
        "from polyarch.content.store import ContentStore\n"
        "s = ContentStore(sys.argv[1])\n"
        "class Slow:\n"
        "    def __init__(self): self.n = 0\n"
        "    def read(self, k=-1):\n"
        "        if self.n >= %d: return b''\n"
        "        self.n += 1 << 20\n"
        "        if self.n == 16 << 20: print('midway', flush=True); time.sleep(30)\n"
        "        return bytes([self.n >> 20 & 255]) * (1 << 20)\n"
        "s.ingest(Slow())\n" % size
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "midway"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = ContentStore(root)
    assert list(store.list()) == []
    leftovers = list(store.ingest_dir.iterdir())
    assert leftovers, "the killed ingest leaves only a temp file"

    class Gen(io.RawIOBase):
        def __init__(self) -> None:
            self.n = 0

        def readable(self) -> bool:
            return True

        def read(self, k: int = -1) -> bytes:
            if self.n >= size:
                return b""
            self.n += 1 << 20
            return bytes([self.n >> 20 & 255]) * (1 << 20)

    digest, n = store.ingest(Gen())  # type: ignore[arg-type]
    assert n == size and store.stat(digest) == size
    assert store.clean_ingest(older_than=0) >= 1
    assert list(store.ingest_dir.iterdir()) == []


def test_corrupt_gzip_is_an_invalid_layer() -> None:
    import gzip

    from polyarch.content.compression import decompressed
    from polyarch.errors import InvalidLayer

    data = bytearray(gzip.compress(os.urandom(1000) + b"hello world" * 10000))
    for i in range(20, 60):
        data[i] ^= 0xFF
    with pytest.raises(InvalidLayer):
        decompressed(io.BytesIO(bytes(data))).read()


def test_private_store_is_closed_and_tightened_once(tmp_path: Path) -> None:
    """The store (``private=True``, what the CLI opens) is 0700 when new, an old 0755 one is closed on first use,
    and a store already right costs no chmod (its ctime stays); any other layout keeps its mode."""
    import stat

    root = tmp_path / "store"
    ContentStore(root, private=True)
    assert [stat.S_IMODE(os.stat(p).st_mode) for p in (root, root / "ingest")] == [0o700, 0o700]
    for p in (root, root / "ingest"):
        os.chmod(p, 0o755)
    ContentStore(root, create=False, private=True)
    assert [stat.S_IMODE(os.stat(p).st_mode) for p in (root, root / "ingest")] == [0o700, 0o700]
    before = os.stat(root).st_ctime_ns
    ContentStore(root, private=True)
    assert os.stat(root).st_ctime_ns == before
    layout = tmp_path / "layout"
    ContentStore(layout)
    assert stat.S_IMODE(os.stat(layout).st_mode) == 0o755 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_nested_transactions_with_equal_contents_each_close_their_own(tmp_path: Path) -> None:
    """Two open transactions whose lists are equal (both empty): closing the inner one must not close the outer
    one, or a later failure would leave the outer's blobs behind."""
    store = ContentStore(tmp_path / "store")
    with pytest.raises(RuntimeError), store.transaction():
        with store.transaction():
            pass  # closes while the outer list is equal to its own (both empty)
        digest, _ = store.write(b"written after the inner transaction closed")
        raise RuntimeError("fail the outer transaction")
    assert not store.has(digest)
