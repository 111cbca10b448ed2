"""Enrolment and search on SQLite (in-process exact index), PostgreSQL + pgvector (HNSW) and
Milvus Lite, at 100k templates, in one run.

The gallery is bulk-loaded (sealed templates, as the service stores them; vectors drawn from a
Gaussian fitted to real MobileFaceNet embeddings, then transformed with the tenant's key). Then,
through FaceService itself: enrolments (tenant lock, duplicate search, sealed insert, audit) and
1:N searches, each timed one by one on one thread.

    .venv/bin/python bench/bench_backends.py [--n 100000] [--enrol 200] [--search 300]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def gallery_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    from bench_index import gallery, real_embeddings

    real, _ = real_embeddings()
    return gallery(real, n, rng)


def bulk_load(service, tenant, vectors: np.ndarray) -> None:
    """Subjects, consents and sealed templates straight into the tables, then the index."""
    from facegate.protection.tenant import template_aad

    keys = service.secrets_of(tenant)
    space = service.engine.space_id
    now = time.time()
    store = service.store
    db = store._db()
    with store.tx():
        for i, v in enumerate(vectors):
            sid, tid = f"b{i}", f"tp_b{i}"
            db.execute(
                "INSERT INTO subjects VALUES (?, ?, NULL, ?, ?, NULL)", (tenant.id, sid, now, now)
            )
            db.execute(
                "INSERT INTO consents VALUES (?, ?, ?, 'face_verification', '1', 'bench', ?, NULL)",
                (secrets.token_hex(12), tenant.id, sid, now),
            )
            protected = keys.protect(v)
            sealed = keys.seal_vector(protected, template_aad(tenant.id, sid, tid, space))
            if store.stores_protected_vectors:
                from facegate.storage.postgres import vector_literal

                db.execute(
                    "INSERT INTO templates (id, tenant_id, subject_id, space_id, transform_version,"
                    " sealed_vector, source, created_at, protected)"
                    " VALUES (?, ?, ?, ?, ?, ?, 'bench', ?, ?::vector)",
                    (
                        tid,
                        tenant.id,
                        sid,
                        space,
                        tenant.transform_version,
                        sealed,
                        now,
                        vector_literal(protected),
                    ),
                )
            else:
                db.execute(
                    "INSERT INTO templates (id, tenant_id, subject_id, space_id, transform_version,"
                    " sealed_vector, source, created_at) VALUES (?, ?, ?, ?, ?, ?, 'bench', ?)",
                    (tid, tenant.id, sid, space, tenant.transform_version, sealed, now),
                )
            db.execute(
                "INSERT INTO template_log (tenant_id, template_id, op) VALUES (?, ?, 'add')",
                (tenant.id, tid),
            )
    service.rebuild_index()
    if store.stores_protected_vectors:  # build the HNSW index once, after the load
        store.search_protected(tenant.id, space, keys.protect(vectors[0]), 1)
        store._db().execute("ANALYZE templates")


def run_backend(name: str, make, vectors: np.ndarray, enrol: int, search: int) -> dict:
    from facegate.service import Caller, Probe

    service = make()
    tenant, _ = service.create_tenant(f"bench-{name}", {"require_liveness": False})
    caller = Caller(tenant.id, "bench", frozenset({"enroll", "search", "admin"}))
    t = time.perf_counter()
    bulk_load(service, tenant, vectors[: len(vectors) - enrol])
    load_s = time.perf_counter() - t
    space = service.engine.space_id
    lat = []
    for i, v in enumerate(vectors[len(vectors) - enrol :]):
        sid = f"e{i}"
        service.create_subject(caller, sid, None)
        service.grant_consent(caller, sid, "face_verification", "1", "bench")
        t = time.perf_counter()
        service.enroll(caller, sid, Probe(v, space, {"checked": False}), "bench")
        lat.append((time.perf_counter() - t) * 1000)
    rng = np.random.default_rng(1)
    probes = vectors[rng.choice(len(vectors), search, replace=False)]
    slat = []
    for v in probes:
        t = time.perf_counter()
        service.search(caller, "e0", Probe(v, space, {"checked": False}), 10)
        slat.append((time.perf_counter() - t) * 1000)
    return {
        "templates": service.index.size(tenant.id, space),
        "bulk_load_s": round(load_s, 1),
        "enrol_ms_p50": round(statistics.median(lat), 2),
        "enrol_ms_p95": round(float(np.percentile(lat, 95)), 2),
        "enrolments_per_s": round(1000 / statistics.mean(lat), 1),
        "search_ms_p50": round(statistics.median(slat), 2),
        "search_ms_p95": round(float(np.percentile(slat, 95)), 2),
        "searches_per_s": round(1000 / statistics.mean(slat), 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--enrol", type=int, default=200)
    p.add_argument("--search", type=int, default=300)
    p.add_argument("--backends", default="sqlite,postgres,milvus")
    a = p.parse_args()
    import pgserver

    from facegate.engine.pipeline import FaceEngine
    from facegate.protection.crypto import load_keyring
    from facegate.service import FaceService
    from facegate.service.index import DatabaseIndex
    from facegate.service.milvus_index import MilvusIndex
    from facegate.storage.postgres import PostgresStore
    from facegate.storage.sqlite import SQLiteStore

    engine = FaceEngine()
    vectors = gallery_vectors(a.n, np.random.default_rng(0))
    tmp = Path(tempfile.mkdtemp(prefix="facegate-bench-"))
    ring = load_keyring(tmp / "master.keys")
    makers = {
        "sqlite": lambda: FaceService(SQLiteStore(tmp / "a.sqlite3"), ring, engine),
        "milvus": lambda: FaceService(
            SQLiteStore(tmp / "m.sqlite3"), ring, engine, None, MilvusIndex(str(tmp / "milvus.db"))
        ),
    }
    pg = None
    if "postgres" in a.backends:
        pg = pgserver.get_server(tmp / "pg", cleanup_mode="delete")

        def make_pg():
            store = PostgresStore(pg.get_uri(), unsealed_index=True)
            return FaceService(store, ring, engine, None, DatabaseIndex(store))

        makers["postgres"] = make_pg
    out = {"n": a.n, "enrolments_timed": a.enrol, "searches_timed": a.search, "backends": {}}
    try:
        for name in a.backends.split(","):
            out["backends"][name] = run_backend(name, makers[name], vectors, a.enrol, a.search)
            print(name, out["backends"][name], file=sys.stderr, flush=True)
    finally:
        if pg is not None:
            pg.cleanup()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
