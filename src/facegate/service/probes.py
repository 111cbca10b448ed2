"""Probes: the face a request brings, from a still image or from a passed liveness session."""

from __future__ import annotations

from facegate.errors import ConflictError, EvidenceError, ProtectionError
from facegate.service.context import Caller, Probe, ServiceContext


def session_aad(tenant_id: str, session_id: str) -> bytes:
    """Associated data of a liveness session's sealed embedding: it opens only for its row."""
    return f"liveness-session|{tenant_id}|{session_id}".encode()


class Probes:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def from_image(self, image: bytes) -> Probe:
        result = self.ctx.engine.analyse(image)
        self.ctx.timed("image", result.timings_ms)
        return Probe(
            result.embedding.vector,
            result.embedding.space_id,
            {"checked": False, "live": None},
            result.quality_dict(),
        )

    def from_session(
        self, caller: Caller, session_id: str, subject_id: str, purposes: tuple[str, ...]
    ) -> Probe:
        """Spends the session (single use, for the subject and a purpose it was made for) and
        opens the embedding it sealed."""
        ctx = self.ctx
        session = ctx.store.take_liveness_session(
            caller.tenant_id, session_id, subject_id, purposes, ctx.now()
        )
        if session is None:
            raise ConflictError(
                "unknown, expired or used liveness session, or one made for another subject or"
                " purpose",
                code="liveness_session_invalid",
            )
        if not session.live or session.sealed_vector is None:
            raise EvidenceError(
                "the liveness session did not pass",
                code="not_live",
                reasons=session.summary.get("reasons", []),
            )
        secrets_ = ctx.secrets_of(ctx.tenant(caller.tenant_id))
        try:
            vector = secrets_.open_vector(
                session.sealed_vector, session_aad(caller.tenant_id, session_id)
            )
        except ProtectionError as exc:  # sealed under a data key a renewal has replaced
            raise ConflictError(
                "the liveness session was made before the tenant's keys were renewed",
                code="liveness_session_invalid",
            ) from exc
        return Probe(
            vector,
            session.space_id or "",
            {"checked": True, "live": True, "session_id": session_id},
        )
