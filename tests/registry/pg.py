"""A throwaway PostgreSQL 15 cluster on loopback for the registry's metadata tests (Debian's ``postgresql-15``).

``initdb`` (trust authentication, no fsync: a test cluster) into a private directory owned by the ``postgres``
user (initdb refuses root), ``pg_ctl start`` on a free 127.0.0.1 port with its socket in the same directory; about
a second. ``Postgres.database()`` makes a fresh database per test; ``stop()``/``start()`` stop and restart the
same cluster (same port, same data) for fault tests.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BIN", "Postgres", "available", "start_postgres"]

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "postgres"


def available() -> bool:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return False
    return (BIN / "initdb").exists() and (BIN / "pg_ctl").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    entry = pwd.getpwnam(USER)

    def drop() -> None:
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, preexec_fn=drop, cwd="/",
                          env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}, check=False)


@dataclass
class Postgres:
    dir: Path
    port: int

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        out = _as_user([str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "60",
                        "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                              "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
                        "start"])
        if out.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {out.stdout}{out.stderr}{self._log()}")

    def stop(self, mode: str = "fast") -> None:
        _as_user([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def _log(self) -> str:
        try:
            return (self.dir / "log").read_text()[-1500:]
        except OSError:
            return ""

    def database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def start_postgres() -> Postgres:
    """Initialise and start a cluster (the caller stops it with ``destroy``)."""
    folder = Path(tempfile.mkdtemp(prefix="polyarch-pg-"))  # not under pytest's root-only temp directory
    entry = pwd.getpwnam(USER)
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    pg = Postgres(folder, _free_port())
    out = _as_user([str(BIN / "initdb"), "-D", str(pg.data), "-U", USER, "--auth=trust", "--no-sync",
                    "-E", "UTF8", "--locale=C.UTF-8"])
    if out.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {out.stdout}{out.stderr}")
    started = time.monotonic()
    pg.start()
    assert time.monotonic() - started < 60
    return pg
