"""Helpers shared by the test tiers, kept out of the conftest files so that tests import them
like any module (``from tests.helpers import encode``) and conftest only wires fixtures."""

from tests.helpers.images import encode, load_rgb
from tests.helpers.resources import REPO, SHARED_DATA, in_ci, missing_resource, require_shared_data

__all__ = [
    "REPO",
    "SHARED_DATA",
    "encode",
    "in_ci",
    "load_rgb",
    "missing_resource",
    "require_shared_data",
]
