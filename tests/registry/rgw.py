"""A throwaway single-node Ceph cluster with a RADOS Gateway (S3) on loopback, for the registry's s3 driver tests.

One mon, one OSD on ``memstore`` (nothing on disk but the mon's store), ``auth none``, pool size 1, and the settings
that make it start in seconds and reliably: ``osd crush update on start = false`` and ``osd class update on start =
false`` (else a start-up race fails the OSD about half the time), ``paxos propose interval = 0.05`` (else ~15 s to the
first PUT), msgr v1 only on 127.0.0.1, beast on 127.0.0.1, ``rgw gc obj min wait = 0``. The S3 user comes from
``radosgw-admin user create``. Needs Debian's ``ceph-mon ceph-osd radosgw`` (scripts/setup.sh installs them).

``Rgw.stop_gateway()``/``start_gateway()`` stop and restart only radosgw (same port, same data) for fault tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = ["Rgw", "available", "start_rgw"]

BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool")


def available() -> bool:
    return all(shutil.which(b) for b in BINARIES)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Rgw:
    dir: Path
    port: int
    access_key: str
    secret_key: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def conf(self) -> Path:
        return self.dir / "ceph.conf"

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.dir / f"{name}.out", "ab")
        try:
            self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                start_new_session=True)
        finally:
            log.close()

    def start_gateway(self, timeout: float = 60.0) -> None:
        self._spawn("rgw", ["radosgw", "-f", "-c", str(self.conf), "-n", "client.rgw"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs["rgw"].poll() is not None:
                raise RuntimeError(f"radosgw exited: {self._tail('rgw')}")
            try:
                if httpx.get(self.endpoint, timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"radosgw did not answer within {timeout}s: {self._tail('rgw')}")

    def stop_gateway(self) -> None:
        self._stop("rgw")

    def _stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _tail(self, name: str) -> str:
        try:
            return (self.dir / f"{name}.out").read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def stop(self) -> None:
        for name in ("rgw", "osd", "mon"):
            self._stop(name)


def _conf(d: Path, fsid: str, mon_port: int, rgw_port: int) -> str:
    return f"""[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{mon_port}
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
osd crush update on start = false
osd class update on start = false
mon allow pool size one = true
mon warn on pool no redundancy = false
paxos propose interval = 0.05
run dir = {d}/run
log file = {d}/log/$name.log
pid file = {d}/run/$name.pid
admin socket = {d}/run/$name.asok
[mon.a]
mon data = {d}/mon
public addr = v1:127.0.0.1:{mon_port}
[osd.0]
osd objectstore = memstore
osd data = {d}/osd
memstore device bytes = 4294967296
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {d}/rgw
rgw gc obj min wait = 0
rgw dns name = 127.0.0.1
"""


def _run(argv: list[str], d: Path, timeout: float = 60.0) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({res.returncode}): {res.stderr[-1500:]}")
    return res.stdout


def start_rgw(d: Path, timeout: float = 90.0) -> Rgw:
    """Create and start the cluster under ``d`` (stopped with ``Rgw.stop``)."""
    for sub in ("run", "log", "mon", "osd", "rgw"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    fsid = str(uuid.uuid4())
    mon_port, rgw_port = _free_port(), _free_port()
    rgw = Rgw(d, rgw_port, "", "")
    rgw.conf.write_text(_conf(d, fsid, mon_port, rgw_port))
    conf = str(rgw.conf)
    try:
        _run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a", f"[v1:127.0.0.1:{mon_port}]",
              str(d / "monmap")], d)
        _run(["ceph-mon", "-c", conf, "-i", "a", "--mkfs", "--monmap", str(d / "monmap")], d)
        rgw._spawn("mon", ["ceph-mon", "-f", "-c", conf, "-i", "a"])
        osd_uuid = str(uuid.uuid4())
        deadline = time.monotonic() + 30
        while True:  # the mon answers once it has formed its quorum of one
            try:
                _run(["ceph", "-c", conf, "--connect-timeout", "5", "osd", "new", osd_uuid, "0"], d)
                break
            except RuntimeError:
                if time.monotonic() > deadline or rgw.procs["mon"].poll() is not None:
                    raise
                time.sleep(0.1)
        _run(["ceph-osd", "-c", conf, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid], d)
        rgw._spawn("osd", ["ceph-osd", "-f", "-c", conf, "-i", "0"])
        deadline = time.monotonic() + 30
        while True:  # under load the mon may answer EPERM ("problem getting command descriptions") at first
            try:
                _run(["ceph", "-c", conf, "--connect-timeout", "5", "osd", "crush", "add", "osd.0", "1.0",
                      "host=localhost", "root=default"], d)
                break
            except RuntimeError:
                if time.monotonic() > deadline or rgw.procs["mon"].poll() is not None:
                    raise
                time.sleep(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stat = json.loads(_run(["ceph", "-c", conf, "osd", "stat", "-f", "json"], d))
            if stat.get("num_up_osds", stat.get("osdmap", {}).get("num_up_osds", 0)) >= 1:
                break
            if rgw.procs["osd"].poll() is not None:
                raise RuntimeError(f"ceph-osd exited: {rgw._tail('osd')}")
            time.sleep(0.1)
        else:
            raise RuntimeError(f"osd.0 did not come up: {rgw._tail('osd')}")
        rgw.start_gateway(timeout=max(deadline - time.monotonic(), 5.0))
        user = json.loads(_run(["radosgw-admin", "-c", conf, "-n", "client.rgw", "user", "create",
                                "--uid", "polyarch", "--display-name", "polyarch tests"], d))
        key = user["keys"][0]
        rgw.access_key, rgw.secret_key = key["access_key"], key["secret_key"]
    except BaseException:
        rgw.stop()
        raise
    return rgw


if __name__ == "__main__":  # manual use: python3 tests/registry/rgw.py DIR
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/rgw-manual")
    t0 = time.monotonic()
    r = start_rgw(target)
    print(json.dumps({"endpoint": r.endpoint, "access_key": r.access_key, "secret_key": r.secret_key,
                      "seconds": round(time.monotonic() - t0, 2), "pids": {k: p.pid for k, p in r.procs.items()}}))
    sys.stdout.flush()
    os._exit(0)
