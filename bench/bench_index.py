"""1:N index benchmark on realistic vectors: p50 latency and recall of the true duplicate.

Realistic vectors: the real MobileFaceNet embeddings of ../shared/data/faces give the mean and
covariance of face embeddings; N "enrolled" templates are drawn from that Gaussian (so they share
the real embeddings' anisotropy instead of being uniform on the sphere, the worst case for graph
indexes) and L2-normalised. Each query is a gallery template plus noise scaled so that
query-to-source cosine matches the real genuine-pair scores (median measured on the data).
Recall = share of queries whose true source is returned with a score at or above the duplicate
threshold (fmr_1e-4), relative to exact search.

    .venv/bin/pip install usearch hnswlib        # bench only
    .venv/bin/python bench/bench_index.py --n 1000000 [--indexes flat,hnsw,usearch,hnswlib]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "faces"


def real_embeddings() -> tuple[np.ndarray, np.ndarray]:
    from facegate.engine.pipeline import FaceEngine
    from facegate.eval.faces import embed_images, list_faces

    data = embed_images(FaceEngine(), list_faces(DATA))
    return data.vectors.astype(np.float64), data.identities


def genuine_median(v: np.ndarray, ids: np.ndarray) -> float:
    s = v @ v.T
    iu = np.triu_indices(len(v), 1)
    return float(np.median(s[iu][ids[iu[0]] == ids[iu[1]]]))


def gallery(v: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    mean, cov = v.mean(0), np.cov(v, rowvar=False)
    chol = np.linalg.cholesky(cov + 1e-6 * np.eye(len(mean)))
    out = np.empty((n, v.shape[1]), np.float32)
    for start in range(0, n, 100_000):
        block = mean + rng.standard_normal((min(100_000, n - start), len(mean))) @ chol.T
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def noisy_queries(g: np.ndarray, k: int, target_cos: float, rng: np.random.Generator):
    src = rng.choice(len(g), k, replace=False)
    d = g.shape[1]
    sigma = np.sqrt((1 / target_cos**2 - 1) / d)  # E[cos] ~ 1/sqrt(1 + d sigma^2)
    q = g[src] + rng.standard_normal((k, d)).astype(np.float32) * sigma
    return q / np.linalg.norm(q, axis=1, keepdims=True), src


def timed(search, queries: np.ndarray) -> tuple[list[float], list[np.ndarray], list[np.ndarray]]:
    lat, ids, scores = [], [], []
    for q in queries:
        t = time.perf_counter()
        s, i = search(q)
        lat.append((time.perf_counter() - t) * 1000)
        ids.append(i)
        scores.append(s)
    return lat, ids, scores


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--indexes", default="flat,hnsw,usearch,hnswlib")
    p.add_argument("--json")
    a = p.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)
    from facegate.engine.compare import operating_point
    from facegate.engine.pipeline import FaceEngine

    space = FaceEngine().space_id
    threshold = operating_point(space, "fmr_1e-4").threshold
    rng = np.random.default_rng(0)
    real, ids = real_embeddings()
    target = genuine_median(real, ids)
    g = gallery(real, a.n, rng)
    q, src = noisy_queries(g, a.queries, target, rng)
    d = g.shape[1]
    out: dict = {
        "n": a.n,
        "dim": d,
        "queries": a.queries,
        "duplicate_threshold": threshold,
        "query_to_source_cos_median": float(np.median(np.einsum("ij,ij->i", q, g[src]))),
        "real_genuine_median": target,
        "indexes": {},
    }

    def exact_truth() -> np.ndarray:
        flat = faiss.IndexFlatIP(d)
        flat.add(g)
        s, i = flat.search(q, 1)
        return (i[:, 0] == src) & (s[:, 0] >= threshold)

    findable = exact_truth()
    out["findable_by_exact_search"] = int(findable.sum())

    def report(name: str, build_s: float, search, extra: dict) -> None:
        lat, found_ids, found_scores = timed(search, q)
        hit = np.array(
            [
                (src[k] in found_ids[k][:10])
                and (found_scores[k][list(found_ids[k][:10]).index(src[k])] >= threshold)
                if src[k] in found_ids[k][:10]
                else False
                for k in range(len(q))
            ]
        )
        recall = float(hit[findable].mean()) if findable.any() else float("nan")
        out["indexes"][name] = {
            "build_s": round(build_s, 1),
            "p50_ms": round(statistics.median(lat), 3),
            "p95_ms": round(float(np.percentile(lat, 95)), 3),
            "recall_true_duplicate": recall,
            **extra,
        }
        print(name, out["indexes"][name], file=sys.stderr, flush=True)

    wanted = a.indexes.split(",")
    if "flat" in wanted:
        t = time.perf_counter()
        flat = faiss.IndexFlatIP(d)
        flat.add(g)
        report(
            "faiss_flat_exact",
            time.perf_counter() - t,
            lambda v: tuple(x[0] for x in flat.search(v[None], 10)),
            {},
        )
        del flat
    if "hnsw" in wanted:
        faiss.omp_set_num_threads(2)
        t = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 80
        hnsw.add(g)
        build = time.perf_counter() - t
        faiss.omp_set_num_threads(1)
        for ef in (32, 64, 128):
            hnsw.hnsw.efSearch = ef
            report(
                f"faiss_hnsw_M32_ef{ef}",
                build,
                lambda v: tuple(x[0] for x in hnsw.search(v[None], 10)),
                {"efSearch": ef},
            )
        del hnsw
    if "usearch" in wanted:
        from usearch.index import Index

        t = time.perf_counter()
        ui = Index(ndim=d, metric="ip", dtype="i8", connectivity=16, expansion_add=128)
        ui.add(np.arange(len(g)), g, threads=2)
        build = time.perf_counter() - t
        for ef in (64, 128):
            ui.expansion_search = ef

            def us(v, ui=ui):
                m = ui.search(v, 10)
                return 1 - m.distances, m.keys

            report(f"usearch_i8_M16_ef{ef}", build, us, {"expansion_search": ef})
        del ui
    if "hnswlib" in wanted:
        import hnswlib

        t = time.perf_counter()
        hi = hnswlib.Index(space="ip", dim=d)
        hi.init_index(max_elements=len(g), M=16, ef_construction=100)
        hi.add_items(g, num_threads=2)
        build = time.perf_counter() - t
        hi.set_num_threads(1)
        for ef in (64, 128):
            hi.set_ef(ef)

            def hs(v, hi=hi):
                labels, dist = hi.knn_query(v[None], 10)
                return 1 - dist[0], labels[0]

            report(f"hnswlib_M16_ef{ef}", build, hs, {"ef": ef})
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
