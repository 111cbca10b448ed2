"""The service's view of its 1:N index: rebuilt from the sealed templates at start, kept in step
with other workers through the database's template log, and searched per tenant and space.

Only transformed (protected) vectors enter an index; opening them needs the tenant's data key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from facegate.protection.tenant import TenantSecrets, template_aad
from facegate.service.index import GalleryIndex, Hit, IndexItem, apply_template_log
from facegate.storage.base import Store, TenantRow

OpenSecrets = Callable[[TenantRow], TenantSecrets]
log = logging.getLogger(__name__)


class Gallery:
    def __init__(
        self, store: Store, index: GalleryIndex, space_id: str, open_secrets: OpenSecrets
    ) -> None:
        self.store = store
        self.index = index
        self.space_id = space_id
        self.open_secrets = open_secrets

    def _load(self, template_id: str) -> IndexItem | None:
        """(tenant, space, subject, protected vector) of one template, or None when it is gone
        or belongs to another embedding space."""
        t = self.store.get_template(template_id)
        if t is None or t.space_id != self.space_id:
            return None
        tenant = self.store.get_tenant(t.tenant_id)
        if tenant is None:
            return None
        v = self.open_secrets(tenant).open_vector(
            t.sealed_vector, template_aad(t.tenant_id, t.subject_id, t.id, t.space_id)
        )
        return (t.tenant_id, t.space_id, t.subject_id, v)

    def rebuild(self) -> None:
        """Load every template of this embedding space (skipped for a database-side index)."""
        if self.index.external:
            return
        self.index.reset()
        opened: dict[str, TenantSecrets] = {}
        last = self.store.last_log_seq()
        batch = []
        elsewhere: dict[str, int] = {}
        for t in self.store.all_templates():
            if t.space_id != self.space_id:
                elsewhere[t.space_id] = elsewhere.get(t.space_id, 0) + 1
                continue
            if t.tenant_id not in opened:
                tenant = self.store.get_tenant(t.tenant_id)
                if tenant is None:
                    continue
                opened[t.tenant_id] = self.open_secrets(tenant)
            v = opened[t.tenant_id].open_vector(
                t.sealed_vector, template_aad(t.tenant_id, t.subject_id, t.id, t.space_id)
            )
            batch.append((t.tenant_id, t.space_id, t.id, t.subject_id, v))
        self.index.add_many(batch)
        self.index.synced_seq = last
        for space, count in sorted(elsewhere.items()):
            # made by another face model: not searchable for duplicates until re-enrolled or
            # migrated by a verification (service/matching.py)
            log.warning(
                "%d templates are in embedding space %s, not %s", count, space, self.space_id
            )

    def sync(self) -> None:
        """Catch up with enrolments and erasures made by other workers."""
        if self.index.external:
            return
        entries = self.store.template_log_since(self.index.synced_seq)
        if entries:
            apply_template_log(self.index, entries, self._load)
        if self.index.needs_rebuild():
            self.rebuild()

    def search(
        self, tenant_id: str, space_id: str, vector: np.ndarray, k: int, min_score: float
    ) -> list[Hit]:
        return self.index.search(tenant_id, space_id, vector, k=k, min_score=min_score)

    def size(self, tenant_id: str, space_id: str) -> int:
        return self.index.size(tenant_id, space_id)

    def store_vector(self, template_id: str, vector: np.ndarray) -> None:
        """Inside the enrolment transaction: a database-side index writes the vector there."""
        self.index.store_vector(template_id, vector)


def best_per_subject(hits: list[Hit]) -> list[dict[str, object]]:
    """One candidate per subject, its best score, best first."""
    best: dict[str, float] = {}
    for h in hits:
        best[h.subject_id] = max(best.get(h.subject_id, -1.0), h.score)
    return [
        {"subject_id": s, "score": round(v, 4)}
        for s, v in sorted(best.items(), key=lambda x: -x[1])
    ]
