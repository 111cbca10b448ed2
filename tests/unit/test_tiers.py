"""The test tiers themselves: a missing resource skips locally and fails under CI=true."""

from __future__ import annotations

import pytest
from tests.helpers import missing_resource


def test_a_missing_resource_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Chromium"):
        missing_resource("Chromium is missing")


def test_a_missing_resource_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        missing_resource("Chromium is missing")


def test_tiers_are_applied_by_directory(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("data") is None
