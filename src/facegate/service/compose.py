"""Composition: the database, 1:N index, keys, models and liveness checker of one deployment,
chosen by the settings and loaded once per process."""

from __future__ import annotations

import logging

from facegate.engine.pipeline import DEFAULT_EMBEDDER, FaceEngine
from facegate.errors import ProtectionError
from facegate.liveness.check import LivenessChecker
from facegate.protection.crypto import load_keyring
from facegate.service.facade import FaceService
from facegate.service.index import DatabaseIndex, GalleryIndex, MemoryIndex
from facegate.settings import Settings
from facegate.storage.base import Store

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> tuple[Store, GalleryIndex]:
    """The database and 1:N index this deployment uses: ``FACEGATE_DATABASE_URL`` selects
    PostgreSQL (its pgvector index serves 1:N), else SQLite in the data folder with an in-process
    index (``FACEGATE_INDEX``: flat, hnsw or milvus)."""
    if settings.uses_postgres:
        from facegate.storage.postgres import PostgresStore

        pg = PostgresStore(str(settings.database_url))
        return pg, DatabaseIndex(pg)
    from facegate.storage.sqlite import SQLiteStore

    data_dir = settings.ensure_data_dir()
    store = SQLiteStore(data_dir / "facegate.sqlite3")
    if settings.index == "milvus":
        from facegate.service.milvus_index import MilvusIndex

        return store, MilvusIndex(settings.milvus_uri or str(data_dir / "milvus.db"))
    return store, MemoryIndex(settings.index)


def open_service(settings: Settings) -> FaceService:
    """Everything a server or CLI process needs, loaded once."""
    store, index = open_store(settings)
    ring = load_keyring(settings.key_file, settings.master_keys)
    engine = FaceEngine(
        embedder=settings.embedder or DEFAULT_EMBEDDER, num_threads=settings.num_threads
    )
    checker = (
        LivenessChecker(engine, num_threads=settings.num_threads) if settings.liveness else None
    )
    try:
        return FaceService(store, ring, engine, checker, index)
    except ProtectionError:
        log.error("the master key does not open this data folder's tenant keys")
        raise
