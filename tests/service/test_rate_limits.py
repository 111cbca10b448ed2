"""Rate limits that hold across workers: the shared bucket stores under two processes (SQLite and
PostgreSQL), a deliberately non-atomic store to prove the concurrency test catches the bug, and
the policy over real HTTP (per key, per capture link, per address, failed authentications)."""

from __future__ import annotations

import multiprocessing
import shutil
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.service import conftest
from tests.service.conftest import new_database, start_server, stop_server

from facegate.settings import Settings
from facegate.storage.ratelimit import (
    PG_TABLE,
    PostgresRateStore,
    RateStore,
    SQLiteRateStore,
    refill,
)
from facegate.web.app import create_app

RATE, BURST, SECONDS = 10.0, 5.0, 1.0  # per second; a bound of about 15 in the hammering run
WINDOW_S = 0.002  # a pause between reading and writing a bucket, to widen any race


class SlowSQLiteRateStore(SQLiteRateStore):
    """The real SQLite store, pausing after each read: the pause is inside the transaction, so
    the bound must still hold."""

    def read(self, db: Any, key: str) -> tuple[float, float] | None:
        row = super().read(db, key)
        time.sleep(WINDOW_S)
        return row


class RacySQLiteRateStore(SlowSQLiteRateStore):
    """The bug: the same read-modify-write without ``BEGIN IMMEDIATE``."""

    def take(
        self, key: str, rate_per_s: float, burst: float, now: float, cost: float = 1.0
    ) -> float:
        db = self._db()
        tokens, last = self.read(db, key) or (burst, now)
        left, wait = refill(tokens, last, now, rate_per_s, burst, cost)
        self.write(db, key, left, max(last, now))
        return wait


class RacyPostgresRateStore(PostgresRateStore):
    """The bug on PostgreSQL: SELECT, then a separate write (no single statement, no lock)."""

    def take(
        self, key: str, rate_per_s: float, burst: float, now: float, cost: float = 1.0
    ) -> float:
        db = self._db()
        row = db.execute(
            f"SELECT tokens, updated FROM {PG_TABLE} WHERE key = %s", (key,)
        ).fetchone()
        time.sleep(WINDOW_S)
        tokens, last = row or (burst, now)
        left, wait = refill(tokens, last, now, rate_per_s, burst, cost)
        db.execute(
            f"INSERT INTO {PG_TABLE} (key, tokens, updated, allowed) VALUES (%s, %s, %s, TRUE) "
            "ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated",
            (key, left, max(last, now)),
        )
        return wait


def _hammer(store: RateStore, go: Any, out: Any) -> None:
    """One worker: take from the same bucket as fast as it can for SECONDS."""
    go.wait()
    first = time.time()
    admitted, last = 0, first
    while time.time() - first < SECONDS:
        last = time.time()
        admitted += store.take("shared", RATE, BURST, last) == 0.0
    out.put((admitted, first, last))


