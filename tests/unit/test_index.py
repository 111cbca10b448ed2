"""MemoryIndex (both kinds) and Milvus: the same exact hits, removals honoured, per tenant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facegate.service.index import MemoryIndex, apply_template_log


def unit(rng: np.random.Generator, n: int, d: int = 64) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_index(kind: str, tmp_path: Path):
    if kind == "milvus":
        from facegate.service.milvus_index import MilvusIndex

        return MilvusIndex(str(tmp_path / "milvus.db"))
    return MemoryIndex(kind)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "milvus"])
def test_search_remove_and_isolation(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    g = unit(rng, 500)
    index = make_index(kind, tmp_path)
    for i, v in enumerate(g):
        index.add("t1", "space", f"tp{i}", f"s{i % 250}", v)
    index.add("t2", "space", "other", "s-other", g[7])
    probe = g[7] + 0.05 * unit(rng, 1)[0]
    probe /= np.linalg.norm(probe)
    hits = index.search("t1", "space", probe, k=3)
    assert hits[0].template_id == "tp7" and hits[0].score == pytest.approx(
        float(probe @ g[7]), abs=1e-5
    )
    assert all(h.template_id != "other" for h in hits)
    index.remove("tp7")
    assert all(h.template_id != "tp7" for h in index.search("t1", "space", probe, k=5))
    assert index.size("t1", "space") == 499 and index.size("t2", "space") == 1
    assert index.search("t3", "space", probe) == []


@pytest.mark.parametrize("kind", ["flat", "milvus"])
def test_sync_applies_the_log_in_order(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vecs = {f"tp{i}": v for i, v in enumerate(unit(rng, 3))}
    index = make_index(kind, tmp_path)
    log = [
        (1, "t", "tp0", "add"),
        (2, "t", "tp1", "add"),
        (3, "t", "tp0", "remove"),
        (4, "t", "tp2", "add"),
    ]
    apply_template_log(
        index, log, lambda tid: ("t", "sp", "subj", vecs[tid]) if tid != "tp2" else None
    )
    assert index.size("t", "sp") == 1 and index.synced_seq == 4
