"""The service's view of its 1:N index: rebuilt from the sealed templates at start, kept in step
with other workers through the database's template log, and searched per tenant and space.

Only transformed (protected) vectors enter an index; opening them needs the tenant's data key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from facegate.errors import ProtectionError
from facegate.protection.tenant import TenantSecrets, template_aad
from facegate.service.index import GalleryIndex, Hit, IndexItem, apply_template_log
from facegate.storage.base import Store, TemplateRow, TenantRow

OpenSecrets = Callable[[TenantRow], TenantSecrets]
log = logging.getLogger(__name__)


class Gallery:
    def __init__(
        self,
        store: Store,
        index: GalleryIndex,
        space_id: str,
        open_secrets: OpenSecrets,
        report: Callable[[TemplateRow], None] | None = None,
    ) -> None:
        self.store = store
        self.index = index
        self.space_id = space_id
        self.open_secrets = open_secrets
        self.report = report  # audits a quarantined template

    def _load(self, template_id: str) -> IndexItem | None:
        """(tenant, space, subject, protected vector) of one template, or None when it is gone,
        belongs to another embedding space or does not open (then it is quarantined)."""
        t = self.store.get_template(template_id)
        if t is None or t.space_id != self.space_id:
            return None
        tenant = self.store.get_tenant(t.tenant_id)
        if tenant is None:
            return None
        v = open_template(self.store, self.open_secrets(tenant), t, self.report)
        return None if v is None else (t.tenant_id, t.space_id, t.subject_id, v)

    def rebuild(self) -> None:
        """Load every template of this embedding space (skipped for a database-side index)."""
        if self.index.external:
            return
        self.index.reset()
        opened: dict[str, TenantSecrets] = {}
        last = self.store.last_log_seq()
        batch = []
        elsewhere: dict[str, int] = {}
        unopenable: set[str] = set()
        for t in self.store.all_templates():
            if t.space_id != self.space_id:
                elsewhere[t.space_id] = elsewhere.get(t.space_id, 0) + 1
                continue
            if t.tenant_id in unopenable:
                continue
            if t.tenant_id not in opened:
                tenant = self.store.get_tenant(t.tenant_id)
                if tenant is None:
                    continue
                try:
                    opened[t.tenant_id] = self.open_secrets(tenant)
                except ProtectionError:
                    # one tenant's damaged key row must not stop every other tenant's service
                    log.error("the keys of tenant %s do not open; its gallery is empty", tenant.id)
                    unopenable.add(t.tenant_id)
                    continue
            v = open_template(self.store, opened[t.tenant_id], t, self.report)
            if v is not None:
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


def open_template(
    store: Store,
    secrets_: TenantSecrets,
    t: TemplateRow,
    report: Callable[[TemplateRow], None] | None = None,
) -> np.ndarray | None:
    """A template's protected vector, or None for a row whose sealed bytes do not open: that row
    is quarantined (out of every query and index, logged and audited by its id) and the service
    goes on with every other template. The error names the row, not the master key."""
    try:
        return secrets_.open_vector(
            t.sealed_vector, template_aad(t.tenant_id, t.subject_id, t.id, t.space_id)
        )
    except ProtectionError:
        stale = (t.dek_version or 0) > (secrets_.dek_version or 0)  # re-sealed by a rotation
        if t.transform_version != secrets_.transform_version or stale:
            # a renewal or a data-key rotation committed between reading the tenant's keys and
            # this row: the row is sound, only this request's view is stale; never quarantined
            log.warning("template %s was renewed meanwhile: skipped by this request", t.id)
            return None
        if store.quarantine_template(t.id, time.time()):
            log.error("template %s of tenant %s does not open: quarantined", t.id, t.tenant_id)
            if report is not None:
                report(t)  # the audit record
        return None


def best_per_subject(hits: list[Hit]) -> list[dict[str, object]]:
    """One candidate per subject, its best score, best first."""
    best: dict[str, float] = {}
    for h in hits:
        best[h.subject_id] = max(best.get(h.subject_id, -1.0), h.score)
    return [
        {"subject_id": s, "score": round(v, 4)}
        for s, v in sorted(best.items(), key=lambda x: -x[1])
    ]
