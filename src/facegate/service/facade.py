"""FaceService: the one entry point the REST API and the CLI call, composed of the use cases
(tenants, subjects and consent, liveness and capture, enrolment, verification and search,
operator tasks) over one shared ``ServiceContext``. Each method hands over to its use case."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from facegate.engine.compare import load_calibration
from facegate.engine.pipeline import FaceEngine
from facegate.errors import UnavailableError
from facegate.liveness.check import LivenessChecker
from facegate.protection.crypto import MasterKeys
from facegate.protection.tenant import TenantSecrets
from facegate.service.attempts import Attempts
from facegate.service.capture import Capture
from facegate.service.context import Caller, Probe, ServiceContext
from facegate.service.enrolment import Enrolment
from facegate.service.gallery import Gallery
from facegate.service.index import GalleryIndex, MemoryIndex
from facegate.service.liveness import LivenessSessions
from facegate.service.matching import Matching
from facegate.service.operations import Operations
from facegate.service.probes import Probes
from facegate.service.stream import StreamRun, StreamSessions
from facegate.service.subjects import Subjects
from facegate.service.tenants import Tenants
from facegate.service.webhooks import Webhooks
from facegate.storage.base import Store, TemplateRow, TenantRow


class FaceService:
    def __init__(
        self,
        store: Store,
        ring: MasterKeys,
        engine: FaceEngine,
        checker: LivenessChecker | None = None,
        index: GalleryIndex | None = None,
    ) -> None:
        index = index if index is not None else MemoryIndex("flat")
        gallery = Gallery(store, index, engine.space_id, self._open_secrets, self._quarantined)
        self.ctx = ServiceContext(
            store, ring, engine, checker, gallery, load_calibration(engine.space_id)
        )
        self.attempts = Attempts(self.ctx)
        self.tenants = Tenants(self.ctx)
        self.subjects = Subjects(self.ctx)
        self.probes = Probes(self.ctx)
        self.liveness = LivenessSessions(self.ctx, self.attempts)
        self.enrolment = Enrolment(self.ctx, self.attempts)
        self.matching = Matching(self.ctx, self.attempts)
        self.matching.migrate = lambda caller, subject_id, probe: self.enrolment.enroll(
            caller, subject_id, probe, "migration"
        )
        self.capture = Capture(
            self.ctx, self.subjects, self.liveness, self.probes, self.enrolment, self.matching
        )
        self.operations = Operations(self.ctx)
        self.webhooks = Webhooks(self.ctx)
        gallery.rebuild()

    def _open_secrets(self, tenant: TenantRow) -> TenantSecrets:
        return self.ctx.secrets_of(tenant)

    def _quarantined(self, t: TemplateRow) -> None:
        self.ctx.quarantined(t)

    # -- what callers hold on to ----------------------------------------------------------------

    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def ring(self) -> MasterKeys:
        return self.ctx.ring

    @property
    def engine(self) -> FaceEngine:
        return self.ctx.engine

    @property
    def checker(self) -> LivenessChecker | None:
        return self.ctx.checker

    @property
    def index(self) -> GalleryIndex:
        return self.ctx.gallery.index

    def secrets_of(self, tenant: TenantRow) -> TenantSecrets:
        return self.ctx.secrets_of(tenant)

    def threshold(self, name: str) -> tuple[float, float]:
        return self.ctx.threshold(name)

    def tenant(self, tenant_id: str) -> TenantRow:
        return self.ctx.tenant(tenant_id)

    def readiness(self) -> dict[str, Any]:
        """Ready when the database answers; names the embedding space and whether liveness runs.
        Any failure of the store (a lost connection, a database restarting) is ``UnavailableError``
        (503), so that ``/readyz`` takes this worker out of rotation instead of answering 500."""
        try:
            self.ctx.store.last_log_seq()
        except Exception as exc:
            raise UnavailableError(
                "the database does not answer", code="database_unavailable"
            ) from exc
        return {
            "status": "ready",
            "embedding_space": self.ctx.space_id,
            "liveness": self.ctx.checker is not None,
        }

    def rebuild_index(self) -> None:
        self.ctx.gallery.rebuild()

    def sync_index(self) -> None:
        self.ctx.gallery.sync()

    # -- tenants and keys ------------------------------------------------------------------------

    def create_tenant(
        self, name: str, settings: dict[str, Any] | None = None
    ) -> tuple[TenantRow, str]:
        return self.tenants.create(name, settings)

    def authenticate(self, token: str) -> Caller | None:
        return self.tenants.authenticate(token)

    def tenant_view(self, caller: Caller) -> dict[str, Any]:
        return self.tenants.view(caller)

    def update_tenant(self, caller: Caller, changes: dict[str, Any]) -> dict[str, Any]:
        return self.tenants.update(caller, changes)

    def create_key(self, caller: Caller, roles: frozenset[str], label: str) -> dict[str, Any]:
        return self.tenants.create_key(caller, roles, label)

    def quarantined(self, caller: Caller) -> dict[str, Any]:
        rows = self.ctx.store.quarantined_templates(caller.tenant_id)
        return {
            "templates": [
                {
                    "subject_id": q.subject_id,
                    "template_id": q.template_id,
                    "quarantined_at": q.quarantined_at,
                }
                for q in rows
            ]
        }

    def revoke_key(self, caller: Caller, key_id: str) -> dict[str, Any]:
        return self.tenants.revoke_key(caller, key_id)

    # -- subjects and consent --------------------------------------------------------------------

    def create_subject(
        self, caller: Caller, subject_id: str | None, external_ref: str | None
    ) -> dict[str, Any]:
        return self.subjects.create(caller, subject_id, external_ref)

    def subject_view(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        return self.subjects.view(caller, subject_id)

    def grant_consent(
        self, caller: Caller, subject_id: str, purpose: str, text_version: str, method: str
    ) -> dict[str, Any]:
        return self.subjects.grant_consent(caller, subject_id, purpose, text_version, method)

    def withdraw_consent(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        return self.subjects.withdraw_consent(caller, subject_id)

    def erase_subject(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        return self.subjects.erase(caller, subject_id)

    def export_subject(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        return self.subjects.export(caller, subject_id)

    # -- probes, enrolment, verification, search -------------------------------------------------

    def probe_from_image(self, image: bytes) -> Probe:
        return self.probes.from_image(image)

    def probe_from_session(
        self, caller: Caller, session_id: str, subject_id: str, purposes: tuple[str, ...]
    ) -> Probe:
        return self.probes.from_session(caller, session_id, subject_id, purposes)

    def enroll(
        self, caller: Caller, subject_id: str, probe: Probe, source: str, override: bool = False
    ) -> dict[str, Any]:
        return self.enrolment.enroll(caller, subject_id, probe, source, override)

    def enroll_with_document(
        self, caller: Caller, subject_id: str, document: bytes, live: Probe
    ) -> dict[str, Any]:
        return self.enrolment.enroll_with_document(caller, subject_id, document, live)

    def verify(self, caller: Caller, subject_id: str, probe: Probe) -> dict[str, Any]:
        return self.matching.verify(caller, subject_id, probe)

    def search(self, caller: Caller, subject_id: str, probe: Probe, k: int) -> dict[str, Any]:
        return self.matching.search(caller, subject_id, probe, k)

    def duplicates(self, caller: Caller) -> dict[str, Any]:
        return self.matching.duplicates(caller)

    # -- liveness and capture --------------------------------------------------------------------

    def new_challenge(
        self,
        caller: Caller,
        actions: tuple[str, ...] | None,
        flash: bool | None,
        subject_id: str | None = None,
        purpose: str | None = None,
    ) -> dict[str, Any]:
        return self.liveness.new_challenge(caller, actions, flash, subject_id, purpose)

    def submit_liveness(
        self,
        caller: Caller,
        token: str,
        video: bytes,
        subject_id: str | None = None,
        purpose: str | None = None,
    ) -> dict[str, Any]:
        return self.liveness.submit(caller, token, video, subject_id, purpose)

    def new_capture_link(
        self,
        caller: Caller,
        subject_id: str,
        flow: str,
        ttl_s: float = 600.0,
        actions: tuple[str, ...] | None = None,
        flash: bool | None = None,
    ) -> dict[str, Any]:
        return self.capture.new_link(caller, subject_id, flow, ttl_s, actions=actions, flash=flash)

    def capture_link_status(self, caller: Caller, link_id: str) -> dict[str, Any]:
        return self.capture.link_status(caller, link_id)

    def revoke_capture_link(self, caller: Caller, link_id: str) -> dict[str, Any]:
        return self.capture.revoke_link(caller, link_id)

    @cached_property
    def streams(self) -> StreamSessions:
        """Streamed liveness sessions (built on first use: most callers never stream)."""
        return StreamSessions(self.ctx, self.attempts, self.capture)

    def open_stream(
        self,
        caller: Caller,
        subject_id: str | None,
        purpose: str | None,
        actions: tuple[str, ...] | None = None,
        capture_link: str | None = None,
    ) -> StreamRun:
        return self.streams.open(caller, subject_id, purpose, actions, capture_link)

    def open_capture(self, token: str) -> tuple[Caller, str, str]:
        return self.capture.open(token)

    def capture_info(self, caller: Caller, subject_id: str, flow: str) -> dict[str, Any]:
        return self.capture.info(caller, subject_id, flow)

    def capture_consent(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        return self.capture.consent(caller, subject_id)

    def capture_decline(self, caller: Caller, subject_id: str) -> dict[str, Any]:
        return self.capture.decline(caller, subject_id)

    def capture_challenge(self, caller: Caller, subject_id: str, flow: str) -> dict[str, Any]:
        return self.capture.challenge(caller, subject_id, flow)

    def capture_submit(self, token: str, challenge_token: str, video: bytes) -> dict[str, Any]:
        return self.capture.submit(token, challenge_token, video)

    # -- webhooks (service/webhooks.py) ----------------------------------------------------------

    def set_webhook(self, caller: Caller, url: str, events: list[str] | None) -> dict[str, Any]:
        return self.webhooks.put(caller, url, events)

    def webhook_view(self, caller: Caller) -> dict[str, Any]:
        return self.webhooks.view(caller)

    def delete_webhook(self, caller: Caller) -> dict[str, Any]:
        return self.webhooks.delete(caller)

    def rotate_webhook_secret(self, caller: Caller) -> dict[str, Any]:
        return self.webhooks.rotate_secret(caller)

    def webhook_deliveries(
        self, caller: Caller, limit: int = 50, status: str | None = None
    ) -> dict[str, Any]:
        return self.webhooks.deliveries(caller, limit, status)

    def redeliver_webhook(self, caller: Caller, event_id: str) -> dict[str, Any]:
        return self.webhooks.redeliver(caller, event_id)

    # -- operator tasks --------------------------------------------------------------------------

    def run_retention(self, now: float | None = None) -> dict[str, Any]:
        return self.operations.run_retention(now)

    def rotate_master_key(self) -> dict[str, Any]:
        return self.operations.rotate_master_key()

    def renew_transform(self, tenant_id: str) -> dict[str, Any]:
        return self.operations.renew_transform(tenant_id)

    def retire_master_keys(self) -> dict[str, Any]:
        return self.operations.retire_master_keys()
