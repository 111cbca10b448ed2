"""What every use case shares: the store, the key ring, the engine, the gallery, and the few
helpers they all need (the caller's tenant, its opened keys, thresholds, audit, subject checks).

Every operation takes the caller first and touches only the caller's tenant's rows, so tenant
isolation is structural. Face images and plain embeddings live only in local variables.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facegate.engine.pipeline import FaceEngine
from facegate.errors import ConsentRequiredError, EvidenceError, NotFoundError
from facegate.liveness.check import LivenessChecker
from facegate.protection.audit_keys import SEALED_DETAIL_KEYS, chain_key, seal_details
from facegate.protection.crypto import MasterKeys
from facegate.protection.tenant import TenantSecrets, open_tenant
from facegate.service.gallery import Gallery
from facegate.service.policy import CONSENT_PURPOSE
from facegate.storage.base import Store, SubjectRow, TemplateRow, TenantRow

# The engine's TFLite interpreters must never run in two threads at once ("There is at least 1
# reference to internal data"). Every analysis of this process takes this one lock: uploads (the
# web layer's analysis thread, web/deps.py) and streamed frames (service/stream.py) alike.
ENGINE_LOCK = threading.RLock()


@dataclass(frozen=True)
class Caller:
    """Who is asking: an API key (or a capture link) of one tenant, with its roles."""

    tenant_id: str
    key_id: str
    roles: frozenset[str]

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}"


@dataclass
class Probe:
    """A face to enrol or compare: a plain embedding that never leaves the request."""

    embedding: np.ndarray = field(repr=False)
    space_id: str
    liveness: dict[str, Any]
    quality: dict[str, Any] | None = None


@dataclass
class ServiceContext:
    store: Store
    ring: MasterKeys = field(repr=False)
    engine: FaceEngine
    checker: LivenessChecker | None
    gallery: Gallery
    calibration: dict[str, Any]
    clock: Callable[[], float] = time.time  # the service's own clock (tests move it)
    # Called with (action, outcome, reason codes) for every audited event: the metrics count
    # them. Observers see codes only, never scores, subjects or keys.
    observers: list[Callable[[str, str, list[str]], None]] = field(default_factory=list)
    # Called with (kind "image" or "video", the engine's {stage: ms}) after each analysis that
    # found a face: the metrics' stage histograms and the trace's analysis span.
    timers: list[Callable[[str, dict[str, float]], None]] = field(default_factory=list)

    def now(self) -> float:
        return self.clock()

    @property
    def space_id(self) -> str:
        return self.engine.space_id

    def timed(self, kind: str, timings_ms: dict[str, float]) -> None:
        for observe in self.timers:
            observe(kind, timings_ms)

    def tenant(self, tenant_id: str) -> TenantRow:
        row = self.store.get_tenant(tenant_id)
        if row is None:
            raise NotFoundError("unknown tenant")
        return row

    def secrets_of(self, tenant: TenantRow) -> TenantSecrets:
        return open_tenant(
            self.ring,
            tenant.id,
            tenant.kek_version,
            tenant.wrapped_dek,
            tenant.sealed_transform_seed,
            tenant.transform_version,
            tenant.dek_version,  # read with the wrapped key: what these secrets seal under
        )

    def audit_detail_keys(self, tenant: TenantRow) -> list[TenantSecrets]:
        """The tenant's current keys, then each data key retired by a renewal (newest first):
        only the export uses the retired ones, to open audit details sealed before."""
        keys = [self.secrets_of(tenant)]
        for k in self.store.retired_tenant_keys(tenant.id):
            dek = self.ring.unwrap(k.kek_version, k.wrapped_dek, tenant.id)
            keys.append(TenantSecrets(tenant.id, dek, b"", k.version))
        return keys

    def threshold(self, name: str) -> tuple[float, float]:
        """(threshold, FMR target) of a calibrated operating point of this embedding space."""
        point = self.calibration["operating_points"].get(name)
        if point is None:
            raise EvidenceError(f"unknown operating point {name}", code="bad_settings")
        return float(point["threshold"]), float(point["fmr_target"])

    def audit(
        self,
        caller: Caller | None,
        action: str,
        outcome: str,
        *,
        subject_id: str | None = None,
        tenant_id: str | None = None,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append a record, keyed by the current master key's chain key. Details that reveal
        biometric relations (``SEALED_DETAIL_KEYS``: scores, duplicate links) are sealed under
        the tenant's key into ``details["sealed"]``: the database shows only that they exist."""
        tenant = tenant_id or (caller.tenant_id if caller else None)
        details = dict(details or {})
        codes = [str(c) for c in details.get("reasons", []) if isinstance(c, str)]
        for observe in self.observers:
            observe(action, outcome, codes)
        hidden = {k: details.pop(k) for k in sorted(SEALED_DETAIL_KEYS & details.keys())}
        if hidden:
            if tenant is None:  # nothing to seal them under: left out (fail closed)
                details["withheld"] = sorted(hidden)
            else:
                keys = self.secrets_of(self.tenant(tenant))
                details["sealed"] = seal_details(keys, subject_id, action, hidden)
        self.store.append_audit(
            at=self.now(),
            tenant_id=tenant,
            actor=actor or (caller.actor if caller else "system"),
            action=action,
            subject_id=subject_id,
            outcome=outcome,
            details=details,
            audit_key=chain_key(self.ring),
        )

    def quarantined(self, t: TemplateRow) -> None:
        """Audit a template taken out of use because its sealed bytes do not open."""
        self.audit(
            None,
            "template.quarantined",
            "quarantined",
            subject_id=t.subject_id,
            tenant_id=t.tenant_id,
            details={"template_id": t.id},
        )

    def subject(self, caller: Caller, subject_id: str) -> SubjectRow:
        row = self.store.get_subject(caller.tenant_id, subject_id)
        if row is None or row.erased:
            # another tenant's subject and a missing one look the same
            raise NotFoundError("no such subject")
        return row

    def require_consent(self, caller: Caller, subject_id: str) -> None:
        if self.store.active_consent(caller.tenant_id, subject_id, CONSENT_PURPOSE) is None:
            raise ConsentRequiredError(
                "no active consent for face verification is recorded for this subject"
            )
