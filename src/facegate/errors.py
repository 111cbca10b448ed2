"""The one exception tree of facegate.

    FacegateError            every error facegate raises on purpose; has a stable ``code``
    ├── InputError           the caller's bytes are unusable (not an image, too large, truncated...)
    ├── FaceError            the image holds no usable face (none, several, too small, poor quality)
    ├── ModelError           model weights are missing or fail their checksum
    └── SpaceMismatchError   two embeddings from different embedding spaces were compared

Messages never contain image bytes, pixel values or embeddings.
"""

from __future__ import annotations

from typing import Any


class FacegateError(Exception):
    """Base class: ``code`` is machine-readable and stable, ``details`` holds measured values."""

    default_code = "facegate_error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.code, "message": str(self), **self.details}


class InputError(FacegateError):
    default_code = "bad_input"


class FaceError(FacegateError):
    default_code = "no_usable_face"


class ModelError(FacegateError):
    default_code = "model_unavailable"


class SpaceMismatchError(FacegateError):
    default_code = "embedding_space_mismatch"
