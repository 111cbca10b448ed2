"""Shared fixtures. Real data comes from ../shared/data (never copied into the repository)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "faces" / "labels.csv").is_file():
        pytest.fail(
            f"the shared test data is missing: expected {SHARED_DATA} (../shared/data next to the "
            "repository) with faces/labels.csv; tests on real faces cannot run without it",
            pytrace=False,
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def face_rows(shared_data: Path) -> list[dict[str, str]]:
    with (shared_data / "faces" / "labels.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def engine():
    from facegate.engine.pipeline import FaceEngine

    return FaceEngine()


def encode(rgb: np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))
