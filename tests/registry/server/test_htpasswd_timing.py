"""Issue 13 item 12: htpasswd logins reveal no user names by timing, and a flood of bad logins cannot make a
valid (cached) login wait. Timings are relative (one path against another, or against one bcrypt verify on this
machine), never absolute."""

from __future__ import annotations

import base64
import statistics
import threading
import time
from pathlib import Path

import bcrypt
import httpx

from polyarch.registry.server.auth import Htpasswd

from .conftest import start_server


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _median_time(fn: object, *args: str, tries: int = 7) -> float:
    times = []
    for _ in range(tries):
        t = time.perf_counter()
        fn(*args)  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def test_item12_unknown_user_costs_as_much_as_a_wrong_password() -> None:
    users = Htpasswd({"alice": bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=9))})
    assert users.check("alice", "right") and not users.check("alice", "wrong") and not users.check("nobody", "x")
    samples: dict[str, list[float]] = {"nobody": [], "alice": []}
    for _ in range(9):  # interleaved, so a burst of load elsewhere hits both
        for user in samples:
            samples[user].append(_median_time(users.check, user, "wrong", tries=1))
    unknown, known = statistics.median(samples["nobody"]), statistics.median(samples["alice"])
    assert unknown >= 0.5 * known and known >= 0.5 * unknown, (unknown, known)
    # a cached success is cheap, and a wrong password is not served from the cache
    cached = _median_time(users.check, "alice", "right")
    assert cached < 0.2 * known, (cached, known)
    assert not users.check("alice", "right2")


def test_item12_dummy_hash_follows_the_users_cost() -> None:
    users = Htpasswd({"a": bcrypt.hashpw(b"x", bcrypt.gensalt(rounds=4)),
                      "b": bcrypt.hashpw(b"x", bcrypt.gensalt(rounds=9))})
    slow = _median_time(users.check, "b", "wrong", tries=3)
    unknown = _median_time(users.check, "nobody", "wrong", tries=3)
    assert unknown >= 0.5 * slow, (unknown, slow)


def test_item12_bad_login_flood_does_not_delay_a_cached_valid_login(tmp_path: Path) -> None:
    rounds = 11
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=rounds))
    (tmp_path / "htpasswd").write_bytes(b"alice:" + hashed + b"\n")
    one_verify = _median_time(bcrypt.checkpw, b"wrong", hashed, tries=3)  # type: ignore[arg-type]
    server = start_server(tmp_path / "store", "--htpasswd", str(tmp_path / "htpasswd"))
    try:
        url = f"{server.url}/v2/"
        assert httpx.get(url, headers=_basic("alice", "right")).status_code == 200  # now cached
        bad_status: list[int] = []
        started = threading.Barrier(61)

        def bad(i: int) -> None:
            with httpx.Client(timeout=120) as c:
                started.wait()
                r = c.get(url, headers=_basic("alice" if i % 2 else f"user{i}", f"wrong{i}"))
            bad_status.append(r.status_code)

        threads = [threading.Thread(target=bad, args=(i,)) for i in range(60)]
        for t in threads:
            t.start()
        started.wait()
        time.sleep(max(0.3, 2 * one_verify))  # the flood is in flight
        valid = []
        with httpx.Client() as c:
            for _ in range(5):
                t0 = time.perf_counter()
                assert c.get(url, headers=_basic("alice", "right")).status_code == 200
                valid.append(time.perf_counter() - t0)
        still_running = sum(t.is_alive() for t in threads)
        for t in threads:
            t.join(timeout=120)
        assert still_running > 0, "the flood was over before the valid logins: the test proves nothing"
        assert sorted(set(bad_status)) == [401], bad_status
        assert max(valid) < one_verify, (valid, one_verify)
    finally:
        server.stop()
