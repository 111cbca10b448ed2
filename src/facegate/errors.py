"""The one exception tree of facegate. Each class says what went wrong *by meaning*, and
declares the HTTP status it answers with and the exit status of the command line; the ``code``
is machine-readable and stable (it becomes ``urn:facegate:problem:<code>``).

    FacegateError                 500  exit 1  every error facegate raises on purpose
    ├── InputError                400  exit 2  the request or its bytes are unusable
    │   ├── TooLargeError         413  exit 2  over a bound: bytes, pixels, frames, duration
    │   └── ChallengeError        400  exit 2  a liveness challenge token is not valid
    │       ├── ChallengeUsedError     409     spent before (single use)
    │       └── ChallengeExpiredError  410     past its expiry
    ├── FaceError                 422  exit 2  no usable face: none, several, small, poor quality
    ├── EvidenceError             422  exit 2  understood, not enough: not live, no match to the
    │   │                                      document, outdated consent text, bad settings
    │   └── SpaceMismatchError    422  exit 2  embeddings of two embedding spaces were compared
    ├── UnauthenticatedError      401  exit 2  no valid API key or capture link
    ├── ForbiddenError            403  exit 2  the key lacks the role, or a policy forbids it
    │   └── ConsentRequiredError  403  exit 2  no active consent is recorded
    ├── NotFoundError             404  exit 2  unknown, or another tenant's (indistinguishable)
    ├── ConflictError             409  exit 2  exists already, already used, not enrolled, duplicate
    ├── LockedError               423  exit 2  too many failures: the subject is locked
    ├── RateLimitedError          429  exit 2  too many requests
    ├── UnavailableError          503  exit 1  a part of the server is off or not ready
    ├── ModelError                503  exit 1  model weights are missing or fail their checksum
    ├── ConfigError               500  exit 1  the operator's settings or key material are wrong
    └── ProtectionError           500  exit 1  a sealed value could not be opened (no oracle:
                                               every failure reads the same)

Messages never contain image bytes, pixel values, embeddings, keys or tokens; ``details`` hold
measured numbers, codes and ids only.
"""

from __future__ import annotations

from typing import Any, ClassVar


class FacegateError(Exception):
    """Base class: ``code`` is machine-readable and stable, ``details`` holds measured values."""

    default_code: ClassVar[str] = "facegate_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.details = details

    @property
    def exit_code(self) -> int:
        """The command line's exit status: 2 when the input was refused, 1 for anything else."""
        return 2 if 400 <= self.status < 500 else 1

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.code, "message": str(self), **self.details}


class InputError(FacegateError):
    default_code = "bad_input"
    status = 400


class TooLargeError(InputError):
    default_code = "too_large"
    status = 413


class ChallengeError(InputError):
    default_code = "invalid_challenge"


class ChallengeUsedError(ChallengeError):
    default_code = "challenge_used"
    status = 409


class ChallengeExpiredError(ChallengeError):
    default_code = "challenge_expired"
    status = 410


class FaceError(FacegateError):
    default_code = "no_usable_face"
    status = 422


class EvidenceError(FacegateError):
    default_code = "insufficient_evidence"
    status = 422


class SpaceMismatchError(EvidenceError):
    default_code = "embedding_space_mismatch"


class UnauthenticatedError(FacegateError):
    default_code = "unauthenticated"
    status = 401


class ForbiddenError(FacegateError):
    default_code = "forbidden"
    status = 403


class ConsentRequiredError(ForbiddenError):
    default_code = "consent_required"


class NotFoundError(FacegateError):
    default_code = "not_found"
    status = 404


class ConflictError(FacegateError):
    default_code = "conflict"
    status = 409


class LockedError(FacegateError):
    default_code = "subject_locked"
    status = 423


class RateLimitedError(FacegateError):
    default_code = "rate_limited"
    status = 429


class UnavailableError(FacegateError):
    default_code = "unavailable"
    status = 503


class ModelError(FacegateError):
    default_code = "model_unavailable"
    status = 503


class ConfigError(FacegateError):
    default_code = "bad_config"
    status = 500


class ProtectionError(FacegateError):
    default_code = "protection_error"
    status = 500
