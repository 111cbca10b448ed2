"""1:N indexes over protected (transformed) templates, one gallery per tenant and space, behind
one ``GalleryIndex`` protocol: ``MemoryIndex`` (in-process faiss), ``DatabaseIndex`` (pgvector)
and ``MilvusIndex`` (milvus_index.py).

The in-process index comes in two kinds, chosen by measurement (bench/bench_index.py,
README "1:N index"):
- ``flat`` (default): exact inner-product search (faiss ``IndexFlatIP``, one OpenMP thread).
  Perfect recall, no build time; latency grows linearly (about 4 ms per 50k templates here).
- ``hnsw``: faiss ``IndexHNSWFlat`` for large galleries. It stores the full vectors, so the
  scores it returns are exact; candidates are over-fetched and re-ranked by those exact scores,
  and erased templates are filtered out (HNSW cannot delete) until the next rebuild.

The index is rebuilt from the database at start and kept in sync through the database's template
log, so several worker processes agree.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import faiss
import numpy as np

from facegate.storage.base import TemplateLogEntry, VectorStore

faiss.omp_set_num_threads(1)


@dataclass(frozen=True)
class Hit:
    subject_id: str
    template_id: str
    score: float


@dataclass
class _Gallery:
    dim: int
    kind: str
    ef_search: int
    index: faiss.Index = field(init=False)
    subjects: dict[int, str] = field(default_factory=dict)  # faiss label -> subject id
    template_ids: dict[int, str] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)
    next_label: int = 0

    def __post_init__(self) -> None:
        if self.kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = 80
            self.index.hnsw.efSearch = self.ef_search
        else:
            self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def add(self, label: int, vector: np.ndarray) -> None:
        v = vector.reshape(1, -1).astype(np.float32)
        if self.kind == "hnsw":
            assert label == self.index.ntotal  # HNSW labels are insertion positions
            self.index.add(v)
        else:
            self.index.add_with_ids(v, np.array([label], np.int64))

    def remove(self, label: int) -> None:
        if self.kind == "hnsw":
            self.removed.add(label)
        else:
            self.index.remove_ids(np.array([label], np.int64))  # type: ignore[arg-type]  # faiss takes ids

    @property
    def live_count(self) -> int:
        return int(self.index.ntotal) - len(self.removed)


class GalleryIndex(Protocol):
    """What the service needs of a 1:N index. ``external`` indexes live in the database itself
    (nothing to hold or sync in the worker); the others are fed from the template log."""

    external: bool
    synced_seq: int

    def add(
        self, tenant_id: str, space_id: str, template_id: str, subject_id: str, vector: np.ndarray
    ) -> None: ...

    def add_many(self, items: list[tuple[str, str, str, str, np.ndarray]]) -> None: ...

    def remove(self, template_id: str) -> None: ...

    def search(
        self,
        tenant_id: str,
        space_id: str,
        vector: np.ndarray,
        k: int = 10,
        min_score: float = -1.0,
    ) -> list[Hit]: ...

    def size(self, tenant_id: str, space_id: str) -> int: ...

    def reset(self) -> None: ...

    def needs_rebuild(self) -> bool: ...

    def store_vector(self, template_id: str, vector: np.ndarray) -> None:
        """Called inside the enrolment transaction: a database index writes the vector there."""
        ...


class MemoryIndex:
    """The in-process index: exact (``flat``) or HNSW, rebuilt at start, fed from the log."""

    external = False

    def __init__(self, kind: str = "flat", ef_search: int = 128) -> None:
        if kind not in ("flat", "hnsw"):
            raise ValueError("index kind must be flat or hnsw")
        self.kind = kind
        self.ef_search = ef_search
        self._galleries: dict[tuple[str, str], _Gallery] = {}
        self._where: dict[str, tuple[tuple[str, str], int]] = {}  # template id -> (gallery, label)
        self._lock = threading.Lock()
        self.synced_seq = 0

    def add(
        self, tenant_id: str, space_id: str, template_id: str, subject_id: str, vector: np.ndarray
    ) -> None:
        with self._lock:
            if template_id in self._where:
                return
            key = (tenant_id, space_id)
            gallery = self._galleries.get(key)
            if gallery is None:
                gallery = self._galleries[key] = _Gallery(len(vector), self.kind, self.ef_search)
            label = gallery.next_label
            gallery.next_label += 1
            gallery.add(label, vector)
            gallery.subjects[label] = subject_id
            gallery.template_ids[label] = template_id
            self._where[template_id] = (key, label)

    def add_many(self, items: list[tuple[str, str, str, str, np.ndarray]]) -> None:
        """(tenant, space, template id, subject id, vector) for each template."""
        for item in items:
            self.add(*item)

    def remove(self, template_id: str) -> None:
        with self._lock:
            where = self._where.pop(template_id, None)
            if where is None:
                return
            key, label = where
            gallery = self._galleries[key]
            gallery.remove(label)
            gallery.subjects.pop(label, None)
            gallery.template_ids.pop(label, None)

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
            if gallery is None or gallery.live_count == 0:
                return []
            fetch = min(int(gallery.index.ntotal), (k + len(gallery.removed)) * 2)
            scores, labels = gallery.index.search(vector.reshape(1, -1).astype(np.float32), fetch)
            hits = [
                Hit(gallery.subjects[int(i)], gallery.template_ids[int(i)], float(s))
                for s, i in zip(scores[0], labels[0])
                if i >= 0 and int(i) not in gallery.removed and s >= min_score
            ]
            return sorted(hits, key=lambda h: -h.score)[:k]  # exact scores: re-rank

    def size(self, tenant_id: str, space_id: str) -> int:
        gallery = self._galleries.get((tenant_id, space_id))
        return 0 if gallery is None else gallery.live_count

    def sizes(self) -> dict[str, int]:
        """Templates held per embedding space, all tenants together (``/metrics``)."""
        with self._lock:
            out: dict[str, int] = {}
            for (_, space), gallery in self._galleries.items():
                out[space] = out.get(space, 0) + gallery.live_count
            return out

    def needs_rebuild(self) -> bool:
        """HNSW galleries whose erased share passed 20%."""
        return any(
            g.removed and len(g.removed) > 0.2 * g.index.ntotal for g in self._galleries.values()
        )

    def reset(self) -> None:
        with self._lock:
            self._galleries.clear()
            self._where.clear()
            self.synced_seq = 0

    def store_vector(self, template_id: str, vector: np.ndarray) -> None:
        """Nothing to write: this index learns of new templates from the template log."""


IndexItem = tuple[str, str, str, np.ndarray]  # tenant, space, subject, protected vector


def apply_template_log(
    index: GalleryIndex,
    log: Sequence[TemplateLogEntry],
    load: Callable[[str], IndexItem | None],
) -> None:
    """Apply template-log entries newer than the index's last sync; ``load(template_id)``
    returns (tenant, space, subject, protected vector) or None when the template is gone."""
    for seq, _tenant, template_id, op in log:
        if op == "add":
            item = load(template_id)
            if item is not None:
                index.add(item[0], item[1], template_id, item[2], item[3])
        else:
            index.remove(template_id)
        index.synced_seq = max(index.synced_seq, seq)


class DatabaseIndex:
    """The 1:N index of a database that indexes vectors itself (PostgreSQL + pgvector): nothing
    to hold or sync in the worker, every worker sees the same index."""

    external = True

    def __init__(self, store: VectorStore) -> None:
        self.store = store
        self.synced_seq = 0

    def search(
        self,
        tenant_id: str,
        space_id: str,
        vector: np.ndarray,
        k: int = 10,
        min_score: float = -1.0,
    ) -> list[Hit]:
        rows = self.store.search_protected(tenant_id, space_id, vector, k)
        return [Hit(s, t, score) for s, t, score in rows if score >= min_score]

    def size(self, tenant_id: str, space_id: str) -> int:
        return self.store.count_protected(tenant_id, space_id)

    def store_vector(self, template_id: str, vector: np.ndarray) -> None:
        self.store.set_protected_vector(template_id, vector)

    # The database is the index: the template rows themselves are what is searched.
    def add(
        self, tenant_id: str, space_id: str, template_id: str, subject_id: str, vector: np.ndarray
    ) -> None:
        pass

    def add_many(self, items: list[tuple[str, str, str, str, np.ndarray]]) -> None:
        pass

    def remove(self, template_id: str) -> None:
        pass

    def reset(self) -> None:
        pass

    def needs_rebuild(self) -> bool:
        return False
