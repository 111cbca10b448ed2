"""Token buckets shared by every worker and machine, so that a limit holds for the deployment.

A per-process bucket lets N workers admit N times the limit (158 requests in 10.6 s got through
a 120/min setting with two workers), so bucket state lives where every worker sees it: a SQLite
file next to the database, or a table in the shared PostgreSQL. Each store offers one atomic
operation, ``take``; the policy (which keys, which rates) is the web layer's.

Bucket state is throwaway: losing it on a crash only refills every bucket. So the SQLite file is
separate from the real database and runs with ``synchronous=OFF`` (no fsync per request), and the
PostgreSQL table is ``UNLOGGED`` (no write-ahead log, truncated after a crash). Keys are opaque
hashes made by the caller (``bucket_key``): no API key, token or client address is ever stored.

``now`` is wall-clock time (``time.time()``), because buckets are shared between processes and
machines whose monotonic clocks have nothing in common; a clock that steps back is treated as no
time passing, never as negative refill.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

PRUNE_EVERY_S = 60.0  # how often one process deletes idle buckets
IDLE_AFTER_S = 600.0  # a bucket untouched this long is full again for every rate the web uses
PG_TABLE = "facegate_rate_buckets"
CREATE_LOCK = 7_355_609  # advisory lock id for creating the table (the audit lock is ...608)


class RateStore(Protocol):
    """What the rate-limit policy needs: one atomic take on a shared bucket."""

    def take(
        self, key: str, rate_per_s: float, burst: float, now: float, cost: float = 1.0
    ) -> float:
        """Refill ``key``'s bucket to ``now`` and take ``cost`` tokens if at least one is there:
        0.0 when allowed, else the seconds until one token is there. ``cost=0`` only asks,
        ``cost=-1`` gives a token back (see ``refill``)."""
        ...

    def close(self) -> None: ...


def bucket_key(kind: str, value: str, secret: bytes = b"") -> str:
    """``kind:`` and the first 128 bits of HMAC-SHA-256(secret, value): the table holds no
    address, key id or token, and with a secret (derived from the master key) a copy of the
    table cannot be matched against guessed IP addresses either."""
    digest = hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{kind}:{digest}"


def refill(
    tokens: float, last: float, now: float, rate_per_s: float, burst: float, cost: float = 1.0
) -> tuple[float, float]:
    """The bucket math: (tokens left, seconds to wait; 0.0 when allowed).

    Tokens grow at ``rate_per_s`` up to ``burst``; a request needs one token and takes ``cost``
    (1 normally, 0 to ask without spending, -1 to give one back, never above the burst). Denials
    spend nothing, so a client that keeps knocking is admitted as soon as a token is back."""
    level = min(burst, tokens + max(0.0, now - last) * rate_per_s)
    if cost < 0:
        return min(burst, level - cost), 0.0
    if level >= 1.0:
        return level - cost, 0.0
    return level, (1.0 - level) / rate_per_s if rate_per_s > 0 else float("inf")


class _PerThread:
    """One connection per thread and per process: a connection inherited through ``fork`` is
    never reused by the child."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._last_prune = 0.0

    def _open(self) -> Any:
        raise NotImplementedError

    def _db(self) -> Any:
        pid = os.getpid()
        if getattr(self._local, "pid", None) != pid:
            self._local.db, self._local.pid = self._open(), pid
        return self._local.db

    def _prune_due(self, now: float) -> bool:
        """True about once a minute per process (pruning is housekeeping, not correctness)."""
        if now - self._last_prune < PRUNE_EVERY_S:
            return False
        self._last_prune = now
        return True

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None and getattr(self._local, "pid", None) == os.getpid():
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                db.close()
        self._local.db = self._local.pid = None


