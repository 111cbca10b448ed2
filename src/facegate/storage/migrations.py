"""Both backends' migrations, side by side: entry N of each list is migration N for that
backend, in the same words where the dialects allow, and both must produce the same tables
and columns (tests/service/test_migrations.py). The one difference allowed: PostgreSQL's
``templates.protected`` pgvector column, its index over the transformed templates. SQLite
records the last migration in ``PRAGMA user_version``, PostgreSQL in a ``schema_version`` table.
"""

from facegate.storage.migrations_postgres import POSTGRES
from facegate.storage.migrations_sqlite import SQLITE

__all__ = ["POSTGRES", "SQLITE"]
