"""Composition: the database, 1:N index, keys, models and liveness checker of one deployment,
chosen by the settings and loaded once per process."""

from __future__ import annotations

import logging

from facegate.engine.pipeline import DEFAULT_EMBEDDER, FaceEngine
from facegate.errors import ProtectionError
from facegate.liveness.check import LivenessChecker
from facegate.protection.crypto import MasterKeys, load_keyring
from facegate.service.facade import FaceService
from facegate.service.index import DatabaseIndex, GalleryIndex, MemoryIndex
from facegate.settings import Settings
from facegate.storage.audit_anchor import AuditAnchor
from facegate.storage.base import Store

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> tuple[Store, GalleryIndex]:
    """The database and 1:N index this deployment uses: ``FACEGATE_DATABASE_URL`` selects
    PostgreSQL, else SQLite in the data folder. Either way the index is by default in-process,
    built from the sealed templates (``FACEGATE_INDEX``: flat or hnsw), so the database holds
    nothing searchable; ``milvus`` and, on PostgreSQL, ``pgvector-unsealed`` are the opt-ins
    that keep transformed vectors outside the envelope (docs/scaling.md says what that costs)."""
    store: Store
    if settings.uses_postgres:
        from facegate.storage.postgres import PostgresStore

        unsealed = settings.index == "pgvector-unsealed"
        pg = PostgresStore(str(settings.database_url), unsealed_index=unsealed)
        if unsealed:
            log.warning("FACEGATE_INDEX=pgvector-unsealed: transformed vectors kept in clear")
            return pg, DatabaseIndex(pg)
        store = pg
    else:
        from facegate.storage.sqlite import SQLiteStore

        store = SQLiteStore(settings.ensure_data_dir() / "facegate.sqlite3")
    if settings.index == "milvus":
        from facegate.service.milvus_index import MilvusIndex

        uri = settings.milvus_uri or str(settings.ensure_data_dir() / "milvus.db")
        return store, MilvusIndex(uri)
    return store, MemoryIndex(settings.index)


def open_master_keys(settings: Settings) -> MasterKeys:
    """The master keys: a PKCS#11 token when ``FACEGATE_PKCS11_MODULE`` is set (the key never
    leaves it), else the key file or ``FACEGATE_MASTER_KEYS`` (docs/keys.md)."""
    if settings.pkcs11_module is not None:
        from facegate.protection.pkcs11_ring import open_pkcs11_ring

        ring = open_pkcs11_ring(
            settings.pkcs11_module, settings.pkcs11_token, settings.pkcs11_pin_file
        )
        ring.current  # noqa: B018 - refuse to start on an empty or unreachable token, not later
        return ring
    return load_keyring(settings.key_file, settings.master_keys)


def open_service(settings: Settings) -> FaceService:
    """Everything a server or CLI process needs, loaded once."""
    store, index = open_store(settings)
    ring = open_master_keys(settings)
    store.audit_anchor = AuditAnchor(settings.audit_anchor_path, store, ring)
    engine = FaceEngine(
        embedder=settings.embedder or DEFAULT_EMBEDDER, num_threads=settings.num_threads
    )
    checker = (
        LivenessChecker(engine, num_threads=settings.num_threads) if settings.liveness else None
    )
    try:
        # FaceService is annotated with the file ring; any ``MasterKeys`` serves it
        return FaceService(store, ring, engine, checker, index)
    except ProtectionError:
        log.error("the master key does not open this data folder's tenant keys")
        raise