class SQLiteRateStore(_PerThread):
    """Buckets in their own SQLite file (``ratelimit.sqlite3`` in the data folder), shared by
    the workers of one machine. The read-modify-write runs inside ``BEGIN IMMEDIATE``, which
    takes the file's write lock first, so two workers never both spend the same token."""

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        db.execute("PRAGMA synchronous=OFF")  # throwaway state: no fsync per request
        for attempt in range(50):
            try:  # switching to WAL does not wait for another worker's lock: retry
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS buckets ("
                    " key TEXT PRIMARY KEY, tokens REAL NOT NULL, updated REAL NOT NULL)"
                )
                break
            except sqlite3.OperationalError:
                if attempt == 49:
                    db.close()
                    raise
                time.sleep(0.01 * (attempt + 1))
        return db

    def read(self, db: sqlite3.Connection, key: str) -> tuple[float, float] | None:
        row = db.execute("SELECT tokens, updated FROM buckets WHERE key = ?", (key,)).fetchone()
        return (float(row[0]), float(row[1])) if row else None

    def write(self, db: sqlite3.Connection, key: str, tokens: float, updated: float) -> None:
        db.execute(
            "INSERT INTO buckets (key, tokens, updated) VALUES (?, ?, ?) ON CONFLICT (key) "
            "DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated",
            (key, tokens, updated),
        )

    def take(
        self, key: str, rate_per_s: float, burst: float, now: float, cost: float = 1.0
    ) -> float:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            wait = self._take_in(db, key, rate_per_s, burst, now, cost)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return wait

    def _take_in(
        self, db: sqlite3.Connection, key: str, rate: float, burst: float, now: float, cost: float
    ) -> float:
        """The read-modify-write itself; atomic only inside the caller's transaction."""
        tokens, last = self.read(db, key) or (burst, now)
        left, wait = refill(tokens, last, now, rate, burst, cost)
        self.write(db, key, left, max(last, now))
        if self._prune_due(now):
            db.execute("DELETE FROM buckets WHERE updated < ?", (now - IDLE_AFTER_S,))
        return wait


_PG_CREATE = f"""
CREATE UNLOGGED TABLE IF NOT EXISTS {PG_TABLE} (
    key TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    allowed BOOLEAN NOT NULL
)"""

# One statement, so atomic on its own: a new key is inserted full minus the cost; an existing
# row is locked by ON CONFLICT and refilled, spent and stamped in place. Every SET expression
# sees the old row, so ``allowed`` and ``tokens`` agree on the refilled level.
_PG_TAKE = f"""
INSERT INTO {PG_TABLE} AS b (key, tokens, updated, allowed)
VALUES (%(key)s, LEAST(%(burst)s, %(burst)s - %(cost)s), %(now)s, TRUE)
ON CONFLICT (key) DO UPDATE SET
    tokens = CASE WHEN %(cost)s < 0 THEN LEAST(%(burst)s, {{level}} - %(cost)s)
                  WHEN {{level}} >= 1 THEN {{level}} - %(cost)s ELSE {{level}} END,
    updated = GREATEST(b.updated, %(now)s),
    allowed = %(cost)s < 0 OR {{level}} >= 1
RETURNING tokens, allowed""".format(
    level="LEAST(%(burst)s, b.tokens + GREATEST(0, %(now)s - b.updated) * %(rate)s)"
)


class PostgresRateStore(_PerThread):
    """Buckets in an ``UNLOGGED`` table of the shared PostgreSQL, so one limit holds across
    machines. UNLOGGED because the state is throwaway: no WAL write per request, and after a
    crash PostgreSQL truncates the table, which only refills the buckets. The module creates the
    table itself (``CREATE UNLOGGED TABLE IF NOT EXISTS``) rather than through the schema
    migrations, because nothing about it needs to survive or be migrated."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def _open(self) -> Any:
        import psycopg

        db = psycopg.connect(self.url, autocommit=True)
        with db.transaction():  # concurrent CREATE ... IF NOT EXISTS can still collide
            db.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK,))
            db.execute(_PG_CREATE)
        return db

    def take(
        self, key: str, rate_per_s: float, burst: float, now: float, cost: float = 1.0
    ) -> float:
        import psycopg

        db = self._db()
        args = {"key": key, "rate": rate_per_s, "burst": burst, "now": now, "cost": cost}
        try:
            tokens, allowed = db.execute(_PG_TAKE, args).fetchone()
            if self._prune_due(now):
                db.execute(f"DELETE FROM {PG_TABLE} WHERE updated < %s", (now - IDLE_AFTER_S,))
        except psycopg.OperationalError:
            self.close()  # a lost connection (database restart): reconnect on the next take
            raise
        if allowed:
            return 0.0
        return (1.0 - float(tokens)) / rate_per_s if rate_per_s > 0 else float("inf")
