"""What every use case shares: the store, the key ring, the engine, the gallery, and the few
helpers they all need (the caller's tenant, its opened keys, thresholds, audit, subject checks).

Every operation takes the caller first and touches only the caller's tenant's rows, so tenant
isolation is structural. Face images and plain embeddings live only in local variables.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facegate.engine.pipeline import FaceEngine
from facegate.errors import ConsentRequiredError, EvidenceError, NotFoundError
from facegate.liveness.check import LivenessChecker
from facegate.protection.crypto import KeyRing
from facegate.protection.tenant import TenantSecrets, open_tenant
from facegate.service.gallery import Gallery
from facegate.service.policy import CONSENT_PURPOSE
from facegate.storage.base import Store, SubjectRow, TenantRow


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
    ring: KeyRing = field(repr=False)
    engine: FaceEngine
    checker: LivenessChecker | None
    gallery: Gallery
    calibration: dict[str, Any]
    clock: Callable[[], float] = time.time  # the service's own clock (tests move it)

    def now(self) -> float:
        return self.clock()

    @property
    def space_id(self) -> str:
        return self.engine.space_id

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
        )

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
        self.store.append_audit(
            at=self.now(),
            tenant_id=tenant_id or (caller.tenant_id if caller else None),
            actor=actor or (caller.actor if caller else "system"),
            action=action,
            subject_id=subject_id,
            outcome=outcome,
            details=details or {},
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
