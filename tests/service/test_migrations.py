"""Both backends' migrations produce the same tables and columns (storage/migrations.py)."""

from __future__ import annotations

from pathlib import Path

from tests.service.conftest import new_database

from facegate.storage.postgres import PostgresStore
from facegate.storage.sqlite import SQLiteStore

# PostgreSQL keeps the transformed vectors in an extra pgvector column (its 1:N index).
POSTGRES_ONLY = {("templates", "protected")}
BOOKKEEPING = {"schema_version", "sqlite_sequence"}


def sqlite_columns(path: Path) -> set[tuple[str, str]]:
    store = SQLiteStore(path)
    db = store._db().raw
    tables = [
        r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    ]
    out = {
        (t, row[1])
        for t in tables
        if t not in BOOKKEEPING
        for row in db.execute(f"PRAGMA table_info({t})").fetchall()
    }
    store.close()
    return out


def postgres_columns(url: str) -> set[tuple[str, str]]:
    store = PostgresStore(url)
    rows = (
        store._db()
        .execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        )
        .fetchall()
    )
    store.close()
    return {(r["table_name"], r["column_name"]) for r in rows if r["table_name"] not in BOOKKEEPING}


def test_sqlite_and_postgres_have_the_same_tables(tmp_path: Path, postgres_server: str) -> None:
    lite = sqlite_columns(tmp_path / "m.sqlite3")
    pg = postgres_columns(new_database(postgres_server))
    assert lite, "the SQLite migrations created no tables"
    assert pg - POSTGRES_ONLY == lite
