"""Resources outside the repository that some tiers need: ../shared/data, Chromium, PostgreSQL.

Locally a missing resource skips the tests that need it, so the fast loop runs anywhere; under
``CI=true`` it fails them, so a broken CI machine can never pass by skipping everything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def in_ci() -> bool:
    """True under CI (``CI=true``, as CI services set it and ``.ci/run`` does)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing_resource(what: str) -> NoReturn:
    """Skip (locally) or fail (under CI=true) the current test: ``what`` is missing."""
    if in_ci():
        pytest.fail(f"{what} (CI=true: missing resources fail instead of skipping)", pytrace=False)
    pytest.skip(what)


def require_shared_data() -> Path:
    """../shared/data, or skip/fail when it is not next to the repository."""
    if not (SHARED_DATA / "faces" / "labels.csv").is_file():
        missing_resource(
            f"the shared test data is missing: expected {SHARED_DATA} (../shared/data next to "
            "the repository) with faces/labels.csv"
        )
    return SHARED_DATA
