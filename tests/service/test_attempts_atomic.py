"""The lockout's count-and-decide is atomic on both backends: 16 parallel impostor attempts, each
on its own connection, get at most the limit admitted. A variant that checks before it counts
(two statements, no lock) lets more through, which shows the test would catch the bug."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from tests.service.conftest import new_database

from facegate.storage.base import AttemptPolicy
from facegate.storage.postgres import PostgresStore
from facegate.storage.sql import SQLStore
from facegate.storage.sqlite import SQLiteStore

POLICY = AttemptPolicy(max_failures=5, window_s=180, lock_s=1800)
PARALLEL = 16


class CheckThenAct:
    """The bug this guards against: the decision read outside the transaction that counts."""

    def begin_attempt(self, tenant_id, subject_id, attempt_id, kind, now, policy):
        store: SQLStore = self  # type: ignore[assignment]
        db = store._db()
        n = db.execute(
            "SELECT COUNT(*) AS n FROM attempts WHERE tenant_id=? AND subject_id=? AND at>=?",
            (tenant_id, subject_id, now - policy.window_s),
        ).fetchone()["n"]
        time.sleep(0.05)  # the work between the check and the write (scoring a face)
        if n >= policy.max_failures:
            return 1.0, False
        with store.tx() as tx:
            tx.execute(
                "INSERT INTO attempts (tenant_id, subject_id, id, kind, at) VALUES (?, ?, ?, ?, ?)",
                (tenant_id, subject_id, attempt_id, kind, now),
            )
        return 0.0, False


class RacySQLite(CheckThenAct, SQLiteStore):
    pass


class RacyPostgres(CheckThenAct, PostgresStore):
    pass


def make_store(kind: str, racy: bool, tmp_path: Path, request) -> SQLStore:
    if kind == "sqlite":
        return (RacySQLite if racy else SQLiteStore)(tmp_path / "a.sqlite3")
    url = new_database(request.getfixturevalue("postgres_server"))
    return (RacyPostgres if racy else PostgresStore)(url)


def seed(store: SQLStore) -> None:
    """A tenant and a subject for the attempts to point at (foreign keys hold elsewhere)."""
    with store.tx() as db:
        db.execute("INSERT INTO tenants VALUES ('t', 't', 0, 1, ?, ?, 1, '{}')", (b"x", b"x"))
        db.execute("INSERT INTO subjects VALUES ('t', 's', NULL, 0, 0, NULL)")


def admitted_in_parallel(store: SQLStore) -> int:
    admitted: list[str] = []
    barrier = threading.Barrier(PARALLEL)
    lock = threading.Lock()

    def attempt(i: int) -> None:
        barrier.wait()
        wait, _ = store.begin_attempt("t", "s", f"a{i}", "pending", time.time(), POLICY)
        if wait == 0:
            with lock:
                admitted.append(f"a{i}")
            store.settle_attempt("t", "s", f"a{i}", False, time.time(), POLICY)
        store.close()  # this thread's connection

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(PARALLEL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return len(admitted)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_parallel_attempts_never_pass_the_limit(kind: str, tmp_path: Path, request) -> None:
    store = make_store(kind, racy=False, tmp_path=tmp_path, request=request)
    seed(store)
    assert admitted_in_parallel(store) <= POLICY.max_failures
    state = store.lock_state("t", "s")
    assert state.locked_until is not None and state.locked_until > time.time() + 1700


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_check_catches_a_racy_store(kind: str, tmp_path: Path, request) -> None:
    store = make_store(kind, racy=True, tmp_path=tmp_path, request=request)
    seed(store)
    assert admitted_in_parallel(store) > POLICY.max_failures


def test_a_lock_outlasts_the_counting_window(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "b.sqlite3")
    seed(store)
    now = 1000.0
    for i in range(5):
        assert store.begin_attempt("t", "s", f"x{i}", "pending", now + i, POLICY) == (0.0, False)
        locked = store.settle_attempt("t", "s", f"x{i}", False, now + i, POLICY)
    assert locked
    # past the 180 s window, still inside the 1800 s lock counted from the last failure
    wait, _ = store.begin_attempt("t", "s", "late", "pending", now + 4 + 190, POLICY)
    assert wait == pytest.approx(1800 - 190)
    wait, _ = store.begin_attempt("t", "s", "after", "pending", now + 4 + 1801, POLICY)
    assert wait == 0.0


class SelectThenUpdate:
    """The double spend issue 16 found: read the session, then mark it used, unconditionally."""

    def take_liveness_session(self, tenant_id, session_id, subject_id, purposes, now):
        store: SQLStore = self  # type: ignore[assignment]
        r = (
            store._db()
            .execute(
                "SELECT * FROM liveness_sessions WHERE tenant_id=? AND id=? AND used_at IS NULL",
                (tenant_id, session_id),
            )
            .fetchone()
        )
        time.sleep(0.05)
        if r is None:
            return None
        with store.tx() as db:
            db.execute(
                "UPDATE liveness_sessions SET used_at=? WHERE tenant_id=? AND id=?",
                (now, tenant_id, session_id),
            )
        return r


class RacySessionsSQLite(SelectThenUpdate, SQLiteStore):
    pass


class RacySessionsPostgres(SelectThenUpdate, PostgresStore):
    pass


def spends_in_parallel(store: SQLStore) -> int:
    store.add_liveness_session(
        "t", "ls1", True, "space", b"sealed", {}, time.time() + 60, "s", "verify"
    )
    spent: list[int] = []
    barrier = threading.Barrier(PARALLEL)
    lock = threading.Lock()

    def take() -> None:
        barrier.wait()
        if store.take_liveness_session("t", "ls1", "s", ("verify",), time.time()) is not None:
            with lock:
                spent.append(1)
        store.close()

    threads = [threading.Thread(target=take) for _ in range(PARALLEL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return len(spent)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_liveness_session_is_spent_once(kind: str, tmp_path: Path, request) -> None:
    if kind == "sqlite":
        real, racy = SQLiteStore(tmp_path / "s.sqlite3"), RacySessionsSQLite(tmp_path / "r.sqlite3")
    else:
        real = PostgresStore(new_database(request.getfixturevalue("postgres_server")))
        racy = RacySessionsPostgres(new_database(request.getfixturevalue("postgres_server")))
    assert spends_in_parallel(real) == 1
    assert spends_in_parallel(racy) > 1  # the test sees a double spend when there is one
