"""A Milvus index adapter behind the GalleryIndex protocol, for galleries past one machine.

One collection per embedding space holding (template id, tenant, subject, transformed vector);
searches filter by tenant. Tested against milvus-lite (a local file), which speaks the same
``pymilvus`` client API as a Milvus cluster: point ``FACEGATE_MILVUS_URI`` at the cluster instead.
Writes are idempotent (upsert by template id, delete by id), so several workers may replay the
same template log.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np

from facegate.service.index import Hit


class MilvusIndex:
    external = False  # fed from the template log like the in-process index

    def __init__(self, uri: str) -> None:
        from pymilvus import MilvusClient

        self.client = MilvusClient(uri)
        self._lock = threading.Lock()
        self._known: dict[str, int] = {}  # collection -> dim
        self.synced_seq = 0

    @staticmethod
    def collection(space_id: str) -> str:
        return "facegate_" + hashlib.sha256(space_id.encode()).hexdigest()[:16]

    def _ensure(self, space_id: str, dim: int) -> str:
        name = self.collection(space_id)
        if name not in self._known:
            if not self.client.has_collection(name):
                self.client.create_collection(
                    name,
                    dimension=dim,
                    metric_type="IP",
                    auto_id=False,
                    id_type="string",
                    max_length=64,
                    consistency_level="Strong",
                )
            self._known[name] = dim
        return name

    def add(
        self, tenant_id: str, space_id: str, template_id: str, subject_id: str, vector: np.ndarray
    ) -> None:
        with self._lock:
            name = self._ensure(space_id, len(vector))
            self.client.upsert(
                name,
                [
                    {
                        "id": template_id,
                        "vector": vector.astype(float).tolist(),
                        "tenant": tenant_id,
                        "subject": subject_id,
                    }
                ],
            )

    def add_many(
        self, items: list[tuple[str, str, str, str, np.ndarray]], batch: int = 2000
    ) -> None:
        """Bulk upserts (one call per ``batch`` rows) for rebuilding."""
        with self._lock:
            for start in range(0, len(items), batch):
                chunk = items[start : start + batch]
                by_space: dict[str, list[dict[str, object]]] = {}
                for tenant_id, space_id, template_id, subject_id, vector in chunk:
                    name = self._ensure(space_id, len(vector))
                    by_space.setdefault(name, []).append(
                        {
                            "id": template_id,
                            "vector": vector.astype(float).tolist(),
                            "tenant": tenant_id,
                            "subject": subject_id,
                        }
                    )
                for name, rows in by_space.items():
                    self.client.upsert(name, rows)

    def remove(self, template_id: str) -> None:
        with self._lock:
            for name in self._known or self._collections():
                self.client.delete(name, ids=[template_id])

    def _collections(self) -> list[str]:
        return [c for c in self.client.list_collections() if c.startswith("facegate_")]

    def _exists(self, name: str) -> bool:
        if name not in self._known and self.client.has_collection(name):
            self._known[name] = 0
        return name in self._known

    def search(
        self,
        tenant_id: str,
        space_id: str,
        vector: np.ndarray,
        k: int = 10,
        min_score: float = -1.0,
    ) -> list[Hit]:
        name = self.collection(space_id)
        with self._lock:
            if not self._exists(name):
                return []
            result = self.client.search(
                name,
                data=[vector.astype(float).tolist()],
                limit=k,
                filter=f'tenant == "{_quoted(tenant_id)}"',
                output_fields=["subject"],
            )
        hits = [Hit(r["entity"]["subject"], r["id"], float(r["distance"])) for r in result[0]]
        return [h for h in hits if h.score >= min_score]

    def size(self, tenant_id: str, space_id: str) -> int:
        name = self.collection(space_id)
        with self._lock:
            if not self._exists(name):
                return 0
            rows = self.client.query(
                name, filter=f'tenant == "{_quoted(tenant_id)}"', output_fields=["count(*)"]
            )
        return int(rows[0]["count(*)"]) if rows else 0

    def reset(self) -> None:
        """Drop facegate's collections; the database is the source of truth to rebuild from."""
        with self._lock:
            for name in self._collections():
                self.client.drop_collection(name)
            self._known.clear()
            self.synced_seq = 0

    def needs_rebuild(self) -> bool:
        return False

    def store_vector(self, template_id: str, vector: np.ndarray) -> None:
        """Nothing to write in the transaction: Milvus is fed from the template log."""


def _quoted(value: str) -> str:
    if not all(c.isalnum() or c in "_-" for c in value):
        raise ValueError("unexpected characters in a tenant id")
    return value
