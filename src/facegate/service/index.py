"""In-process 1:N index over protected (transformed) templates, one per tenant and space.

Exact inner-product search (faiss ``IndexFlatIP``, one OpenMP thread): at the gallery sizes a
self-hosted deployment sees, it answers in ~2 ms per 100k templates with perfect recall and no
build time (../shared/context/stack.md; bench/bench_index.py). It is rebuilt from the database at
start and kept in sync through the database's template log, so several workers agree.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import faiss
import numpy as np

faiss.omp_set_num_threads(1)


@dataclass
class _Gallery:
    dim: int
    index: faiss.IndexIDMap2 = field(init=False)
    subjects: dict[int, str] = field(default_factory=dict)  # faiss id -> subject id
    template_ids: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))


@dataclass(frozen=True)
class Hit:
    subject_id: str
    template_id: str
    score: float


class GalleryIndex:
    def __init__(self) -> None:
        self._galleries: dict[tuple[str, str], _Gallery] = {}
        self._where: dict[str, tuple[tuple[str, str], int]] = {}  # template id -> (key, faiss id)
        self._lock = threading.Lock()
        self.synced_seq = 0

    def add(
        self,
        tenant_id: str,
        space_id: str,
        template_id: str,
        subject_id: str,
        seq: int,
        vector: np.ndarray,
    ) -> None:
        with self._lock:
            if template_id in self._where:
                return
            key = (tenant_id, space_id)
            gallery = self._galleries.get(key)
            if gallery is None:
                gallery = self._galleries[key] = _Gallery(len(vector))
            gallery.index.add_with_ids(
                vector.reshape(1, -1).astype(np.float32), np.array([seq], np.int64)
            )
            gallery.subjects[seq] = subject_id
            gallery.template_ids[seq] = template_id
            self._where[template_id] = (key, seq)

    def remove(self, template_id: str) -> None:
        with self._lock:
            where = self._where.pop(template_id, None)
            if where is None:
                return
            key, seq = where
            gallery = self._galleries[key]
            gallery.index.remove_ids(np.array([seq], np.int64))
            gallery.subjects.pop(seq, None)
            gallery.template_ids.pop(seq, None)

    def search(
        self,
        tenant_id: str,
        space_id: str,
        vector: np.ndarray,
        k: int = 10,
        min_score: float = -1.0,
    ) -> list[Hit]:
        with self._lock:
            gallery = self._galleries.get((tenant_id, space_id))
            if gallery is None or gallery.index.ntotal == 0:
                return []
            k = min(k, gallery.index.ntotal)
            scores, ids = gallery.index.search(vector.reshape(1, -1).astype(np.float32), k)
            return [
                Hit(gallery.subjects[int(i)], gallery.template_ids[int(i)], float(s))
                for s, i in zip(scores[0], ids[0])
                if i >= 0 and s >= min_score
            ]

    def size(self, tenant_id: str, space_id: str) -> int:
        gallery = self._galleries.get((tenant_id, space_id))
        return 0 if gallery is None else int(gallery.index.ntotal)

    def reset(self) -> None:
        with self._lock:
            self._galleries.clear()
            self._where.clear()
            self.synced_seq = 0

    def sync(
        self, log: list[tuple[int, str, str, str]], load: Callable[[str], tuple | None]
    ) -> None:
        """Apply template-log entries newer than the last sync; ``load(template_id)`` returns
        (tenant, space, subject, seq, protected vector) or None when the template is gone."""
        for seq, _tenant, template_id, op in log:
            if op == "add":
                item = load(template_id)
                if item is not None:
                    self.add(item[0], item[1], template_id, item[2], item[3], item[4])
            else:
                self.remove(template_id)
            self.synced_seq = max(self.synced_seq, seq)
