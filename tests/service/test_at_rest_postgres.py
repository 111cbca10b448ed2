"""Nothing searchable at rest on PostgreSQL by default (the contract): after enrolments with
``FACEGATE_DATABASE_URL`` and default settings, no column holds template-derived vectors in
clear: no ``vector`` or float-array column has values, and no byte string reads as a unit-norm
float vector. Duplicate search still works (the in-process index, built from sealed templates).
The pgvector index is the opt-in ``FACEGATE_INDEX=pgvector-unsealed``; switching it off clears
the column and drops its indexes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.service.conftest import EVALUATION_TENANT, new_database

from facegate.protection.crypto import load_keyring
from facegate.service import FaceService
from facegate.service.compose import open_store
from facegate.service.index import DatabaseIndex, MemoryIndex
from facegate.service.policy import CONSENT_PURPOSE
from facegate.settings import Settings

PHOTOS = (
    "faces/Joseph_Biden/face_recognition_biden.jpg",
    "faces/Joseph_Biden/face_recognition_biden2.jpg",
)


def enrol(svc: FaceService, shared_data: Path, names: tuple[str, ...]) -> list[dict]:
    tenant, key = svc.create_tenant("t" + str(len(svc.store.list_tenants())), EVALUATION_TENANT)
    caller = svc.authenticate(key)
    assert caller is not None
    out = []
    for sid, photo in zip(names, PHOTOS * len(names)):
        svc.create_subject(caller, sid, None)
        version = tenant.settings["consent_text_version"]
        svc.grant_consent(caller, sid, CONSENT_PURPOSE, version, "test")
        probe = svc.probe_from_image((shared_data / photo).read_bytes())
        out.append(svc.enroll(caller, sid, probe, "image"))
    return out


def unit_vectors_in(blob: bytes, dim: int) -> int:
    """How many windows of ``blob``, read as little-endian float32 at any byte offset, form a
    unit-norm vector of ``dim`` values (what a stored embedding or transformed template is)."""
    found = 0
    for offset in range(4):
        usable = (len(blob) - offset) // 4 * 4
        with np.errstate(all="ignore"):
            arr = np.frombuffer(blob[offset : offset + usable], "<f4").astype(np.float64)
        for start in range(0, len(arr) - dim + 1):
            norm = float(np.linalg.norm(arr[start : start + dim]))
            found += bool(abs(norm - 1.0) < 1e-3)
    return found


def at_rest(url: str, dim: int) -> tuple[int, int, int]:
    """(values in vector columns, values in float-array columns, unit vectors in byte strings)."""
    import psycopg

    with psycopg.connect(url) as db:
        cols = db.execute(
            "SELECT table_name, column_name, udt_name FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        ).fetchall()
        vectors = arrays = unit = 0
        for table, column, udt in cols:
            if udt == "vector":
                vectors += db.execute(
                    f'SELECT COUNT(*) FROM "{table}" WHERE "{column}" IS NOT NULL'
                ).fetchone()[0]
            elif udt in ("_float4", "_float8", "_numeric"):
                arrays += db.execute(
                    f'SELECT COUNT(*) FROM "{table}" WHERE "{column}" IS NOT NULL'
                ).fetchone()[0]
            elif udt == "bytea":
                for (value,) in db.execute(f'SELECT "{column}" FROM "{table}"'):
                    if value is not None and len(value) >= dim * 4:
                        unit += unit_vectors_in(bytes(value), dim)
    return vectors, arrays, unit


@pytest.fixture()
def pg_url(request) -> str:
    return new_database(request.getfixturevalue("postgres_server"))


def test_defaults_keep_nothing_searchable(engine, shared_data: Path, pg_url: str, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", key_file=tmp_path / "keys", database_url=pg_url)
    store, index = open_store(settings)
    assert isinstance(index, MemoryIndex) and not store.stores_protected_vectors
    svc = FaceService(store, load_keyring(settings.key_file), engine, None, index)
    results = enrol(svc, shared_data, ("a", "b", "c"))
    assert [d["subject_id"] for d in results[1]["duplicates"]] == ["a"]  # 1:N still works
    dim = engine.embedder.dim
    assert at_rest(pg_url, dim) == (0, 0, 0)
    svc.store.close()


def test_switching_the_opt_in_off_clears_the_column(
    engine, shared_data: Path, pg_url: str, tmp_path
) -> None:
    unsealed = Settings(
        data_dir=tmp_path / "data",
        key_file=tmp_path / "keys",
        database_url=pg_url,
        index="pgvector-unsealed",
    )
    store, index = open_store(unsealed)
    assert isinstance(index, DatabaseIndex) and store.stores_protected_vectors
    svc = FaceService(store, load_keyring(unsealed.key_file), engine, None, index)
    enrol(svc, shared_data, ("a", "b"))
    assert at_rest(pg_url, engine.embedder.dim)[0] == 2  # the opt-in keeps them in clear
    svc.store.close()
    store, index = open_store(unsealed.with_(index="flat"))
    assert at_rest(pg_url, engine.embedder.dim) == (0, 0, 0)
    with store.tx() as db:
        left = db.execute(
            "SELECT COUNT(*) AS n FROM pg_indexes WHERE indexname LIKE ?", ("templates_hnsw_%",)
        ).fetchone()
    assert left["n"] == 0
    svc = FaceService(store, load_keyring(unsealed.key_file), engine, None, index)
    assert svc.index.size(svc.store.list_tenants()[0].id, engine.space_id) == 2  # rebuilt
    svc.store.close()
