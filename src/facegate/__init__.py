"""facegate: self-hosted face verification.

    >>> import facegate
    >>> r = facegate.compare("A.jpg", "B.jpg")       # doctest: +SKIP
    >>> r.match, r.score                              # doctest: +SKIP
    (True, 0.63)

Everything public is listed in ``__all__`` (pinned by ``tests/unit/test_public_api.py``); other
modules are internal and may change. Importing facegate loads no model and no OpenCV, TFLite or
ONNX Runtime: those come with the first ``Verifier`` (``compare`` builds a shared one).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

from facegate.api import Comparison, FaceAnalysis, Verifier, compare
from facegate.errors import (
    FaceError,
    FacegateError,
    InputError,
    ModelError,
    SpaceMismatchError,
)
from facegate.types import Embedding

try:
    __version__: str = _dist_version("facegate")
except PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"

__all__ = [
    "Comparison",
    "Embedding",
    "FaceAnalysis",
    "FaceError",
    "FacegateError",
    "InputError",
    "ModelError",
    "SpaceMismatchError",
    "Verifier",
    "__version__",
    "compare",
]