def hammer(store: RateStore, workers: int = 2) -> tuple[int, float]:
    """(requests admitted by ``workers`` processes together, the bound burst + rate * elapsed)."""
    ctx = multiprocessing.get_context("fork")  # the store travels with the fork, not pickled
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(store, go, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    go.set()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    elapsed = max(r[2] for r in results) - min(r[1] for r in results)
    return sum(r[0] for r in results), BURST + RATE * elapsed


@pytest.fixture
def pg_url(postgres_server: str) -> str:
    return new_database(postgres_server)


def test_sqlite_store_holds_the_limit_across_two_processes(tmp_path: Path) -> None:
    admitted, bound = hammer(SlowSQLiteRateStore(tmp_path / "ratelimit.sqlite3"))
    print(f"sqlite: {admitted} admitted, bound {bound:.1f}")
    assert 0.8 * bound <= admitted <= bound + 1


def test_postgres_store_holds_the_limit_across_two_processes(pg_url: str) -> None:
    admitted, bound = hammer(PostgresRateStore(pg_url))
    print(f"postgres: {admitted} admitted, bound {bound:.1f}")
    assert 0.8 * bound <= admitted <= bound + 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_concurrency_test_catches_a_non_atomic_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Without the transaction (or the single statement) two workers spend the same tokens:
    the hammering run admits well over the bound, so the tests above would fail."""
    if backend == "sqlite":
        store: RateStore = RacySQLiteRateStore(tmp_path / "ratelimit.sqlite3")
    else:
        store = RacyPostgresRateStore(request.getfixturevalue("pg_url"))
    admitted, bound = hammer(store)
    print(f"racy {backend}: {admitted} admitted, bound {bound:.1f}")
    assert admitted > bound + 3


def test_the_postgres_statement_does_the_same_math_as_sqlite(pg_url: str, tmp_path: Path) -> None:
    """Take, ask, refund and refill against both stores: the same answers, to the microsecond."""
    steps = [(0.0, 1.0)] * 4 + [(0.0, 0.0), (0.1, 1.0), (0.1, -1.0), (0.1, 1.0), (0.2, 1.0)]
    steps += [(0.05, 1.0), (9.0, 0.0), (9.0, 1.0), (8.0, 1.0)]  # the clock steps back at the end
    answers = []
    for store in (SQLiteRateStore(tmp_path / "r.sqlite3"), PostgresRateStore(pg_url)):
        answers.append([round(store.take("k", 2.0, 3.0, 1000 + t, c), 6) for t, c in steps])
        store.close()
    assert answers[0] == answers[1]
    assert answers[0][:5] == [0.0, 0.0, 0.0, 0.5, 0.5]


# -- over HTTP -------------------------------------------------------------------------------------


@pytest.fixture
def limited(engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``limited(**settings)``: a server from ``start_server`` with these rate settings."""
    servers: list[conftest.Server] = []

    def start(
        store: RateStore | None = None, rate_per_minute: int = 10_000, **limits: Any
    ) -> conftest.Server:
        monkeypatch.setattr(conftest, "Settings", partial(Settings, **limits))
        monkeypatch.setattr(conftest, "create_app", partial(create_app, rate_store=store))
        folder = tmp_path / f"s{len(servers)}"
        if servers:  # machines of one deployment share the master keys
            (folder / "keys").mkdir(parents=True)
            shutil.copy(servers[0].key_file, folder / "keys" / "master.keys")
        servers.append(start_server(engine, folder, rate_per_minute=rate_per_minute))
        return servers[-1]

    yield start
    for s in servers:
        stop_server(s)


def assert_rate_limited(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1


def test_per_key_limit_answers_429_with_retry_after(limited: Any) -> None:
    s = limited(rate_per_minute=6)  # a burst of one, then one every 10 s
    with s.client() as c:
        assert c.get("/v1/tenant").status_code == 200
        r = c.get("/v1/tenant")
        assert_rate_limited(r)
        assert r.headers["Retry-After"] == "10"


def _capture_link(c: httpx.Client, subject: str) -> str:
    assert c.post("/v1/subjects", json={"subject_id": subject}).status_code == 201
    r = c.post("/v1/capture-links", json={"subject_id": subject, "flow": "verify"})
    assert r.status_code == 201, r.text
    return str(r.json()["capture_token"])


def test_capture_link_limit_is_per_link_and_leaves_room_for_a_capture(limited: Any) -> None:
    s = limited()  # the default: 30 a minute per link, bursts of 10
    with s.client() as c, httpx.Client(base_url=s.url) as page:
        token = _capture_link(c, "cap1")
        h = {"X-Capture-Token": token}
        flow = [("GET", "/v1/capture/info"), ("POST", "/v1/capture/consent")]
        flow += [("POST", "/v1/capture/challenge"), ("GET", "/v1/capture/info")] * 3
        assert [page.request(m, p, headers=h).status_code for m, p in flow] == [
            200,
            201,
            *[201, 200] * 3,
        ]
        codes = [page.get("/v1/capture/info", headers=h).status_code for _ in range(5)]
        assert codes[:2] == [200, 200] and codes[-1] == 429
        assert_rate_limited(page.get("/v1/capture/info", headers=h))
        other = {"X-Capture-Token": _capture_link(c, "cap2")}
        assert page.get("/v1/capture/info", headers=other).status_code == 200  # its own bucket


def test_an_anonymous_flood_from_one_address_is_refused(limited: Any) -> None:
    s = limited(address_rate_per_minute=60, auth_failures_per_minute=10_000)  # bursts of 10
    with s.client() as c:  # requests with a valid key spend their key's bucket, not the address's
        assert {c.get("/v1/tenant").status_code for _ in range(30)} == {200}
    with httpx.Client(base_url=s.url) as anon:
        start = time.time()
        codes = [anon.get("/v1/tenant").status_code for _ in range(40)]
        elapsed = time.time() - start
        assert codes.count(401) <= 10 + elapsed + 1 and codes[-1] == 429
        assert_rate_limited(anon.get("/"))  # every route, the capture page included
        assert anon.get("/healthz").status_code == 200  # the probe is never limited


def test_failed_authentications_are_limited_per_address(limited: Any) -> None:
    s = limited(auth_failures_per_minute=6)  # bursts of 3
    with httpx.Client(base_url=s.url) as anon:
        bad = {"Authorization": "Bearer fg_nope_guess"}
        assert [anon.get("/v1/tenant", headers=bad).status_code for _ in range(2)] == [401, 401]
        r = anon.get("/v1/capture/info", headers={"X-Capture-Token": "forged"})
        assert r.status_code == 401  # a forged capture token is a failure too
        assert_rate_limited(anon.get("/v1/tenant", headers=bad))
        # the address is throttled as a whole: a guesser cannot tell a right key from a wrong one
        assert_rate_limited(
            anon.get("/v1/tenant", headers={"Authorization": f"Bearer {s.admin_key}"})
        )


def test_two_servers_sharing_a_store_share_the_limit(limited: Any, tmp_path: Path) -> None:
    """Two "workers" (two apps, one bucket file): together they admit one address's limit."""
    store = SQLiteRateStore(tmp_path / "shared.sqlite3")
    limits = {"address_rate_per_minute": 60, "store": store}
    a, b = limited(**limits), limited(**limits)
    with httpx.Client() as anon:
        start = time.time()
        codes = [anon.get(f"{(a, b)[i % 2].url}/readyz").status_code for i in range(40)]
        elapsed = time.time() - start
    assert codes.count(200) <= 10 + elapsed + 1 and codes.count(429) >= 20
