"""Roles, consent purpose, tenant defaults and time limits: the service's policy in one place."""

from __future__ import annotations

from typing import Any

from facegate.storage.base import AttemptPolicy

ROLES = frozenset({"enroll", "verify", "search", "admin"})
CONSENT_PURPOSE = "face_verification"
LIVENESS_SESSION_TTL_S = 300.0
CAPTURE_LINK_TTL_S = 600.0
PURPOSES = ("enroll", "verify")  # what a challenge, and the session that answers it, are for

DEFAULT_TENANT_SETTINGS: dict[str, Any] = {
    "operating_point": "fmr_1e-3",
    "duplicate_operating_point": "fmr_1e-4",
    "duplicate_policy": "flag",  # or "reject"
    "retention_days": 1095,  # BIPA's outer bound: three years after the last interaction
    # A still photo is accepted only where an admin switched this off (audited): a bought
    # photo of the person must not be enough to enrol or verify.
    "require_liveness": True,
    # Evaluation only: callers may choose the actions and switch the colour flash off, so that a
    # recorded video can be judged. A fraud ring with that setting needs one recording.
    "allow_chosen_actions": False,
    # A non-match answer carries no score unless the tenant opts in (scores of failed attempts
    # tell an attacker how close a forgery came; over many subjects they identify a face).
    "reveal_scores": False,
    # Whether a genuine match with a passed liveness check lifts a lock an attacker caused.
    "live_match_clears_lock": False,
    # Whole recorded videos (POST /v1/liveness/sessions, /v1/capture/submit) are refused unless
    # an admin allows them for clients that cannot stream: a video made after the challenge was
    # learnt in full can be rendered offline (the emulator kit passed 4 of 7 that way).
    "allow_video_upload": False,
    "consent_text_version": "1",
    "consent_text": (
        "We compare your face with the photo you enrol so that only you can use this account. "
        "We keep a protected mathematical template, never your photo, and delete it when you "
        "withdraw consent or after three years without use."
    ),
    "non_face_alternative": (
        "If you prefer not to use your face, verify with a one-time code sent to your registered "
        "phone, or visit a service desk with an identity document."
    ),
    "lockout_max_failures": 5,
    "lockout_window_s": 180,
    "lockout_duration_s": 1800,
    # Origins (https://app.example) whose pages may frame the capture page and receive its
    # outcome by postMessage (docs/embedding.md); none by default: no site can frame it.
    "embed_origins": [],
}

# What any key of the tenant may read with GET /v1/tenant.
PUBLIC_SETTINGS = (
    "operating_point",
    "duplicate_operating_point",
    "duplicate_policy",
    "retention_days",
    "require_liveness",
    "allow_chosen_actions",
    "reveal_scores",
    "live_match_clears_lock",
    "allow_video_upload",
    "consent_text",
    "consent_text_version",
    "non_face_alternative",
    "embed_origins",
)

# Settings whose change weakens a defence: their old and new values go into the audit record.
AUDITED_SETTINGS = (
    "require_liveness",
    "allow_chosen_actions",
    "reveal_scores",
    "live_match_clears_lock",
    "allow_video_upload",
    "operating_point",
    "duplicate_policy",
    "embed_origins",  # who may frame the capture page
)


def attempt_policy(settings: dict[str, Any]) -> AttemptPolicy:
    return AttemptPolicy(
        max_failures=int(settings["lockout_max_failures"]),
        window_s=float(settings["lockout_window_s"]),
        lock_s=float(settings["lockout_duration_s"]),
    )
