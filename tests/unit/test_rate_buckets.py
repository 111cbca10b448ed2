"""The token-bucket math and the SQLite bucket store in one process (the concurrency tests are in
tests/service/test_rate_limits.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from facegate.storage.ratelimit import (
    IDLE_AFTER_S,
    PRUNE_EVERY_S,
    SQLiteRateStore,
    bucket_key,
    refill,
)


def test_a_full_bucket_admits_its_burst_then_waits_for_the_rate() -> None:
    tokens, last, admitted = 5.0, 0.0, 0
    for _ in range(10):
        tokens, wait = refill(tokens, last, 0.0, rate_per_s=2.0, burst=5.0)
        admitted += wait == 0.0
    assert admitted == 5
    assert wait == pytest.approx(0.5)  # one token at 2/s
    tokens, wait = refill(tokens, 0.0, 0.5, rate_per_s=2.0, burst=5.0)
    assert wait == 0.0 and tokens == pytest.approx(0.0)


def test_refill_stops_at_the_burst_and_never_runs_backwards() -> None:
    tokens, wait = refill(0.0, 0.0, 3600.0, rate_per_s=1.0, burst=4.0)
    assert wait == 0.0 and tokens == pytest.approx(3.0)  # 4 (capped), one spent
    tokens, wait = refill(0.5, 100.0, 90.0, rate_per_s=1.0, burst=4.0)  # the clock stepped back
    assert tokens == pytest.approx(0.5) and wait == pytest.approx(0.5)


def test_asking_costs_nothing_and_a_denial_spends_nothing() -> None:
    assert refill(1.0, 0.0, 0.0, 1.0, 3.0, cost=0.0) == (1.0, 0.0)
    tokens, wait = refill(0.25, 0.0, 0.0, 1.0, 3.0)
    assert tokens == 0.25 and wait == pytest.approx(0.75)
    assert refill(0.0, 0.0, 0.0, 0.0, 3.0)[1] == float("inf")  # a zero rate never refills


def test_a_refund_gives_a_token_back_up_to_the_burst() -> None:
    assert refill(0.5, 0.0, 0.0, 1.0, 3.0, cost=-1.0) == (1.5, 0.0)
    assert refill(2.5, 0.0, 0.0, 1.0, 3.0, cost=-1.0) == (3.0, 0.0)


def test_bucket_keys_hold_no_raw_value_and_depend_on_the_secret() -> None:
    plain = bucket_key("addr", "192.0.2.7")
    keyed = bucket_key("addr", "192.0.2.7", b"k" * 32)
    assert plain.startswith("addr:") and "192.0.2.7" not in plain
    assert keyed != plain and len(keyed) == len("addr:") + 32
    assert bucket_key("addr", "192.0.2.7", b"k" * 32) == keyed


def test_sqlite_store_takes_and_persists_across_connections(tmp_path: Path) -> None:
    path = tmp_path / "ratelimit.sqlite3"
    a, b = SQLiteRateStore(path), SQLiteRateStore(path)
    assert [a.take("k", 1.0, 3.0, 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("k", 1.0, 3.0, 100.0) == pytest.approx(1.0)  # the other connection sees it
    assert b.take("k", 1.0, 3.0, 101.0) == 0.0
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT key FROM buckets").fetchall() == [("k",)]
    a.close()
    b.close()


def test_sqlite_store_prunes_idle_buckets(tmp_path: Path) -> None:
    store = SQLiteRateStore(tmp_path / "r.sqlite3")
    store.take("old", 1.0, 3.0, 1000.0)
    store.take("new", 1.0, 3.0, 1000.0 + IDLE_AFTER_S + PRUNE_EVERY_S)
    store.take("new", 1.0, 3.0, 1000.0 + IDLE_AFTER_S + 2 * PRUNE_EVERY_S)
    rows = sqlite3.connect(tmp_path / "r.sqlite3").execute("SELECT key FROM buckets").fetchall()
    assert rows == [("new",)]
    store.close()
