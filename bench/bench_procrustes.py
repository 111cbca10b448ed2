"""The known-pair attack on the opt-in database index (``FACEGATE_INDEX=pgvector-unsealed``).

The attacker holds a dump of the PostgreSQL database (no keys) and enrolled N faces of its own,
whose plain embeddings it computes with the public model. From those N (plain, column) pairs it
fits the tenant's secret orthogonal transform by orthogonal Procrustes, then takes another photo
of each victim, moves its plain embedding through the estimate, and searches the column. Reported:
the identification rate (the victim's own template ranks first and scores above the tenant's
``fmr_1e-3`` threshold) against N, and, with the default settings, what the column holds (nothing).

Everything runs through the service: a throwaway PostgreSQL + pgvector (``pgserver``), faces
enrolled with ``FaceService.enroll``, and the vectors read back from the ``protected`` column.

    .venv/bin/python bench/bench_procrustes.py [--splits 5] [--known 10,25,50,100]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "faces"
OPEN_TENANT = {"require_liveness": False, "allow_chosen_actions": True}


def main() -> int:
    import pgserver

    from facegate.engine.pipeline import FaceEngine
    from facegate.eval.faces import embed_images, list_faces
    from facegate.protection.crypto import load_keyring
    from facegate.protection.metrics import identification_rate, procrustes_attack
    from facegate.service import FaceService
    from facegate.service.context import Probe
    from facegate.service.index import DatabaseIndex
    from facegate.service.policy import CONSENT_PURPOSE
    from facegate.storage.postgres import PostgresStore

    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--known", default="10,25,50,100")
    a = ap.parse_args()
    engine = FaceEngine()
    data = embed_images(engine, list_faces(DATA))
    by_person: dict[str, list[int]] = defaultdict(list)
    for i, who in enumerate(data.identities):
        by_person[who].append(i)
    people = sorted(p for p, idx in by_person.items() if len(idx) >= 2)
    with tempfile.TemporaryDirectory() as tmp:
        pg = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        try:
            store = PostgresStore(pg.get_uri(), unsealed_index=True)
            svc = FaceService(
                store, load_keyring(Path(tmp) / "keys"), engine, None, DatabaseIndex(store)
            )
            tenant, key = svc.create_tenant("victims", OPEN_TENANT)
            caller = svc.authenticate(key)
            assert caller is not None
            version = tenant.settings["consent_text_version"]
            for n, person in enumerate(people):
                sid = f"s{n}"
                svc.create_subject(caller, sid, None)
                svc.grant_consent(caller, sid, CONSENT_PURPOSE, version, "bench")
                vector = data.vectors[by_person[person][0]]
                svc.enroll(caller, sid, Probe(vector, engine.space_id, {"live": False}), "image")
            with store.tx() as db:
                rows = db.execute("SELECT subject_id, protected::text AS v FROM templates")
                column = {r["subject_id"]: np.array(json.loads(r["v"])) for r in rows}
            threshold = svc.threshold("fmr_1e-3")[0]
            svc.store.close()
        finally:
            pg.cleanup()
    first = np.stack([data.vectors[by_person[p][0]] for p in people])
    second = np.stack([data.vectors[by_person[p][1]] for p in people])
    stolen = np.stack([column[f"s{n}"] for n in range(len(people))])
    out: dict = {
        "people": len(people),
        "dim": int(first.shape[1]),
        "threshold_fmr_1e-3": round(threshold, 4),
        "splits": a.splits,
        # the victim's other photo against the column without any estimate (the identity guess)
        "identification_without_known_pairs": round(
            identification_rate(np.eye(first.shape[1]), second, stolen, threshold), 4
        ),
        "by_known_pairs": {},
    }
    rng = np.random.default_rng(0)
    for n_known in (int(x) for x in a.known.split(",")):
        rates, recovery = [], []
        for _ in range(a.splits):
            order = rng.permutation(len(people))
            known, victims = order[:n_known], order[n_known:]
            r = procrustes_attack(first[known], stolen[known])
            rates.append(identification_rate(r, second[victims], stolen[victims], threshold))
            # how well the estimate undoes the transform on the victims' enrolled faces
            recovery.append(float(np.mean(np.sum((first[victims] @ r.T) * stolen[victims], 1))))
        out["by_known_pairs"][str(n_known)] = {
            "victims": len(people) - n_known,
            "identification_rate": round(float(np.mean(rates)), 4),
            "identification_rate_min": round(float(np.min(rates)), 4),
            "mean_cos_estimate_vs_column": round(float(np.mean(recovery)), 4),
        }
        print(n_known, out["by_known_pairs"][str(n_known)], file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
